"""The GPU checks' pure parts: nvidia-smi parsing, tensor cores per card, per-GPU result reading,
and the torch probe run for real on this machine's CPU torch. Probe reports for GPUs below are
made-up dicts (fakes) in the probe's JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlrig.verify import torchprobe
from dlrig.verify.checks import test_gpu as G


def test_pci_id_from_nvidia_smi():
    assert G.pci_id("0x1E8410DE") == "10de:1e84"
    assert G.pci_id("0x233010DE") == "10de:2330"
    assert G.pci_id("garbage") is None


def test_parse_smi_query():
    rows = G.parse_smi_query("0, NVIDIA GeForce RTX 2070 SUPER, 0x1E8410DE, 535.216.01, 7.5\n"
                             "1, NVIDIA H100 80GB HBM3, 0x233010DE, 535.216.01, 9.0\n")
    assert [r["pci_id"] for r in rows] == ["10de:1e84", "10de:2330"]
    assert rows[1]["driver_version"] == "535.216.01" and rows[1]["compute_cap"] == "9.0"


@pytest.mark.parametrize("cc,name,want", [
    ("6.1", "NVIDIA GeForce GTX 1080 Ti", "no tensor cores"),
    ("7.5", "NVIDIA GeForce GTX 1660 SUPER", "no tensor cores"),
    ("7.5", "NVIDIA GeForce RTX 2070 SUPER", "tensor cores: FP16"),
    ("8.6", "NVIDIA GeForce RTX 3090", "tensor cores: FP16, BF16, TF32"),
    ("8.9", "NVIDIA GeForce RTX 4090", "tensor cores: FP16, BF16, TF32, FP8"),
])
def test_tensor_cores_from_capability(cc, name, want):
    assert G.tensor_cores(cc, name) == want


def test_tensor_cores_from_the_gpu_table():
    pytest.importorskip("dlrig.gpu.table")
    info = G.gpu_info({"pci_id": "10de:1e84", "name": "x"})
    assert info is not None and G.tensor_cores("7.5", "x", info) == "tensor cores: FP16"
    assert G.gpu_info({"pci_id": None, "name": "no such card at all"}) is None


def test_per_gpu_reading():
    report = {"gpus": [
        {"index": 0, "name": "RTX 2070 SUPER", "bf16_matmul": {"skipped": "compute capability 7.5 < 8.0"},
         "fp16_matmul": {"ok": True, "rel_err": 0.0004, "tol": 0.01}},
        {"index": 1, "name": "A100", "fp16_matmul": {"ok": False, "rel_err": 0.2, "tol": 0.01},
         "bf16_matmul": {"ok": True, "rel_err": 0.003, "tol": 0.03}},
        {"index": 2, "error": "RuntimeError: CUDA error: an illegal memory access"},
    ]}
    bad, good, skipped = G._per_gpu(report, "fp16_matmul")
    assert good == ["GPU0 RTX 2070 SUPER: rel_err 0.0004, tol 0.01"]
    assert bad[0] == "GPU1 A100: rel_err 0.2, tol 0.01" and "illegal memory access" in bad[1]
    bad, good, skipped = G._per_gpu(report, "bf16_matmul")
    assert skipped == ["GPU0 RTX 2070 SUPER: compute capability 7.5 < 8.0"] and len(good) == 1


def test_probe_source_runs_as_a_script_on_cpu():
    """What the checks send to the host: `python -c SOURCE`, here with this machine's CPU torch."""
    pytest.importorskip("torch")
    code = G.PROBE_SOURCE + "\nimport sys; sys.argv[1:] = ['--gpu']\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["torch"].startswith("2.") and report["cpu_matmul_ok"] is True
    assert report["cuda_available"] is False and report["gpus"] == []


def test_probe_without_torch_reports_the_import_error(tmp_path):
    res = subprocess.run([sys.executable, "-S", "-c", G.PROBE_SOURCE], capture_output=True, text=True, timeout=60)
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["import_error"].startswith("ModuleNotFoundError")


def test_probe_checks_on_cpu_tensors():
    """The per-GPU sub-checks are device-agnostic: run them on CPU for real."""
    torch = pytest.importorskip("torch")
    cpu = torch.device("cpu")
    fp16 = torchprobe.matmul_check(torch, cpu, torch.float16, torchprobe.FP16_TOL)
    assert fp16["ok"] and fp16["rel_err"] < 2e-3
    bf16 = torchprobe.matmul_check(torch, cpu, torch.bfloat16, torchprobe.BF16_TOL)
    assert bf16["ok"] and bf16["rel_err"] > fp16["rel_err"]  # fewer mantissa bits, larger error
    amp = torchprobe.amp_step_check(torch, cpu)
    assert amp["ok"] and amp["loss_last"] < amp["loss_first"]
    assert torchprobe.cudnn_conv_check(torch, cpu)["ok"] is False  # no cuDNN on a CPU build: reported
    broken = torchprobe.matmul_check(torch, cpu, "not-a-dtype", 0.01)
    assert broken["ok"] is False and "error" in broken


class _FakeHost:
    """A fake testinfra host: only ``system_info`` (Debian 12), for the resolver call."""

    class system_info:  # noqa: N801
        distribution = "debian"
        release = "12.7"


def test_driver_branch_is_resolved_from_the_host_and_settings():
    pytest.importorskip("dlrig.gpu.resolver")
    from dlrig.engine.preflight import effective_data
    from dlrig.gpu import table as gpus

    assert G.os_id(_FakeHost) == "debian-12"
    res = G._resolve(_FakeHost, effective_data({}), [gpus.lookup("10de:1e84")])
    assert res.driver.branch == 535  # Debian 12's non-free driver
    smi = G.Smi(0, "", G.parse_smi_query("0, NVIDIA GeForce RTX 2070 SUPER, 0x1E8410DE, 535.216.01, 7.5"))
    assert G._gpu_infos(smi)[0].pci_id == "10de:1e84"
    lspci_only = G.Smi(9, "", [], evidence=G.hints.parse_evidence(
        "### lspci_rc\n0\n### lspci\n0a:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 "
        "[GeForce RTX 2070 SUPER] [10de:1e84] (rev a1)\n"))
    assert [g.pci_id for g in G._gpu_infos(lspci_only)] == ["10de:1e84"]
