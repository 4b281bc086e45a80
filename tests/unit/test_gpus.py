"""dlrig.gpu.table: the GPU table, lookups by id and name, lspci parsing, pci.ids fallback."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from dlrig.gpu.table import (
    ARCHES,
    UnknownGpu,
    cc_of_chip,
    lookup,
    parse_lspci,
    pci_ids_name,
    table,
)

LSPCI_2070S = "0a:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [GeForce RTX 2070 SUPER] [10de:1e84] (rev a1)"

# Cards the issue names: (lookup, pci id, arch, compute capability)
NAMED = [
    ("GTX 1080", "10de:1b80", "pascal", "6.1"),
    ("GTX 1660 Ti", "10de:2182", "turing", "7.5"),
    ("RTX 2070 Super", "10de:1e84", "turing", "7.5"),
    ("RTX 3090", "10de:2204", "ampere", "8.6"),
    ("RTX 4090", "10de:2684", "ada", "8.9"),
    ("RTX 5090", "10de:2b85", "blackwell", "12.0"),
    ("Quadro RTX 6000", "10de:1e36", "turing", "7.5"),
    ("RTX A6000", "10de:2230", "ampere", "8.6"),
    ("RTX 6000 Ada Generation", "10de:26b1", "ada", "8.9"),
    ("V100 PCIe 16GB", "10de:1db4", "volta", "7.0"),
    ("T4", "10de:1eb8", "turing", "7.5"),
    ("A10", "10de:2236", "ampere", "8.6"),
    ("A100 SXM4 80GB", "10de:20b2", "ampere", "8.0"),
    ("L4", "10de:27b8", "ada", "8.9"),
    ("L40S", "10de:26b9", "ada", "8.9"),
    ("H100 PCIe", "10de:2331", "hopper", "9.0"),
    ("H200", "10de:2335", "hopper", "9.0"),
    ("B200", "10de:2901", "blackwell", "10.0"),
]


@pytest.mark.parametrize("name,pci_id,arch,cc", NAMED)
def test_named_cards(name, pci_id, arch, cc):
    g = lookup(name)
    assert (g.pci_id, g.arch, g.compute_capability) == (pci_id, arch, cc)
    assert lookup(pci_id) == g
    assert lookup(pci_id.upper()) == g


def test_issue_example_shape():
    assert lookup("10de:1e84").as_json() == {
        "pci_id": "10de:1e84", "name": "GeForce RTX 2070 SUPER", "chip": "TU104", "arch": "turing",
        "compute_capability": "7.5", "fp16_tensor_cores": True, "bf16": False, "fp8": False}


def test_precision_flags_follow_the_facts():
    assert not lookup("GTX 1660 Ti").fp16_tensor_cores  # 7.5 but no tensor cores
    assert lookup("V100 PCIe 16GB").fp16_tensor_cores and not lookup("V100 PCIe 16GB").bf16
    assert lookup("A100 SXM4 80GB").bf16 and not lookup("A100 SXM4 80GB").fp8
    assert lookup("RTX 4090").fp8 and lookup("H100 PCIe").fp8


def test_every_row_is_complete_and_consistent():
    raw = json.loads(resources.files("dlrig.gpu.data").joinpath("gpus.json").read_text())
    assert raw["_sources"]
    for pci_id, g in table().items():
        assert g.arch in ARCHES
        assert cc_of_chip(g.chip) == g.compute_capability, pci_id
        if "peak_source" not in raw["cards"][pci_id]:  # no datasheet figures kept for this card
            assert all(v is None for k, v in g.peaks().items()), pci_id
            continue
        keys = ("fp32_tflops", "mem_bandwidth_gbs", "memory_gb", "sms") + (() if g.arch == "kepler" else ("fp16_tflops",))
        for k in keys:  # Kepler has no FP16 arithmetic at all
            assert getattr(g, k) and getattr(g, k) > 0, (pci_id, k)
        if g.cc >= (8, 0):
            assert g.tf32_tflops and g.bf16_tflops, pci_id
        else:
            assert g.tf32_tflops is None and g.bf16_tflops is None, pci_id


def test_rtx_2070_super_peaks_match_the_facts_file():
    g = lookup("10de:1e84")
    assert (g.fp32_tflops, g.fp16_tflops, g.mem_bandwidth_gbs, g.memory_gb, g.sms) == (9.06, 36.3, 448, 8, 40)


def test_lspci_keeps_only_nvidia_display_functions():
    lines = [
        LSPCI_2070S,
        "0a:00.1 Audio device [0403]: NVIDIA Corporation TU104 HD Audio Controller [10de:10f8] (rev a1)",
        "00:02.0 VGA compatible controller [0300]: Intel Corporation Alder Lake-S GT1 [8086:4680] (rev 0c)",
        "41:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 PCIe] [10de:2331] (rev a1)",
        "0000:03:00.0 [0300]: [10de:2204]",  # dlrig's sysfs fallback (no lspci on the host)
    ]
    gpus = parse_lspci(lines)
    assert [(g.pci_id, g.bus_id) for g in gpus] == [
        ("10de:1e84", "0a:00.0"), ("10de:2331", "41:00.0"), ("10de:2204", "0000:03:00.0")]


def test_id_missing_from_table_resolves_through_its_pci_ids_chip():
    assert "10de:2bff" not in table()  # an id no recorded NVIDIA list names
    (g,) = parse_lspci(["01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GB202 [GeForce RTX 5090 X] [10de:2bff] (rev a1)"])
    assert (g.driver_floor, g.open_branches) == (None, ())
    assert (g.arch, g.compute_capability, g.in_table, g.fp32_tflops) == ("blackwell", "12.0", False, None)
    (g,) = parse_lspci(["01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102GL [RTX A5500] [10de:2233] (rev a1)"])
    assert g.arch == "ampere"


def test_lookup_uses_the_machines_pci_ids(tmp_path):
    ids = tmp_path / "pci.ids"
    ids.write_text("10de  NVIDIA Corporation\n\t2b99  GB203 [GeForce RTX 5070 Ti Super]\n10df  Emulex\n")
    assert pci_ids_name("10de:2b99", [str(ids)]) == "GB203 [GeForce RTX 5070 Ti Super]"
    g = lookup("10de:2b99", pci_ids_paths=[str(ids)])
    assert (g.chip, g.arch, g.name) == ("GB203", "blackwell", "GeForce RTX 5070 Ti Super")


@pytest.mark.parametrize("bad,words", [
    ("1002:73bf", "not an NVIDIA device (AMD)"),
    ("RTX 30", "matches several cards"),
    ("RTX 9090", "did you mean 'GeForce RTX 5090'"),
    ("10de:ffff", "not in dlrig's GPU table"),
])
def test_unknown_is_one_clear_line(bad, words):
    with pytest.raises(UnknownGpu) as e:
        lookup(bad, pci_ids_paths=[])
    assert words in str(e.value) and "\n" not in str(e.value)


def test_pre_maxwell_chip_from_pci_ids_is_refused():
    with pytest.raises(UnknownGpu, match="older than Kepler"):
        parse_lspci(["01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GF108 [GeForce GT 430] [10de:0de1] (rev a1)"])
