"""dlrig.verify.bench: the arithmetic, peaks from the GPU table, the table and chart, and real CPU runs
(torch 2.13 CPU). GPU-shaped reports below carry made-up numbers (fakes) to test the reporting."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlrig.verify import bench as B
from dlrig.verify import benchreport as BR


def test_arithmetic():
    assert B.matmul_tflops(1000, 1.0) == pytest.approx(2e-3)  # 2 * 1000^3 flops in 1 s
    assert B.matmul_tflops(8192, 0.02) == pytest.approx(2 * 8192 ** 3 / 0.02 / 1e12)
    assert B.copy_gbs(10**9, 1.0) == pytest.approx(2.0)  # read + write
    assert B.transfer_gbs(2 * 10**9, 0.5) == pytest.approx(4.0)
    assert B.images_per_s(128, 0.064) == pytest.approx(2000)
    assert B.fraction_of_peak(51.0, 67.0) == pytest.approx(0.761, abs=1e-3)
    assert B.fraction_of_peak(1.0, None) is None and B.fraction_of_peak(None, 5) is None


def test_inner_iterations_and_median():
    assert B.inner_iterations(0.001, 0.05) == 50
    assert B.inner_iterations(0.2, 0.05) == 1
    assert B.inner_iterations(0.0, 0.05) == 1000
    assert B.median_time([3.0, 1.0, 2.0, 100.0, 2.5]) == 2.5  # an outlier does not move it


def test_time_call_warms_up_syncs_and_takes_the_median():
    calls, syncs = [], []
    t = B.time_call(lambda: calls.append(1), lambda: syncs.append(1), warmup=3, repeats=5, target_s=0.0001)
    assert t["repeats"] == 5 and t["inner"] >= 1
    assert len(calls) == 3 + 1 + 5 * t["inner"]
    assert len(syncs) >= 2 * 5 + 2
    assert t["min_s"] <= t["median_s"] <= t["max_s"]


def _fake_gpu_report():
    rows = [B._row("matmul fp32", "matmul", "TFLOPS", value=7.0), B._row("matmul tf32", "matmul", "TFLOPS",
            skipped="compute capability 7.5 < 8.0: no TF32 tensor cores"),
            B._row("matmul fp16", "matmul", "TFLOPS", value=30.0),
            B._row("memory copy (device)", "memory", "GB/s", value=400.0),
            B._row("host->device pinned", "transfer", "GB/s", value=12.0),
            B._row("convnet step fp32", "train", "img/s", value=1000.0),
            B._row("convnet step amp float16", "train", "img/s", value=1800.0, speedup=1.8)]
    return {"device": "cuda", "name": "NVIDIA GeForce RTX 2070 SUPER", "pci_id": "10de:1e84", "capability": "7.5",
            "torch": "2.14.1+cu128", "cuda": "12.8", "method": "fake", "seconds": 1.0, "results": rows}


def test_peaks_from_the_gpu_table():
    pytest.importorskip("dlrig.gpu.table")
    report = BR.add_peaks(_fake_gpu_report())
    assert report["peak_source"].startswith("dlrig GPU table: ")
    rows = {r["name"]: r for r in report["results"]}
    from dlrig.gpu import table as gpus

    card = gpus.lookup("10de:1e84")
    assert rows["matmul fp32"]["peak"] == card.fp32_tflops
    assert rows["matmul fp32"]["fraction"] == pytest.approx(7.0 / card.fp32_tflops)
    assert rows["memory copy (device)"]["peak"] == card.mem_bandwidth_gbs
    assert rows["host->device pinned"]["peak"] is None and rows["convnet step fp32"]["fraction"] is None
    assert rows["matmul tf32"]["value"] is None and rows["matmul tf32"]["fraction"] is None


def test_peaks_given_explicitly_and_table():
    report = BR.add_peaks(_fake_gpu_report(), {"fp32_tflops": 10.0, "fp16_tflops": 40.0, "mem_bandwidth_gbs": 500.0})
    table = BR.format_table(report)
    assert "matmul fp32                   7.00 TFLOPS  10.0 TFLOPS      70%" in table
    assert "memory copy (device)             400 GB/s     500 GB/s      80%" in table
    assert "matmul tf32                       skipped" in table and "< 8.0" in table
    assert "1.80x fp32" in table


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = BR.plot(BR.add_peaks(_fake_gpu_report(), {"fp32_tflops": 10.0}), str(tmp_path / "c.png"))
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


TINY = {"matmul": 64, "copy_mib": 4, "transfer_mib": 0, "batch": 2, "image": 16, "channels": 4, "warmup": 1,
        "repeats": 3, "target_s": 0.001}


@pytest.fixture
def tiny_cpu(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setitem(B.SIZES, "cpu", dict(TINY))


def test_cpu_run_measures_everything_it_can(tiny_cpu):
    report = BR.add_peaks(B.run_measurements("cpu"))
    rows = {r["name"]: r for r in report["results"]}
    assert report["device"] == "cpu" and report["torch"].startswith("2.")
    for name in ("matmul fp32", "matmul fp16", "matmul bf16", "memory copy (device)", "convnet step fp32",
                 "convnet step amp bfloat16"):
        assert rows[name]["value"] > 0 and rows[name]["repeats"] == 3, name
    assert rows["matmul tf32"]["skipped"] == "TF32 is a CUDA tensor-core mode"
    assert rows["host->device pinned"]["skipped"].startswith("no device")
    assert rows["matmul fp32"]["value"] == pytest.approx(B.matmul_tflops(64, rows["matmul fp32"]["median_s"]))
    assert all(r["peak"] is None for r in rows.values())
    json.dumps(report)


def test_cuda_without_gpu_is_a_clear_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(B.BenchError, match="sees no CUDA device"):
        B.run_measurements("cuda")


def test_cli_cpu_table_json_png(tmp_path):
    """The real command, small CPU sizes (about 15-30 s here): table, JSON and PNG."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    res = subprocess.run([sys.executable, "-m", "dlrig", "bench", "--device", "cpu", "--json", "--plot", str(png), "--repeats", "3"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["device"] == "cpu" and payload["peak_source"] == "none (CPU)"
    assert {r["name"] for r in payload["results"]} >= {"matmul fp32", "memory copy (device)", "convnet step fp32"}
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_measure_with_another_interpreter(tiny_cpu):
    """--python: this file's source runs in a child interpreter (here the same python) and returns JSON."""
    report = B.measure("cpu", python=sys.executable, repeats=3, sizes=TINY)
    assert {r.get("size") for r in report["results"] if r["name"] == "matmul fp32"} == {64}
    assert report["device"] == "cpu" and report["results"]
    with pytest.raises(B.BenchError, match="not found"):
        B.measure("cpu", python="/nonexistent/python")
