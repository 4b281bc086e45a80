"""NVIDIA GPU detection: our table (``data/gpus.json``), ``lspci -nn`` lines and pci.ids names.

``lookup("10de:1e84")`` or ``lookup("RTX 2070 Super")`` gives a :class:`GpuInfo`. A PCI id missing
from the table still resolves when a pci.ids name carries its chip ("TU104 [GeForce ...]"): the
chip prefix gives the architecture and compute capability (peak numbers stay ``None`` then).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable

NVIDIA_VENDOR = "10de"
VENDORS = {"1002": "AMD", "8086": "Intel", "1af4": "virtio", "1a03": "ASPEED", "102b": "Matrox", "15ad": "VMware"}
PCI_IDS_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")

# Chip prefix -> architecture, in match order (longest first where prefixes overlap).
_CHIP_ARCH = (
    ("GK", "kepler"), ("GM", "maxwell"), ("GP", "pascal"), ("GV", "volta"), ("TU", "turing"),
    ("GA", "ampere"), ("AD", "ada"), ("GH", "hopper"), ("GB", "blackwell"),
)
ARCHES = ("kepler", "maxwell", "pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell")


class UnknownGpu(LookupError):
    """An id or name we cannot place; the message is one line saying what would work."""


@dataclass(frozen=True)
class GpuInfo:
    pci_id: str
    name: str
    chip: str
    arch: str
    compute_capability: str
    fp16_tensor_cores: bool
    bf16: bool
    fp8: bool
    fp32_tflops: float | None = None
    tf32_tflops: float | None = None
    fp16_tflops: float | None = None
    bf16_tflops: float | None = None
    mem_bandwidth_gbs: float | None = None
    memory_gb: float | None = None
    sms: int | None = None
    in_table: bool = True  # False: placed from a pci.ids chip name only (no peak numbers)
    bus_id: str | None = None  # from lspci, when detected on a host
    # Driver support from NVIDIA's recorded per-release lists (tools/gpu_table.py). None/() for ids
    # that are not in the table (placed by chip only): no list was consulted for them.
    nvidia_name: str | None = None
    driver_floor: int | None = None  # first branch whose list (proprietary or open) names the id
    open_floor: int | None = None  # first branch whose open kernel modules list it; None: never
    last_branch: int | None = None  # legacy branch that keeps it (470 for Kepler), from the lists
    proprietary_branches: tuple[int, ...] = ()  # recorded branches whose proprietary README lists it
    open_branches: tuple[int, ...] = ()  # recorded branches whose open-gpu-kernel-modules README lists it

    @property
    def cc(self) -> tuple[int, int]:
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)

    @property
    def sm(self) -> int:
        """The CUDA ``sm_XY`` number (75 for 7.5)."""
        major, minor = self.cc
        return major * 10 + minor

    def as_json(self) -> dict:
        """The resolver's per-GPU JSON keys (issue 3's shape)."""
        return {k: getattr(self, k) for k in (
            "pci_id", "name", "chip", "arch", "compute_capability", "fp16_tensor_cores", "bf16", "fp8")}

    def peaks(self) -> dict:
        return {k: getattr(self, k) for k in (
            "fp32_tflops", "tf32_tflops", "fp16_tflops", "bf16_tflops", "mem_bandwidth_gbs", "memory_gb", "sms")}

    def asdict(self) -> dict:
        return asdict(self)


def arch_of_chip(chip: str) -> str | None:
    chip = chip.upper()
    for prefix, arch in _CHIP_ARCH:
        if chip.startswith(prefix):
            return arch
    return None


def base_chip(chip: str) -> str:
    """pci.ids chip code without its board suffix: GA102GL -> GA102, TU117GLM -> TU117, GK110BGL -> GK110B."""
    chip = chip.upper()
    chip = re.sub(r"(?<=\dB)(?:GLM|GL|M)$", "", chip)
    return re.sub(r"(?<=\d)(?:GLM|GL|BM|M)$", "", chip)


def cc_of_chip(chip: str) -> str | None:
    """Compute capability of a chip from the table's hand-kept chip list (tools/gpu_facts.json), or None."""
    return chips().get(base_chip(chip))


def _capabilities(chip: str, cc: str) -> tuple[bool, bool, bool]:
    """(FP16 tensor cores, native BF16, FP8) from chip and compute capability."""
    major, _, minor = cc.partition(".")
    v = (int(major), int(minor))
    no_tensor = chip.upper().startswith(("TU116", "TU117"))  # GTX 16xx: fast FP16 units, no tensor cores
    return (v >= (7, 0) and not no_tensor, v >= (8, 0), v >= (8, 9))


