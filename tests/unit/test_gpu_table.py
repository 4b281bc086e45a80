"""tools/gpu_table.py: the generated GPU table, its parsers on the recorded lists, floors, peaks,
and the resolver over the whole table (issue 14)."""

from __future__ import annotations

import importlib.util
import json
import re
from importlib import resources
from pathlib import Path

import pytest

from dlrig.gpu.resolver import CUDA_FAMILY_FLOOR, CUDA_MIN_DRIVER, OSES, ResolveError, ceiling, floor, resolve, \
    supports, torch_arches
from dlrig.gpu.table import lookup, parse_lspci, table

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "tools" / "sources"


def _gen():
    spec = importlib.util.spec_from_file_location("gpu_table", ROOT / "tools" / "gpu_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_table_is_the_generators_output_and_generation_is_deterministic():
    gen = _gen()
    first, second = gen.render(gen.build()), gen.render(gen.build())
    assert first == second
    shipped = resources.files("dlrig.gpu.data").joinpath("gpus.json").read_text()
    assert shipped == first, "dlrig/gpu/data/gpus.json is stale: run python3 tools/gpu_table.py"


def test_parsers_on_the_recorded_sources():
    gen = _gen()
    rows = gen.parse_readme((SOURCES / "nvidia-readme" / "555.58.02.txt").read_text(), "555.58.02")
    assert rows["1b80"] == {"name": "NVIDIA GeForce GTX 1080", "supported": True, "legacy_branch": None}
    assert rows["102d"]["supported"] is False and rows["102d"]["legacy_branch"] == 470  # K80: 470.xx legacy section
    old = gen.parse_readme((SOURCES / "nvidia-readme" / "470.256.02.txt").read_text(), "470.256.02")
    assert old["102d"]["supported"] is True  # 470 itself still supports Kepler
    opn = gen.parse_open_readme((SOURCES / "open-gpu-kernel-modules" / "595.45.04.md").read_text())
    assert opn["2b85"] == "NVIDIA GeForce RTX 5090" and opn["1e30"] == "Quadro RTX 6000"  # plain row wins
    assert "1b80" not in opn  # Pascal: never in the open modules
    pci = gen.parse_pci_ids((SOURCES / "pci.ids" / "10de.ids").read_text())
    assert pci["2e12"] == ("GB20B", "GB10") and gen.base_chip(pci["1eb8"][0]) == "TU104"
    debian = (SOURCES / "debian" / "nvidia-driver.txt").read_text()
    assert gen.parse_debian(debian) == {"debian-12": "535.261.03", "debian-13": "550.163.01"}
    assert gen.parse_debian(debian, "nvidia-cuda-toolkit") == {"debian-12": "11.8.0", "debian-13": "12.4.1"}


# --- floors against the recorded lists, read here with a scan of our own -------------------------

def _first_branch(dev: str, folder: str) -> int | None:
    """First branch whose recorded list has `dev` in its PCI id column (current sections only)."""
    hits = []
    for p in (SOURCES / folder).iterdir():
        text = p.read_text()
        if folder == "nvidia-readme":  # cut the legacy sections of newer READMEs (older branches' lists)
            text = re.split(r"^The (?!%s)\d+\.xx driver supports" % p.stem.split(".")[0], text, flags=re.M)[0]
            found = re.search(r"\s{2}%s(?: [0-9A-F]{4} [0-9A-F]{4})?(?:\s|$)" % dev.upper(), text)
        else:
            found = re.search(r"\| %s(?: [0-9A-F]{4} [0-9A-F]{4})? \|" % dev.upper(), text)
        if found:
            hits.append(int(p.stem.split(".")[0]))
    return min(hits) if hits else None


DOZEN = ["1e84", "1eb8", "1b80", "2204", "2684", "2b85", "2bb5", "2330", "2321", "2335", "233b", "2342", "2348",
         "2901", "2e12", "26b9", "2c3a"]


@pytest.mark.parametrize("dev", DOZEN)
def test_floors_match_the_recorded_lists(dev):
    g = lookup(f"10de:{dev}")
    prop, opn = _first_branch(dev, "nvidia-readme"), _first_branch(dev, "open-gpu-kernel-modules")
    assert g.open_floor == opn
    assert g.driver_floor == min(b for b in (prop, opn) if b is not None)


def test_floors_differ_between_the_flavours_for_some_cards():
    assert lookup("10de:1e84").driver_floor < lookup("10de:1e84").open_floor  # listed before open modules existed
    assert lookup("10de:1eb8").open_floor > 560  # T4: the open README names it only from 575


# --- coverage ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dev,cc", [
    ("2342", "9.0"), ("2348", "9.0"),  # GH200
    ("2941", "10.0"),  # GB200
    ("31c2", "10.3"), ("3182", "10.3"),  # GB300, B300
    ("2e12", "12.1"),  # GB10
    ("2bb5", "12.0"), ("2bb4", "12.0"),  # RTX PRO 6000 Blackwell Server / Max-Q Workstation
    ("2329", "9.0"), ("26ba", "8.9"), ("20f3", "8.0"),  # H20, L20, A800
])
def test_datacenter_and_pro_cards_with_their_compute_capability(dev, cc):
    assert lookup(f"10de:{dev}").compute_capability == cc


