#!/usr/bin/env python3
"""Build dlrig/gpu/data/gpus.json from recorded public sources plus one small hand-kept file.

Inputs (all in the repository, origins in tools/sources/SOURCES.md):
  tools/sources/nvidia-readme/<version>.txt      "Supported NVIDIA GPU Products" appendix of the
                                                 proprietary driver README, one per driver release
  tools/sources/open-gpu-kernel-modules/<tag>.md "Compatible GPUs" table of open-gpu-kernel-modules'
                                                 README at that release tag
  tools/sources/pci.ids/10de.ids                 NVIDIA's device lines of pci.ids (names, chips)
  tools/sources/debian/nvidia-driver.txt         Debian's own nvidia-driver version per release
  tools/gpu_facts.json                           hand-kept: compute capability per chip, peak figures
                                                 per card with their datasheet source

Usage: python3 tools/gpu_table.py            write dlrig/gpu/data/gpus.json
       python3 tools/gpu_table.py --check    exit 1 when the shipped file differs from the output
The output depends only on these files: running it twice gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "tools" / "sources"
FACTS = ROOT / "tools" / "gpu_facts.json"
OUTPUT = ROOT / "dlrig" / "gpu" / "data" / "gpus.json"

# Chip name prefix -> architecture (pci.ids chip codes); order matters only for display.
ARCH_OF_PREFIX = {"GK": "kepler", "GM": "maxwell", "GP": "pascal", "GV": "volta", "TU": "turing",
                  "GA": "ampere", "AD": "ada", "GH": "hopper", "GB": "blackwell"}
# Names that mark a notebook, all-in-one or embedded part (left out of the table; README says so).
_LAPTOP = re.compile(r"Laptop|Max-Q Design|with Max-Q|Mobile|Notebook|Embedded|\b(?:MX\s?\d{3}|\d{3,4}[MA])\b|\bGo\b| [A-Z]?\d{3,4}M\b")
# pci.ids chip codes ending in M / GLM / BM are mobile parts.
_MOBILE_CHIP = re.compile(r"\d(?:M|GLM|BM)$")


def branch_of(version: str) -> int:
    return int(version.split(".")[0])


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


# --- parsers ------------------------------------------------------------------------------------

_README_ROW = re.compile(r"^\s+(?P<name>\S.*?)\s{2,}(?P<dev>[0-9A-F]{4})(?: (?P<sv>[0-9A-F]{4}) (?P<sd>[0-9A-F]{4}))?(?:\s{2,}\S.*)?\s*$")
_LEGACY_HEAD = re.compile(r"^(?:A\d+\. )?The (?P<branch>\d+)\.xx driver (?:still )?supports")


def parse_readme(text: str, version: str) -> dict[str, dict]:
    """Rows of a proprietary README appendix: device id -> {name, supported, legacy_branch}.

    Rows under "A1. ..." to "A5. ..." (or "A1. CURRENT NVIDIA GPUS") are supported by this release;
    rows under "The NNN.xx driver supports" belong to legacy branch NNN (supported by this release only
    when NNN is its own branch). A device listed only with subsystem ids counts like a plain row.
    """
    own = branch_of(version)
    out: dict[str, dict] = {}
    section_legacy: int | None = None
    for line in text.splitlines():
        head = _LEGACY_HEAD.match(line)
        if head:
            section_legacy = int(head.group("branch"))
            continue
        if re.match(r"^A\d+\. ", line):
            section_legacy = None
            continue
        m = _README_ROW.match(line)
        if not m or m.group("name").startswith(("NVIDIA GPU product", "---")):
            continue
        dev = m.group("dev").lower()
        supported = section_legacy is None or section_legacy == own
        row = out.setdefault(dev, {"name": None, "supported": False, "legacy_branch": None})
        if m.group("sv") is None or row["name"] is None:
            row["name"] = row["name"] if (row["name"] and m.group("sv")) else m.group("name").strip()
        row["supported"] = row["supported"] or supported
        if section_legacy is not None and section_legacy != own:
            row["legacy_branch"] = section_legacy
    return out


_OPEN_ROW = re.compile(r"^\| (?P<name>[^|]*?) \| (?P<dev>[0-9A-F]{4})(?: [0-9A-F]{4} [0-9A-F]{4})? \|$")


def parse_open_readme(text: str) -> dict[str, str]:
    """open-gpu-kernel-modules' "Compatible GPUs" table: device id -> product name (plain rows first)."""
    out: dict[str, str] = {}
    plain: set[str] = set()
    for line in text.splitlines():
        m = _OPEN_ROW.match(line.strip())
        if not m:
            continue
        dev = m.group("dev").lower()
        is_plain = len(line.strip().split("|")[2].split()) == 1
        if dev not in out or (is_plain and dev not in plain):
            out[dev] = m.group("name").strip()
        if is_plain:
            plain.add(dev)
    return out


