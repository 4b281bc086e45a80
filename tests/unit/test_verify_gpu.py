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
    fp16 = torchprobe.matmul_check(torch, cpu, torch.float16)
    assert fp16["ok"] and fp16["rel_err"] < 2e-3 and fp16["elements_out_of_bound"] == 0
    bf16 = torchprobe.matmul_check(torch, cpu, torch.bfloat16)
    assert bf16["ok"] and bf16["rel_err"] > fp16["rel_err"]  # fewer mantissa bits, larger error
    amp = torchprobe.amp_step_check(torch, cpu)
    assert amp["ok"] and amp["loss_last"] < amp["loss_first"]
    assert torchprobe.cudnn_conv_check(torch, cpu)["ok"] is False  # no cuDNN on a CPU build: reported
    broken = torchprobe.matmul_check(torch, cpu, "not-a-dtype")
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


# ------------------------------------------------ verdicts fed wrong results (they must fail)

def _matmul_case(torch, dtype, n=256):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype).float()
    b = torch.randn(n, n, generator=g).to(dtype).float()
    return a, b, a @ b


def test_matmul_tolerance_comes_from_k_and_the_dtype_epsilon():
    torch = pytest.importorskip("torch")
    t16, t16k = (torchprobe.matmul_tolerance(torch, torch.float16, k) for k in (512, 4096))
    tb = torchprobe.matmul_tolerance(torch, torch.bfloat16, 512)
    assert t16["rel"] == pytest.approx(2 * 2**-11 + 2 * 512 * 2**-24)
    assert t16k["rel"] > t16["rel"] and tb["rel"] > 7 * t16["rel"]  # bfloat16: 8x the unit roundoff
    assert t16["elem"] == pytest.approx(3 * 2**-11 + 2**-22 + 2 * 512 * 2**-24)


def test_fp16_verdict_fails_a_bf16_grade_result_and_passes_a_true_fp16_one():
    torch = pytest.importorskip("torch")
    a, b, ref = _matmul_case(torch, torch.float16)
    good = (a.half() @ b.half()).float()
    assert torchprobe.matmul_verdict(torch, a, b, good, ref, torch.float16)["ok"] is True
    bf16_grade = ref.bfloat16().float()  # what a card rounding through bfloat16 would return
    v = torchprobe.matmul_verdict(torch, a, b, bf16_grade, ref, torch.float16)
    assert v["ok"] is False and v["rel_err"] > v["tol"]
    assert torchprobe.matmul_verdict(torch, a, b, bf16_grade, ref, torch.bfloat16)["ok"] is True


@pytest.mark.parametrize("zeroed", [1, 3, 20])
def test_matmul_verdict_fails_a_few_zeroed_outputs(zeroed):
    torch = pytest.importorskip("torch")
    a, b, ref = _matmul_case(torch, torch.float16)
    got = (a.half() @ b.half()).float()
    flat = got.view(-1)
    idx = ref.view(-1).abs().argsort(descending=True)[:: 997][:zeroed]  # spread, non-tiny outputs
    flat[idx] = 0
    v = torchprobe.matmul_verdict(torch, a, b, got, ref, torch.float16)
    assert v["ok"] is False and v["elements_out_of_bound"] == zeroed


def test_matmul_verdict_fails_nan_and_inf():
    torch = pytest.importorskip("torch")
    a, b, ref = _matmul_case(torch, torch.bfloat16, n=64)
    got = ref.bfloat16().float()
    got[0, 0] = float("nan")
    assert torchprobe.matmul_verdict(torch, a, b, got, ref, torch.bfloat16)["ok"] is False
    got[0, 0] = float("inf")
    assert torchprobe.matmul_verdict(torch, a, b, got, ref, torch.bfloat16)["ok"] is False


@pytest.mark.parametrize("losses, ok", [
    ([1.0, 0.5, 0.2], True), ([1.0, 1.2, 1.5], False), ([1.0, 1.0], False), ([1.0, float("nan"), 0.1], False),
    ([1.0, 0.5, 1.2], False), ([2.0, 3.0, 1.0], True), ([1.0, 3.0, 2.0], False), ([2.0, 0.5, 1.0], True),
    ([1.0, float("inf"), 0.1], False), ([], False)])