def test_table_covers_desktop_and_datacenter_lines_and_leaves_laptops_out():
    names = [g.name for g in table().values()]
    for want in ("GeForce RTX 5060", "GeForce RTX 4060 Ti 16GB", "GeForce RTX 3050 8GB", "TITAN RTX", "Quadro P6000",
                 "Quadro RTX 8000", "RTX A4000", "RTX 5000 Ada Generation", "A2 / A16", "L40", "H100 NVL", "H800",
                 "GeForce GTX 980 Ti", "Tesla M60"):
        assert any(n == want or n.startswith(want + " ") for n in names), want
    assert not [n for n in names if re.search(r"Laptop|Max-Q Design|Mobile", n)]
    assert len(table()) > 250


# --- peaks ---------------------------------------------------------------------------------------

def _peaked():
    raw = json.loads(resources.files("dlrig.gpu.data").joinpath("gpus.json").read_text())
    facts = json.loads((ROOT / "tools" / "gpu_facts.json").read_text())
    return [(g, raw["cards"][g.pci_id]) for g in table().values() if "peak_source" in raw["cards"][g.pci_id]], facts


def test_every_peak_has_a_datasheet_source():
    cards, facts = _peaked()
    assert cards
    for g, row in cards:
        assert row["peak_source"] in facts["sources"], g.pci_id


def test_peaks_are_dense_and_consistent():
    cards, _ = _peaked()
    for g, _row in cards:
        if g.fp16_tensor_cores:
            assert g.fp16_tflops >= g.fp32_tflops, g.name  # tensor FP16 never below FP32 where tensor cores exist
        if g.tf32_tflops is not None:
            # Dense TF32 is half the dense FP16-tensor rate on every architecture that has it; a sparse
            # figure mixed in breaks that ratio (as does bf16 != fp16).
            assert g.fp16_tflops / g.tf32_tflops == pytest.approx(2.0, rel=0.03), g.name
            assert g.bf16_tflops == pytest.approx(g.fp16_tflops, rel=0.01), g.name
            geforce = re.search(r"GeForce|TITAN", g.name)
            if geforce:  # GeForce runs TF32 with FP32 accumulate at half rate: never above its FP32
                assert g.tf32_tflops <= g.fp32_tflops * 1.02, g.name


# --- resolver over the whole table ---------------------------------------------------------------