def _norm_id(value: str) -> str | None:
    m = re.fullmatch(r"\s*(?:0x)?([0-9a-fA-F]{4})\s*[:]\s*(?:0x)?([0-9a-fA-F]{4})\s*", value)
    return f"{m.group(1).lower()}:{m.group(2).lower()}" if m else None


def _norm_name(value: str) -> str:
    v = value.lower().replace("nvidia", "").replace("geforce", "").replace("tesla", "").replace("quadro", "")
    v = re.sub(r"\bsuper\b", "super", v)
    return re.sub(r"[^a-z0-9]+", "", v)


@lru_cache(maxsize=1)
def raw_table() -> dict:
    """gpus.json as generated by tools/gpu_table.py."""
    return json.loads(resources.files("dlrig.gpu.data").joinpath("gpus.json").read_text())


def chips() -> dict[str, str]:
    """Chip -> compute capability (the generated table's copy of the hand-kept list)."""
    return raw_table()["chips"]


def distro_drivers() -> dict[str, str]:
    """OS -> the driver version its own archive ships (Debian's nvidia-driver), from the recorded lists."""
    return raw_table()["distro_drivers"]


def distro_cuda() -> dict[str, str]:
    """OS -> the CUDA release of its own nvidia-cuda-toolkit (Debian's), from the recorded lists."""
    return raw_table()["distro_cuda"]


def recorded_branches(flavor: str) -> tuple[int, ...]:
    """Driver branches whose supported-GPU list is recorded for a flavour (open | proprietary)."""
    return tuple(raw_table()["_sources"]["recorded_branches"][flavor])


_LIST_KEYS = ("nvidia_name", "driver_floor", "open_floor", "last_branch")


@lru_cache(maxsize=1)
def table() -> dict[str, GpuInfo]:
    """Our GPU table: PCI id -> GpuInfo."""
    out = {}
    for pci_id, card in raw_table()["cards"].items():
        out[pci_id] = _make(pci_id, card["name"], card["chip"], card["compute_capability"], card,
                            **{k: card.get(k) for k in _LIST_KEYS},
                            proprietary_branches=tuple(card.get("proprietary_branches", ())),
                            open_branches=tuple(card.get("open_branches", ())))
    return out


def _make(pci_id: str, name: str, chip: str, cc: str, peaks: dict | None = None, **extra) -> GpuInfo:
    arch = arch_of_chip(chip)
    if arch is None:
        raise UnknownGpu(f"{pci_id} ({name}): chip {chip!r} is not one dlrig knows (GK/GM/GP/GV/TU/GA/AD/GH/GB)")
    t, b, f8 = _capabilities(chip, cc)
    peak_keys = ({f.name for f in fields(GpuInfo)} & set(peaks or {})) - set(extra) - {
        "arch", "proprietary_branches", "open_branches"}
    return GpuInfo(pci_id=pci_id, name=name, chip=chip, arch=arch, compute_capability=cc,
                   fp16_tensor_cores=t, bf16=b, fp8=f8,
                   **{k: (peaks or {})[k] for k in peak_keys if k not in ("name", "chip", "compute_capability")},
                   **extra)


def from_pci_name(pci_id: str, description: str, **extra) -> GpuInfo:
    """A GpuInfo from a pci.ids-style description ("TU104 [GeForce RTX 2070 SUPER]")."""
    desc = description.strip()
    m = re.match(r"^(?:NVIDIA Corporation\s+)?([A-Z]{2}\d+[A-Z]*)\s*(?:\[(.+?)\])?", desc)
    if not m:
        raise UnknownGpu(
            f"{pci_id} ({desc or 'no name'}): not in dlrig's GPU table and its pci.ids name carries no chip; "
            "update pci.ids (update-pciids) or give a known card, e.g. --gpu 10de:1e84")
    chip_full, name = m.group(1), (m.group(2) or m.group(1))
    chip = base_chip(chip_full)
    cc = cc_of_chip(chip)
    if cc is None:
        raise UnknownGpu(
            f"{pci_id} ({desc}): chip {chip} is older than Kepler or not in dlrig's chip list; dlrig supports Maxwell (GM) "
            "and newer: add the chip with its compute capability to tools/gpu_facts.json and run tools/gpu_table.py")
    return _make(pci_id, name, chip, cc, in_table=False, **extra)