def parse_pci_ids(text: str) -> dict[str, tuple[str, str | None]]:
    """NVIDIA device lines of pci.ids: device id -> (chip code as written, bracketed name or None)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\t([0-9a-f]{4})\s+(.*)$", line)
        if not m:
            continue
        desc = m.group(2).strip()
        chip = re.match(r"^([A-Z]{2}\d+[A-Z]*)\b", desc)
        name = re.search(r"\[(.+)\]\s*$", desc)
        out[m.group(1)] = (chip.group(1) if chip else "", name.group(1) if name else None)
    return out


def base_chip(chip: str) -> str:
    """GA102GL -> GA102, TU117GLM -> TU117, GK110BGL -> GK110B, GB20B stays."""
    return re.sub(r"(?<=\d)(?:GLM|GL|BM|M)$", "", re.sub(r"(?<=\dB)(?:GL|GLM|M)$", "", chip))


def parse_debian(text: str, package: str = "nvidia-driver") -> dict[str, str]:
    """tools/sources/debian/nvidia-driver.txt: Debian release -> ``package``'s upstream version
    (nvidia-driver: 550.163.01; nvidia-cuda-toolkit: the CUDA release after ``~``, 12.4.1)."""
    out, suite = {}, None
    names = {"bookworm": "debian-12", "trixie": "debian-13"}
    for line in text.splitlines():
        m = re.match(r"^## dists/(\w+)", line)
        if m:
            suite = names.get(m.group(1))
            continue
        m = re.match(rf"^{re.escape(package)} (?:[\d.]+~)?(\d+\.\d+(?:\.\d+)?)-", line)
        if m and suite:
            out[suite] = m.group(1)
    return out


# --- loading the recorded lists -----------------------------------------------------------------


def load_lists(sources: Path = SOURCES) -> tuple[dict[str, dict], dict[str, dict]]:
    """({version: parse_readme rows}, {tag: parse_open_readme rows}) from the recorded files."""
    prop = {p.stem: parse_readme(p.read_text(), p.stem)
            for p in sorted((sources / "nvidia-readme").glob("*.txt"), key=lambda p: _version_key(p.stem))}
    opn = {p.stem: parse_open_readme(p.read_text())
           for p in sorted((sources / "open-gpu-kernel-modules").glob("*.md"), key=lambda p: _version_key(p.stem))}
    return prop, opn


def floors(prop: dict[str, dict], opn: dict[str, dict]) -> dict[str, dict]:
    """Per device id, from the recorded lists: the branches whose proprietary README names it as
    supported, the branches whose open kernel modules list it, driver_floor (first branch of either),
    open_floor (first open branch), last_branch (the legacy branch that keeps it, from the README's
    legacy sections) and the name from the newest list naming it. A branch is represented by its
    newest recorded release."""
    out: dict[str, dict] = {}

    def entry(dev: str) -> dict:
        return out.setdefault(dev, {"proprietary_branches": set(), "open_branches": set(), "last_branch": None,
                                    "nvidia_name": None})

    for version, rows in prop.items():
        for dev, row in rows.items():
            d = entry(dev)
            if row["supported"]:
                d["proprietary_branches"].add(branch_of(version))
            if row["legacy_branch"] is not None:
                d["last_branch"] = row["legacy_branch"]
            d["nvidia_name"] = row["name"]
    for tag, rows in opn.items():
        for dev, name in rows.items():
            d = entry(dev)
            d["open_branches"].add(branch_of(tag))
            d["nvidia_name"] = name
    for d in out.values():
        both = d["proprietary_branches"] | d["open_branches"]
        d["driver_floor"] = min(both) if both else None
        d["open_floor"] = min(d["open_branches"]) if d["open_branches"] else None
        d["proprietary_branches"] = sorted(d["proprietary_branches"])
        d["open_branches"] = sorted(d["open_branches"])
    return out


def is_laptop(nvidia_name: str, chip: str) -> bool:
    return bool(_LAPTOP.search(nvidia_name)) or bool(_MOBILE_CHIP.search(chip))


# --- building -----------------------------------------------------------------------------------


def build(sources: Path = SOURCES, facts_path: Path = FACTS) -> dict:
    facts = json.loads(facts_path.read_text())
    chips_cc: dict[str, str] = facts["chips"]
    prop, opn = load_lists(sources)
    per_dev = floors(prop, opn)
    pci = parse_pci_ids((sources / "pci.ids" / "10de.ids").read_text())
    hand = facts["cards"]

    cards: dict[str, dict] = {}
    left_out = {"laptop": 0, "older_than_kepler": 0}
    for dev in sorted(per_dev):
        d = per_dev[dev]
        if d["driver_floor"] is None and d["last_branch"] is None:
            continue  # only in legacy sections older than any branch we record
        pci_id = f"10de:{dev}"
        chip_raw, pci_name = pci.get(dev, ("", None))
        chip = base_chip(chip_raw)
        if pci_id in hand and hand[pci_id].get("chip"):
            chip = hand[pci_id]["chip"]
        if chip not in chips_cc:
            left_out["older_than_kepler"] += 1
            continue
        if is_laptop(d["nvidia_name"] or "", chip_raw) and pci_id not in hand:
            left_out["laptop"] += 1
            continue
        name = (hand.get(pci_id, {}).get("name") or pci_name
                or re.sub(r"^NVIDIA\s+", "", d["nvidia_name"] or chip))
        arch = ARCH_OF_PREFIX[chip[:2]]
        last = d["last_branch"]
        row = {"name": name, "nvidia_name": d["nvidia_name"], "chip": chip, "arch": arch,
               "compute_capability": chips_cc[chip],
               "driver_floor": d["driver_floor"] if d["driver_floor"] is not None else last,
               "open_floor": d["open_floor"], "last_branch": last,
               "proprietary_branches": d["proprietary_branches"], "open_branches": d["open_branches"]}
        peaks = hand.get(pci_id, {}).get("peaks")
        if peaks:
            row.update({k: peaks.get(k) for k in facts["peak_fields"]})
            row["peak_source"] = hand[pci_id]["source"]
        cards[pci_id] = row
    missing = sorted(set(hand) - set(cards))
    if missing:
        raise SystemExit(f"tools/gpu_facts.json names cards no recorded NVIDIA list has: {', '.join(missing)}")

    debian_text = (sources / "debian" / "nvidia-driver.txt").read_text()
    debian = parse_debian(debian_text)
    debian_cuda = {os: ".".join(v.split(".")[:2]) for os, v in parse_debian(debian_text, "nvidia-cuda-toolkit").items()}
    return {
        "_comment": "GENERATED by tools/gpu_table.py from tools/sources/* and tools/gpu_facts.json: do not edit; "
                    "edit those and run `python3 tools/gpu_table.py`. Laptop/notebook/embedded parts are left out.",
        "_fields": facts["fields"],
        "_sources": {
            "lists": {"proprietary_readme": sorted(prop, key=_version_key), "open_readme": sorted(opn, key=_version_key)},
            "recorded_branches": {"proprietary": sorted({branch_of(v) for v in prop}),
                                  "open": sorted({branch_of(v) for v in opn})},
            "pci_ids": _pci_ids_version((sources / "pci.ids" / "10de.ids").read_text()),
            "peaks": facts["sources"],
            "compute_capability": facts["chips_source"],
        },
        "counts": {"cards": len(cards), "left_out": left_out},
        "chips": dict(sorted(chips_cc.items())),
        "distro_drivers": dict(sorted(debian.items())),
        "distro_cuda": dict(sorted(debian_cuda.items())),
        "cards": cards,
    }


def _pci_ids_version(text: str) -> str:
    m = re.search(r"Version:\s*(\S+)", text)
    return m.group(1) if m else "unknown"


def render(table: dict) -> str:
    return json.dumps(table, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    ap.add_argument("--output", type=Path, default=OUTPUT)
    args = ap.parse_args(argv)
    from generated import write_or_check

    return write_or_check(args.output, render(build()), args.check, "gpu_table.py")


if __name__ == "__main__":
    sys.exit(main())