def test_every_default_answer_lies_at_or_above_the_cards_floors():
    """Whole table x every supported OS x no pins."""
    checked = 0
    for g in table().values():
        for os in OSES:
            try:
                r = resolve([g], os)
            except ResolveError as e:
                assert g.arch == "kepler", (g.pci_id, os, str(e))
                assert "470" in str(e)
                continue
            b, flavor = r.driver.branch, r.driver.flavor
            assert floor(g, flavor) <= b <= ceiling(g), (g.pci_id, os, b, flavor)
            assert supports(g, b, flavor)
            if flavor == "proprietary":
                assert g.driver_floor <= b
            else:
                assert g.open_floor is not None and g.open_floor <= b
            arches = torch_arches(r.torch.version, r.torch.variant)
            assert any(a // 10 == g.sm // 10 and a <= g.sm for a in arches), (g.name, r.torch)  # sm_XY or its PTX
            fam = int(r.torch.variant[2:4])
            assert int(CUDA_FAMILY_FLOOR[fam].split(".")[0]) <= b
            if r.cuda.source == "nvidia":
                assert int(CUDA_MIN_DRIVER[r.cuda.version].split(".")[0]) <= b
            checked += 1
    assert checked > 900


def test_os_driver_older_than_the_card_needs_goes_to_nvidia_or_refuses():
    g = lookup("10de:233b")  # H200 NVL: NVIDIA lists it from 565; Debian 12 ships 535.261.03
    r = resolve([g], "debian-12")
    assert r.driver.source == "nvidia" and r.driver.branch >= 565
    assert any("535.261.03" in n and "565" in n for n in r.notes)
    with pytest.raises(ResolveError, match="use driver_source 'nvidia'"):
        resolve([g], "debian-12", driver_source="debian")


@pytest.mark.parametrize("dev,branch,words", [
    ("233b", 550, "lists H200 NVL (10de:233b) from branch 565 on; use driver_branch 565"),
    ("2bb5", 570, "from branch 575 on; use driver_branch 575"),
    ("2335", 535, "from branch 550 on; use driver_branch 550"),
])
def test_pinned_branch_below_the_floor_is_refused(dev, branch, words):
    with pytest.raises(ResolveError) as e:
        resolve([lookup(f"10de:{dev}")], "ubuntu-24.04", driver_branch=branch)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_unknown_id_resolves_by_chip_with_a_note():
    (g,) = parse_lspci(["01:00.0 VGA compatible controller [0300]: NVIDIA Corporation AD102 [GeForce RTX 4090 X] [10de:26ff]"])
    r = resolve([g], "ubuntu-24.04")
    assert any("10de:26ff" in n and "tools/gpu_table.py" in n for n in r.notes)


def test_cuda_driver_table_is_the_recorded_one():
    """Every GA row of the recorded NVIDIA table is in the resolver's table, and nothing else."""
    from dlrig.gpu.resolver import CUDA_RELEASE_MIN_DRIVER

    text = (SOURCES / "cuda" / "toolkit-driver-versions.md").read_text()
    ga: dict[str, str] = {}
    for m in re.finditer(r"^\| CUDA (\d+\.\d+)(?:\.\d+)?(?: GA| \(\d+\.\d+\.\d+(?: general release, and updates)?\)|\.\d+)? \| >= ?([\d.]+) \|$",
                         text, flags=re.M):
        version, driver = m.group(1), m.group(2)
        if "Update" in m.group(0) or "GA2" in m.group(0) or "RC" in m.group(0):
            continue
        ga.setdefault(version, driver)
        ga[version] = min(ga[version], driver, key=lambda d: tuple(map(int, d.split("."))))
    assert ga == CUDA_RELEASE_MIN_DRIVER
    assert "12.7" not in ga


def test_kepler_refusal_names_the_real_reasons():
    with pytest.raises(ResolveError) as e:
        resolve([lookup("Tesla K80")], "ubuntu-24.04")
    msg = str(e.value)
    for words in ("sm_37", "last driver branch for it is 470", "CUDA <= 11.4", "starts at sm_50", "cpu_only=True"):
        assert words in msg, msg


def test_card_no_open_list_names_gets_the_proprietary_modules():
    g = lookup("10de:20b1")  # A100 PCIe 40GB: in the proprietary READMEs, in no open-gpu-kernel-modules README
    assert g.open_floor is None and g.driver_floor is not None
    r = resolve([g], "ubuntu-24.04")
    assert (r.driver.branch, r.driver.flavor) == (580, "proprietary")
    assert any("open-gpu-kernel-modules" in n for n in r.notes)
    with pytest.raises(ResolveError, match="needs the proprietary modules: put it in another machine"):
        resolve([g, lookup("RTX 5090")], "ubuntu-24.04", driver_branch=580)
