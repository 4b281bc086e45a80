"""GPU checks (the nvidia_driver role's, and torch on the GPU): each failure says what to do.

nvidia-smi runs and lists the GPUs; the loaded driver is the resolved branch and new enough for
the torch build; nouveau is not loaded; torch imports in the environment and sees CUDA; as many
devices as nvidia-smi lists; per GPU: fp16 matmul vs an fp32 reference, an autocast + GradScaler
step that lowers the loss, a cuDNN convolution, bf16 only where compute capability >= 8.0;
tensor cores reported per card.

On a ``cpu_only`` rig the GPU checks are skipped (reported, not hidden) and torch is checked on
the CPU. Torch checks run when the host has the pytorch role or ``dlrig verify --python PATH``
names an interpreter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dlrig.verify import hints
from dlrig.verify.hints import Finding, fail_message

SMI_QUERY = ("nvidia-smi --query-gpu=index,name,pci.device_id,driver_version,compute_cap "
             "--format=csv,noheader")
PROBE_SOURCE = (Path(__file__).resolve().parent.parent / "torchprobe.py").read_text()


# ------------------------------------------------------------------------------- helpers

@dataclass
class Smi:
    rc: int
    output: str
    gpus: list[dict] = field(default_factory=list)
    evidence: hints.Evidence | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and bool(self.gpus)

    @property
    def driver_version(self) -> str | None:
        return self.gpus[0]["driver_version"] if self.gpus else None

    def finding(self) -> Finding:
        if self.rc == 0 and not self.gpus:
            return Finding("nvidia-smi runs but lists no GPU",
                           "check `lspci -nn -d 10de:` and `dmesg | grep NVRM` (a GPU that fell off the bus "
                           "needs a power cycle)")
        return hints.nvidia_smi_hint(self.evidence or hints.Evidence(nvidia_smi_rc=self.rc, nvidia_smi=self.output))


def pci_id(device_id: str) -> str | None:
    """nvidia-smi's ``0x1E8410DE`` -> ``10de:1e84``."""
    m = re.fullmatch(r"(?:0x)?([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})", device_id.strip())
    return f"{m.group(2).lower()}:{m.group(1).lower()}" if m else None