def test_amp_verdict_on_wrong_training_runs(losses, ok):
    v = torchprobe.amp_verdict(losses)
    assert v["ok"] is ok
    assert (v["loss_first"], v["loss_last"]) == ((losses[0], losses[-1]) if losses else (None, None))


def test_conv_verdict_on_wrong_results():
    torch = pytest.importorskip("torch")
    ref = torch.randn(8, 16, 32, 32, generator=torch.Generator().manual_seed(3))
    assert torchprobe.conv_verdict(torch, ref.clone(), ref.half().float(), ref)["ok"] is True
    assert torchprobe.conv_verdict(torch, ref * 1.01, ref.half().float(), ref)["ok"] is False  # fp32 off by 1%
    assert torchprobe.conv_verdict(torch, ref.clone(), ref * 1.05, ref)["ok"] is False  # fp16 path wrong
    nan = ref.clone()
    nan[0, 0, 0, 0] = float("nan")
    assert torchprobe.conv_verdict(torch, nan, ref.half().float(), ref)["ok"] is False
    assert torchprobe.conv_verdict(torch, torch.zeros_like(ref), ref.half().float(), ref)["ok"] is False


def _smi(n):
    rows = "\n".join(f"{i}, NVIDIA GeForce RTX 4090, 0x268410DE, 580.95.05, 8.9" for i in range(n))
    return G.Smi(0, "", G.parse_smi_query(rows))


@pytest.mark.parametrize("key", ["fp16_matmul", "amp_step", "cudnn_conv", "bf16_matmul"])
def test_gpus_shown_but_no_per_gpu_results_is_a_failure(key):
    """nvidia-smi lists 2 GPUs, the probe returns none (or one): FAIL, never a vacuous pass."""
    for report in ({"cuda_available": True, "device_count": 2, "gpus": []},
                   {"cuda_available": True, "device_count": 0, "gpus": []},
                   {"cuda_available": True, "device_count": 2,
                    "gpus": [{"index": 0, "name": "RTX 4090", key: {"ok": True}}]}):
        with pytest.raises(AssertionError) as e:
            G._assert_per_gpu(report, _smi(2), key, "x", "hint", lambda *a: None)
        assert "GPU(s) this host shows" in str(e.value)
    with pytest.raises(AssertionError):  # nothing shown, nothing returned: still no result to pass on
        G._assert_per_gpu({"gpus": []}, _smi(0), key, "x", "hint", lambda *a: None)


def test_per_gpu_check_fails_wrong_result_probes():
    """Probes that return wrong results (or claim ok with numbers out of tolerance) fail the check."""
    smi = _smi(1)
    for r in ({"ok": False, "rel_err": 0.0029, "tol": 0.00104, "elements_out_of_bound": 0},  # bf16-grade
              {"ok": True, "rel_err": 0.0029, "tol": 0.00104},  # 'ok' contradicted by its numbers
              {"ok": False, "loss_first": 1.0, "loss_last": 1.7},  # AMP loss went up
              {"ok": False, "rel_err": 0.01, "rel_err_fp16": 0.2},  # cuDNN conv wrong
              {}):
        report = {"device_count": 1, "gpus": [{"index": 0, "name": "RTX 4090", "fp16_matmul": r}]}
        with pytest.raises(AssertionError):
            G._assert_per_gpu(report, smi, "fp16_matmul", "x", "hint", lambda *a: None)
    ok = {"device_count": 1, "gpus": [{"index": 0, "name": "RTX 4090",
                                       "fp16_matmul": {"ok": True, "rel_err": 2e-4, "tol": 1.04e-3}}]}
    G._assert_per_gpu(ok, smi, "fp16_matmul", "x", "hint", lambda *a: None)


def test_one_zeroed_output_too_small_for_the_norm_fails_elementwise():
    """A zeroed output of modest size hides in the Frobenius error; the elementwise bound catches it."""
    torch = pytest.importorskip("torch")
    a, b, ref = _matmul_case(torch, torch.float16)
    got = (a.half() @ b.half()).float()
    i = int((ref.view(-1).abs() - 2.0).abs().argmin())  # an output near 2.0: well above its bound (~0.25)
    got.view(-1)[i] = 0
    v = torchprobe.matmul_verdict(torch, a, b, got, ref, torch.float16)
    assert v["rel_err"] <= v["tol"] and v["elements_out_of_bound"] == 1 and v["ok"] is False