@lru_cache(maxsize=4)
def _pci_ids(path: str) -> dict[str, str]:
    """NVIDIA device names from a pci.ids file: 'xxxx' -> 'CHIP [Name]'."""
    out, inside = {}, False
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith(NVIDIA_VENDOR + " "):
            inside = True
            continue
        if inside:
            if line and not line.startswith(("\t", "#")):
                break
            m = re.match(r"^\t([0-9a-f]{4})\s+(.*)$", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def pci_ids_name(pci_id: str, paths: Iterable[str] = PCI_IDS_PATHS) -> str | None:
    dev = pci_id.split(":")[1]
    for p in paths:
        name = _pci_ids(p).get(dev)
        if name:
            return name
    return None


def lookup(id_or_name: str, pci_ids_paths: Iterable[str] = PCI_IDS_PATHS) -> GpuInfo:
    """A card by PCI id (``10de:1e84``) or name (``RTX 2070 Super``, ``A100 SXM4 80GB``)."""
    cards = table()
    pci_id = _norm_id(id_or_name)
    if pci_id:
        vendor = pci_id.split(":")[0]
        if vendor != NVIDIA_VENDOR:
            who = VENDORS.get(vendor, f"vendor {vendor}")
            raise UnknownGpu(
                f"{pci_id} is not an NVIDIA device ({who}); dlrig's GPU stack needs an NVIDIA GPU "
                "(10de:xxxx): use cpu_only=True for this machine")
        if pci_id in cards:
            return cards[pci_id]
        desc = pci_ids_name(pci_id, tuple(pci_ids_paths))
        if desc is None:
            raise UnknownGpu(
                f"{pci_id} is not in dlrig's GPU table nor in this machine's pci.ids; "
                "update pci.ids (update-pciids) or name the card, e.g. --gpu 'RTX 4090'")
        return from_pci_name(pci_id, desc)
    want = _norm_name(id_or_name)
    if not want:
        raise UnknownGpu(f"{id_or_name!r} is neither a PCI id (10de:1e84) nor a card name (RTX 2070 Super)")
    exact = [g for g in cards.values() if _norm_name(g.name) == want]
    if exact:
        return exact[0]
    partial = [g for g in cards.values() if want in _norm_name(g.name)]
    names = sorted({g.name for g in partial})
    if len(names) == 1:
        return partial[0]
    if names:
        raise UnknownGpu(f"{id_or_name!r} matches several cards ({', '.join(names[:6])}); name one exactly or give its PCI id")
    import difflib

    close = difflib.get_close_matches(want, {_norm_name(g.name): g.name for g in cards.values()}, n=1, cutoff=0.6)
    hint = f"; did you mean {dict((_norm_name(g.name), g.name) for g in cards.values())[close[0]]!r}?" if close else \
        "; give its PCI id (lspci -nn shows [10de:xxxx])"
    raise UnknownGpu(f"{id_or_name!r} is not a card dlrig knows{hint}")


# lspci -nn: "0a:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [GeForce RTX 2070 SUPER] [10de:1e84] (rev a1)"
_LSPCI = re.compile(
    r"^(?P<bus>\S+)\s+(?P<cls>[^\[]*?)\s*\[(?P<code>[0-9a-fA-F]{4})\]:\s*(?P<desc>.*?)\s*"
    r"\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\](?:\s*\(rev [0-9a-fA-F]+\))?\s*$"
)
DISPLAY_CLASSES = ("0300", "0302", "0380")  # VGA, 3D controller, display controller


def parse_lspci(lines: Iterable[str]) -> list[GpuInfo]:
    """The NVIDIA GPUs in ``lspci -nn`` output (other vendors' and non-display functions skipped).

    Also reads dlrig's sysfs fallback lines ``BUS [0300]: [10de:1e84]`` (no lspci on the host).
    Raises :class:`UnknownGpu` for an NVIDIA display device that cannot be placed.
    """
    out = []
    for line in lines:
        m = _LSPCI.match(line.strip())
        if not m or m.group("code").lower()[:4] not in DISPLAY_CLASSES:
            continue
        if m.group("vendor").lower() != NVIDIA_VENDOR:
            continue
        pci_id = f"{NVIDIA_VENDOR}:{m.group('device').lower()}"
        bus = m.group("bus")
        known = table().get(pci_id)
        if known is not None:
            out.append(GpuInfo(**{**known.asdict(), "bus_id": bus}))
            continue
        desc = m.group("desc")
        desc = re.sub(r"^NVIDIA Corporation\s*", "", desc)
        if not desc:
            desc = pci_ids_name(pci_id) or ""
        out.append(from_pci_name(pci_id, desc, bus_id=bus))
    return out


def parse_nvidia_smi(lines: Iterable[str]) -> list[dict]:
    """``nvidia-smi --query-gpu=pci.bus_id,name,driver_version,memory.total,compute_cap --format=csv,noheader``."""
    out = []
    for line in lines:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and re.match(r"^[0-9A-Fa-f]{4,8}:", parts[0]):
            out.append(dict(zip(("bus_id", "name", "driver_version", "memory_total", "compute_cap"), parts)))
    return out