def parse_smi_query(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 5 and parts[0].isdigit():
            out.append({"index": int(parts[0]), "name": parts[1], "pci_id": pci_id(parts[2]),
                        "driver_version": parts[3], "compute_cap": parts[4] if len(parts) > 4 else None})
    return out


def gpu_info(g: dict):
    """The GPU table's entry for an nvidia-smi row (by PCI id, then name), or None."""
    from dlrig.gpu import table as gpus

    for key in (g.get("pci_id"), g.get("name")):
        if key:
            try:
                return gpus.lookup(key)
            except Exception:
                continue
    return None


def tensor_cores(cc: str | None, name: str, info=None) -> str:
    """What tensor cores a card has, in words (the GPU table first, compute capability otherwise)."""
    if info is not None:
        fp16, bf16, fp8 = info.fp16_tensor_cores, info.bf16, info.fp8
    else:
        major, _, minor = (cc or "0.0").partition(".")
        v = (int(major or 0), int(minor or 0))
        fp16 = v >= (7, 0) and "GTX 16" not in name
        bf16 = v >= (8, 0)
        fp8 = v >= (8, 9)
    if not fp16:
        return "no tensor cores"
    kinds = ["FP16"] + (["BF16", "TF32"] if bf16 else []) + (["FP8"] if fp8 else [])
    return "tensor cores: " + ", ".join(kinds)


def os_id(host) -> str:
    info = host.system_info
    dist, release = (info.distribution or "").lower(), info.release or ""
    if dist == "debian":
        return f"debian-{release.split('.')[0]}"
    return f"{dist}-{release}"


def _skip_without_driver(smi: Smi) -> None:
    if not smi.ok:
        pytest.skip("needs a working nvidia-smi (see gpu::nvidia_smi_lists_gpus)")


# ------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def gpu_stack(check_context):
    if check_context.cpu_only:
        pytest.skip("cpu_only=True: this rig has no GPU stack")


@pytest.fixture(scope="module")
def smi(host) -> Smi:
    res = host.run(SMI_QUERY)
    out = (res.stdout or "") + (res.stderr or "")
    s = Smi(res.rc, out, parse_smi_query(res.stdout or "") if res.rc == 0 else [])
    if not s.ok:
        s.evidence = hints.parse_evidence(host.run(hints.EVIDENCE_SCRIPT).stdout)
    return s


@pytest.fixture(scope="module")
def torch_report(host, python, python_given, check_context):
    """The torch probe's JSON from the environment's interpreter (``{"missing": why}`` if none)."""
    if not (python_given or check_context.runs("pytorch")):
        pytest.skip("the pytorch role is not on this host (give --python PATH to check an interpreter)")
    args = "" if check_context.cpu_only else " --gpu"
    from dlrig.verify.checks.conftest import run_json

    report, output = run_json(host, python, PROBE_SOURCE + f"\nimport sys; sys.argv[1:] = {args.split()!r}\n", 900)
    if report is None:
        return {"missing": output.strip()[-600:]}
    return report


@pytest.fixture(scope="module")
def cuda_ok(torch_report):
    if "missing" in torch_report or torch_report.get("import_error"):
        pytest.skip("torch does not import (see gpu::torch_imports)")
    if not torch_report.get("cuda_available"):
        pytest.skip("torch sees no CUDA device (see gpu::torch_cuda_available)")
    return torch_report


def _gpu_infos(smi: Smi) -> list:
    """The host's GPUs from the GPU table: nvidia-smi's list, else lspci's (no driver loaded)."""
    if smi.gpus:
        infos = [gpu_info(g) for g in smi.gpus]
        return infos if all(infos) else []
    lines = (smi.evidence.nvidia_pci if smi.evidence else None) or []
    try:
        from dlrig.gpu import table as gpus

        return gpus.parse_lspci(lines)
    except Exception:
        return []


def _resolve(host, settings, infos):
    from dlrig.gpu import resolver

    torch_wish = settings.get("torch_version")
    torch_wish = None if torch_wish in (None, "", "latest") else ".".join(str(torch_wish).split(".")[:2])
    return resolver.resolve(infos, os_id(host), driver_branch=settings.get("driver_branch"),
                            cuda=settings.get("cuda_version"), torch=torch_wish,
                            driver_source=settings.get("driver_source"),
                            cuda_source=settings.get("cuda_source"))


def _resolution(host, settings, smi: Smi):
    """The resolver's answer for this host's GPUs, OS and settings (or pytest.skip with why)."""
    try:
        from dlrig.gpu import resolver
    except ImportError:
        pytest.skip("this dlrig has no resolver")
    infos = [gpu_info(g) for g in smi.gpus]
    unknown = [g["name"] for g, i in zip(smi.gpus, infos) if i is None]
    if unknown:
        pytest.skip(f"not in dlrig's GPU table: {', '.join(unknown)}")
    try:
        return _resolve(host, settings, infos)
    except resolver.ResolveError as e:
        pytest.fail(fail_message(Finding(f"no driver fits this host: {e}", "fix the settings named above")))


# ------------------------------------------------------------------------------- driver checks

def test_nvidia_smi_lists_gpus(gpu_stack, smi, record_property):
    assert smi.ok, fail_message(smi.finding())
    record_property("info", "; ".join(f"GPU{g['index']} {g['name']} ({g['pci_id']}), driver {g['driver_version']}"
                                      for g in smi.gpus))


def test_driver_is_resolved_branch(gpu_stack, smi, host, settings, record_property):
    _skip_without_driver(smi)
    res = _resolution(host, settings, smi)
    loaded = smi.driver_version
    branch = int(loaded.split(".")[0])
    want = res.driver.branch
    record_property("info", f"driver {loaded}; resolved branch {want} ({res.driver.flavor}, {res.driver.source})")
    assert branch == want, fail_message(Finding(
        f"driver {loaded} (branch {branch}) is loaded, the resolved branch for "
        f"{', '.join(sorted({g['name'] for g in smi.gpus}))} on {res.os} is {want}",
        f"run `dlrig apply INVENTORY --roles nvidia_driver` and reboot, or set driver_branch={branch} "
        "to keep this one"))


def test_driver_new_enough_for_torch(gpu_stack, smi, torch_report, record_property):
    _skip_without_driver(smi)
    cuda = torch_report.get("cuda")
    if not cuda:
        pytest.skip("torch is not a CUDA build (see gpu::torch_cuda_available)")
    from dlrig.gpu.resolver import CUDA_FAMILY_FLOOR, CUDA_MIN_DRIVER

    major = int(cuda.split(".")[0])
    floor = CUDA_FAMILY_FLOOR.get(major)
    full = CUDA_MIN_DRIVER.get(".".join(cuda.split(".")[:2]))
    loaded = smi.driver_version
    v = hints.version_tuple
    if floor is None:
        pytest.skip(f"CUDA {cuda} is not in dlrig's table")
    assert v(loaded) >= v(floor), fail_message(Finding(
        f"torch {torch_report.get('torch')} is built for CUDA {cuda}, which needs driver >= {floor}; "
        f"{loaded} is loaded",
        "upgrade the driver (`dlrig apply --roles nvidia_driver`, then reboot) or install a torch build for "
        f"CUDA {major - 1 if major > 11 else major}.x (`dlrig resolve` names one)"))
    note = f"driver {loaded} >= {floor} (CUDA {major}.x floor)"
    if full and v(loaded) < v(full):
        note += f"; below CUDA {cuda}'s own {full}: runs by minor-version compatibility (no PTX JIT)"
    record_property("info", note)


def test_nouveau_not_loaded(gpu_stack, host):
    modules = host.run("cut -d' ' -f1 /proc/modules").stdout.split()
    assert "nouveau" not in modules, fail_message(Finding(
        "nouveau (the open-source driver) is loaded and holds the GPU",
        "the nvidia_driver role blacklists it (/etc/modprobe.d): run `dlrig apply --roles nvidia_driver`, "
        "`sudo update-initramfs -u`, then reboot"))


def test_tensor_cores_reported(gpu_stack, smi, record_property):
    _skip_without_driver(smi)
    lines = [f"GPU{g['index']} {g['name']} (CC {g['compute_cap']}): "
             f"{tensor_cores(g['compute_cap'], g['name'], gpu_info(g))}" for g in smi.gpus]
    record_property("info", "; ".join(lines))


# ------------------------------------------------------------------------------- torch checks

def test_torch_imports(torch_report, python, check_context, record_property):
    if "missing" in torch_report:
        raise AssertionError(fail_message(Finding(
            f"{python} did not run the torch probe: {torch_report['missing'][-300:]}",
            "create the environment (`dlrig apply INVENTORY --roles conda,pytorch`) or give the "
            "interpreter with --python PATH")))
    err = torch_report.get("import_error")
    assert not err, fail_message(Finding(
        f"import torch failed in {torch_report.get('executable', python)}: {err}",
        "re-run `dlrig apply INVENTORY --roles pytorch` (it installs torch from the resolver's index)"))
    assert torch_report.get("cpu_matmul_ok"), fail_message(Finding(
        f"torch {torch_report.get('torch')} imports but a CPU matmul is wrong: {torch_report.get('cpu_error', '')}",
        "reinstall torch (`dlrig apply --roles pytorch`)"))
    record_property("info", f"torch {torch_report['torch']} (CUDA {torch_report.get('cuda') or 'none: CPU build'}) "
                            f"on Python {torch_report.get('python')}")


def _cpu_build_finding(torch_report, host, settings, smi: Smi, python) -> Finding:
    """A CPU build of torch on a GPU host: the index from the resolver for this host's GPUs
    (``pip_index_url`` wins when set), else the generic advice."""
    variant = index = None
    infos = _gpu_infos(smi)
    if infos:
        try:
            res = _resolve(host, settings, infos)
            variant, index = res.torch.variant, res.torch.index_url
        except Exception:  # no resolution: the generic hint still helps
            pass
    index = settings.get("pip_index_url") or index
    return hints.torch_cpu_build_hint(torch_report.get("torch", "?"), variant, index, python)


def test_torch_cuda_available(gpu_stack, torch_report, smi, settings, python, host):
    if "missing" in torch_report or torch_report.get("import_error"):
        pytest.skip("torch does not import (see gpu::torch_imports)")
    if torch_report.get("cuda_available"):
        return
    if hints.is_cpu_build(torch_report.get("torch", ""), torch_report.get("cuda")):
        raise AssertionError(fail_message(_cpu_build_finding(torch_report, host, settings, smi, python)))
    warn = "; ".join(torch_report.get("cuda_warnings") or []) or torch_report.get("cuda_error") or ""
    reason = f"torch.cuda.is_available() is False (torch {torch_report.get('torch')}, CUDA {torch_report.get('cuda')})"
    if warn:
        reason += f": {warn}"
    if not smi.ok:
        hint = smi.finding().hint
    else:
        from dlrig.gpu.resolver import CUDA_FAMILY_FLOOR

        floor = CUDA_FAMILY_FLOOR.get(int(str(torch_report.get("cuda")).split(".")[0]))
        hint = hints.cuda_unavailable_hint(torch_report.get("cuda"), smi.driver_version, floor)
    raise AssertionError(fail_message(Finding(reason, hint)))


def test_device_count_matches_nvidia_smi(gpu_stack, cuda_ok, smi):
    _skip_without_driver(smi)
    n = cuda_ok.get("device_count")
    assert n == len(smi.gpus), fail_message(Finding(
        f"torch sees {n} GPU(s), nvidia-smi lists {len(smi.gpus)}",
        "check CUDA_VISIBLE_DEVICES in the environment and that every GPU is in the same MIG/compute mode "
        "(nvidia-smi -q | grep -i mode)"))


def _per_gpu(report, key: str, expected: int = 0) -> tuple[list[str], list[str], list[str]]:
    """(failures, successes, skips) of one per-GPU sub-check, as text.

    ``expected``: how many GPUs the host shows (nvidia-smi, torch's device count); fewer results than
    that is a failure, never a vacuous pass. A result counts only when the probe said ok AND its
    numbers agree (an error within its tolerance).
    """
    bad, good, skipped = [], [], []
    results = report.get("gpus") or []
    if len(results) < expected:
        bad.append(f"the torch probe returned results for {len(results)} of the {expected} GPU(s) this host shows")
    for g in results:
        label = f"GPU{g.get('index')} {g.get('name', '')}".strip()
        if "error" in g and key not in g:
            bad.append(f"{label}: {g['error']}")
            continue
        r = g.get(key) or {}
        numbers_ok = not ("rel_err" in r and "tol" in r) or r["rel_err"] <= r["tol"]
        if "skipped" in r:
            skipped.append(f"{label}: {r['skipped']}")
        elif r.get("ok") is True and numbers_ok:
            good.append(f"{label}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in r.items() if k not in ("ok",)))
        else:
            detail = r.get("error") or ", ".join(f"{k} {v}" for k, v in r.items() if k != "ok") or "no result"
            bad.append(f"{label}: {detail}")
    return bad, good, skipped


def _assert_per_gpu(report, smi, key, what, hint, record_property):
    expected = max(len(smi.gpus), int(report.get("device_count") or 0))
    bad, good, skipped = _per_gpu(report, key, expected)
    if good or skipped:
        record_property("info", "; ".join(good + skipped))
    assert not bad, fail_message(Finding(f"{what} failed on " + "; ".join(bad), hint))
    assert good or skipped, fail_message(Finding(f"{what}: the probe returned no per-GPU result", hint))
    if skipped and not good:
        pytest.skip("; ".join(skipped))


def test_fp16_matmul_matches_fp32(gpu_stack, cuda_ok, smi, record_property):
    _assert_per_gpu(cuda_ok, smi, "fp16_matmul", "float16 matmul vs float32 reference",
                    "a wrong fp16 result points at the card (overclock, heat, failing memory): run "
                    "`nvidia-smi -q -d ECC,TEMPERATURE,CLOCK` and a memory test (e.g. gpu-burn)", record_property)


def test_amp_gradscaler_step_lowers_loss(gpu_stack, cuda_ok, smi, record_property):
    _assert_per_gpu(cuda_ok, smi, "amp_step", "autocast + GradScaler training step",
                    "mixed precision is broken in this torch build: reinstall torch from the resolver's index "
                    "(`dlrig apply --roles pytorch`)", record_property)


def test_cudnn_convolution_runs(gpu_stack, cuda_ok, smi, record_property):
    _assert_per_gpu(cuda_ok, smi, "cudnn_conv", "cuDNN convolution",
                    "torch's bundled cuDNN did not load or compute correctly: check LD_LIBRARY_PATH does not "
                    "point at another cuDNN, then reinstall torch (`dlrig apply --roles pytorch`)", record_property)


def test_bf16_matmul_where_supported(gpu_stack, cuda_ok, smi, record_property):
    _assert_per_gpu(cuda_ok, smi, "bf16_matmul", "bfloat16 matmul vs float32 reference",
                    "a wrong bf16 result points at the card or the torch build: reinstall torch, then run "
                    "a memory test", record_property)