def test_tolerance_uses_the_inner_dimension_k():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(4)
    a = torch.randn(8, 512, generator=g).half().float()
    b = torch.randn(512, 8, generator=g).half().float()
    v = torchprobe.matmul_verdict(torch, a, b, (a.half() @ b.half()).float(), a @ b, torch.float16)
    assert v["ok"] and v["tol"] == torchprobe.matmul_tolerance(torch, torch.float16, 512)["rel"]


def test_per_gpu_texts_from_a_json_report():
    """Reports arrive as JSON: keys are not the interned literals of this file."""
    report = json.loads(json.dumps({"gpus": [
        {"index": 0, "name": "A", "fp16_matmul": {"ok": False, "rel_err": 0.2, "tol": 0.01}},
        {"index": 1, "name": "B", "fp16_matmul": {"ok": True, "rel_err": 0.000412345, "tol": 0.00104}}]}))
    bad, good, skipped = G._per_gpu(report, "fp16_matmul")
    assert bad == ["GPU0 A: rel_err 0.2, tol 0.01"] and good == ["GPU1 B: rel_err 0.000412, tol 0.00104"]


def test_per_gpu_missing_key_and_errors_do_not_stop_the_others():
    report = {"gpus": [{"index": 0, "name": "A", "error": "RuntimeError: boom"}, {"index": 1, "name": "B"},
                       {"index": 2, "name": "C", "amp_step": {"ok": True, "steps": 30}}]}
    bad, good, skipped = G._per_gpu(report, "amp_step")
    assert bad == ["GPU0 A: RuntimeError: boom", "GPU1 B: no result"] and good == ["GPU2 C: steps 30"]


def test_per_gpu_all_skipped_skips_and_a_pass_records_info():
    seen = []
    record = lambda k, v: seen.append((k, v))  # noqa: E731
    only_skipped = {"device_count": 1, "gpus": [{"index": 0, "name": "T4", "bf16_matmul": {"skipped": "cc 7.5"}}]}
    with pytest.raises(pytest.skip.Exception):
        G._assert_per_gpu(only_skipped, _smi(1), "bf16_matmul", "x", "hint", record)
    assert seen == [("info", "GPU0 T4: cc 7.5")]
    seen.clear()
    both = {"device_count": 2, "gpus": [only_skipped["gpus"][0],
                                        {"index": 1, "name": "A100", "bf16_matmul": {"ok": True, "steps": 1}}]}
    try:  # no skip: one GPU really passed (pytest's Skipped is a BaseException: caught here, not passed on)
        G._assert_per_gpu(both, _smi(2), "bf16_matmul", "x", "hint", record)
    except BaseException as e:
        pytest.fail(f"one GPU passed, yet: {type(e).__name__} {e}")
    assert seen == [("info", "GPU1 A100: steps 1; GPU0 T4: cc 7.5")]
    seen.clear()
    good_only = {"device_count": 1, "gpus": [both["gpus"][1]]}
    G._assert_per_gpu(good_only, _smi(1), "bf16_matmul", "x", "hint", record)
    assert seen == [("info", "GPU1 A100: steps 1")]


def test_per_gpu_nothing_shown_nothing_returned_says_so():
    with pytest.raises(AssertionError) as e:
        G._assert_per_gpu({"gpus": []}, _smi(0), "fp16_matmul", "fp16", "hint", lambda *a: None)
    assert "the probe returned no per-GPU result" in str(e.value) and "of the" not in str(e.value)


def test_per_gpu_failure_text_keeps_every_number_but_ok():
    report = {"gpus": [{"index": 0, "name": "A", "amp_step": {"ok": False, "loss_first": 1.0, "loss_last": 1.7}}]}
    assert G._per_gpu(report, "amp_step")[0] == ["GPU0 A: loss_first 1.0, loss_last 1.7"]


def test_per_gpu_expects_nothing_unless_told():
    assert G._per_gpu({"gpus": []}, "fp16_matmul") == ([], [], [])
    assert G._per_gpu({"gpus": []}, "fp16_matmul", 1)[0] != []
