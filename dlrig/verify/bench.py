"""``dlrig bench``: what the card does against what it should (peaks from dlrig's GPU table).

Measures matmul throughput in FP32, TF32, FP16 and BF16 (where the device has them), device
memory bandwidth (a device-to-device copy), pinned host<->device transfers, and a small convnet
training step with and without AMP. Every number is the median of timed repeats after warm-up,
with the device synchronised around each timed sample, so GPU numbers are honest.

The measuring half (:func:`run_measurements` and below) needs only the standard library and
torch: ``dlrig bench --python PATH`` runs this file's source with another interpreter (a conda
env without dlrig) and reads the JSON line it prints. The reporting half (peaks, table, chart:
:mod:`dlrig.verify.benchreport`) runs in dlrig's own interpreter.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

# ------------------------------------------------------------------------------- arithmetic


def matmul_tflops(n: int, seconds: float) -> float:
    """An n x n by n x n matmul is 2n^3 floating-point operations (a multiply and an add)."""
    return 2.0 * n ** 3 / seconds / 1e12


def copy_gbs(nbytes: int, seconds: float) -> float:
    """A copy reads and writes every byte: 2 x nbytes of memory traffic."""
    return 2.0 * nbytes / seconds / 1e9


def transfer_gbs(nbytes: int, seconds: float) -> float:
    """A host<->device transfer moves nbytes across the bus once."""
    return nbytes / seconds / 1e9


def images_per_s(batch: int, seconds: float) -> float:
    return batch / seconds


def fraction_of_peak(value: float | None, peak: float | None) -> float | None:
    if value is None or not peak:
        return None
    return value / peak


def inner_iterations(estimate_s: float, target_s: float, cap: int = 1000) -> int:
    """How many calls one timed sample needs to last about ``target_s`` (at least 1)."""
    if estimate_s <= 0 or not math.isfinite(estimate_s):
        return cap
    return max(1, min(cap, int(math.ceil(target_s / estimate_s))))


def median_time(samples: list[float]) -> float:
    return statistics.median(samples)


# ------------------------------------------------------------------------------- measuring

#: Sizes per device: GPUs get sizes that saturate them; CPUs small ones (a test, not a verdict).
SIZES = {
    "cuda": {"matmul": 8192, "copy_mib": 1024, "transfer_mib": 256, "batch": 128, "image": 64, "channels": 64,
             "warmup": 5, "repeats": 15, "target_s": 0.05},
    "cpu": {"matmul": 256, "copy_mib": 32, "transfer_mib": 0, "batch": 8, "image": 32, "channels": 16,
            "warmup": 2, "repeats": 5, "target_s": 0.02},
}


class BenchError(RuntimeError):
    """The benchmark cannot run here; the message says why and what to do."""


def time_call(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, repeats: int,
              target_s: float) -> dict:
    """Median seconds per call: warm-up, then ``repeats`` samples of ``inner`` calls each, synced."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    inner = inner_iterations(time.perf_counter() - t0, target_s)
    samples = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / inner)
    return {"median_s": median_time(samples), "min_s": min(samples), "max_s": max(samples),
            "repeats": repeats, "inner": inner}


def _row(name: str, group: str, unit: str, **kw) -> dict:
    return {"name": name, "group": group, "unit": unit, "value": None, "peak": None, "fraction": None,
            "skipped": None, **kw}


def _skip(name: str, group: str, unit: str, why: str, **kw) -> dict:
    return _row(name, group, unit, skipped=why, **kw)


def _device_info(torch, device: str) -> dict:
    info = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": sys.version.split()[0]}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(name=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                    multiprocessors=p.multi_processor_count, gpu_count=torch.cuda.device_count())
        try:
            out = subprocess.run(["nvidia-smi", "-i", "0", "--query-gpu=pci.device_id,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout
            dev, drv = [x.strip() for x in out.strip().split(",")][:2]
            info.update(pci_id=f"{dev[-4:].lower()}:{dev[2:6].lower()}" if dev.startswith("0x") else None,
                        driver=drv)
        except Exception:  # nvidia-smi missing or odd: the name still finds the card
            info.update(pci_id=None, driver=None)
    else:
        import os
        import platform

        info.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                    cpus=os.cpu_count(), capability=None)
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    info["name"] = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return info


def _matmul_rows(torch, device: str, sz: dict, sync, cc: tuple[int, int] | None) -> list[dict]:
    n = sz["matmul"]
    rows = []
    dev = torch.device(device)
    kinds = [("matmul fp32", "fp32", torch.float32, False), ("matmul tf32", "tf32", torch.float32, True),
             ("matmul fp16", "fp16", torch.float16, False), ("matmul bf16", "bf16", torch.bfloat16, False)]
    for name, key, dtype, tf32 in kinds:
        row = dict(size=n, dtype=key)
        if key == "tf32" and device != "cuda":
            rows.append(_skip(name, "matmul", "TFLOPS", "TF32 is a CUDA tensor-core mode", **row))
            continue
        if key in ("tf32", "bf16") and device == "cuda" and cc is not None and cc < (8, 0):
            rows.append(_skip(name, "matmul", "TFLOPS",
                              f"compute capability {cc[0]}.{cc[1]} < 8.0: no {key.upper()} tensor cores", **row))
            continue
        try:
            if device == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
            a = torch.randn(n, n, device=dev, dtype=torch.float32).to(dtype)
            b = torch.randn(n, n, device=dev, dtype=torch.float32).to(dtype)
            out = torch.empty(n, n, device=dev, dtype=dtype)
            t = time_call(lambda: torch.matmul(a, b, out=out), sync, sz["warmup"], sz["repeats"], sz["target_s"])
            rows.append(_row(name, "matmul", "TFLOPS", value=matmul_tflops(n, t["median_s"]), **row, **t))
            del a, b, out
        except Exception as e:  # e.g. a CPU without fp16 kernels
            rows.append(_skip(name, "matmul", "TFLOPS", f"not supported here: {type(e).__name__}: {e}"[:200], **row))
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    return rows


def _memory_rows(torch, device: str, sz: dict, sync) -> list[dict]:
    rows = []
    dev = torch.device(device)
    nbytes = sz["copy_mib"] * 2**20
    src = torch.empty(nbytes, dtype=torch.uint8, device=dev).fill_(1)
    dst = torch.empty_like(src)
    t = time_call(lambda: dst.copy_(src), sync, sz["warmup"], sz["repeats"], sz["target_s"])
    rows.append(_row("memory copy (device)", "memory", "GB/s", value=copy_gbs(nbytes, t["median_s"]),
                     size=nbytes, **t))
    del src, dst
    if device != "cuda" or not sz["transfer_mib"]:
        why = "no device: host<->device transfers need a GPU"
        rows.append(_skip("host->device pinned", "transfer", "GB/s", why))
        rows.append(_skip("device->host pinned", "transfer", "GB/s", why))
        return rows
    nbytes = sz["transfer_mib"] * 2**20
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True).fill_(1)
    gpu = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    t = time_call(lambda: gpu.copy_(host, non_blocking=True), sync, sz["warmup"], sz["repeats"], sz["target_s"])
    rows.append(_row("host->device pinned", "transfer", "GB/s", value=transfer_gbs(nbytes, t["median_s"]),
                     size=nbytes, **t))
    t = time_call(lambda: host.copy_(gpu, non_blocking=True), sync, sz["warmup"], sz["repeats"], sz["target_s"])
    rows.append(_row("device->host pinned", "transfer", "GB/s", value=transfer_gbs(nbytes, t["median_s"]),
                     size=nbytes, **t))
    return rows


def _convnet(torch, channels: int = 64, classes: int = 10):
    nn = torch.nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, channels), *block(channels, channels), nn.MaxPool2d(2),
        *block(channels, 2 * channels), *block(2 * channels, 2 * channels), nn.MaxPool2d(2),
        *block(2 * channels, 4 * channels), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * channels, classes),
    )


def _train_rows(torch, device: str, sz: dict, sync) -> list[dict]:
    rows = []
    dev = torch.device(device)
    batch, px = sz["batch"], sz["image"]
    torch.manual_seed(0)
    x = torch.randn(batch, 3, px, px, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    amp_dtype = torch.float16 if device == "cuda" else torch.bfloat16
    for amp in (False, True):
        model = _convnet(torch, sz["channels"]).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        scaler = None
        if amp and device == "cuda":
            try:
                scaler = torch.amp.GradScaler("cuda")
            except (AttributeError, TypeError):  # torch < 2.3
                scaler = torch.cuda.amp.GradScaler()

        def step():
            opt.zero_grad(set_to_none=True)
            if amp:
                with torch.autocast(device, dtype=amp_dtype):
                    loss = loss_fn(model(x), y)
            else:
                loss = loss_fn(model(x), y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()

        name = f"convnet step {'amp ' + str(amp_dtype).removeprefix('torch.') if amp else 'fp32'}"
        try:
            t = time_call(step, sync, sz["warmup"], sz["repeats"], sz["target_s"])
            rows.append(_row(name, "train", "img/s", value=images_per_s(batch, t["median_s"]),
                             size=f"batch {batch} x 3x{px}x{px}", **t))
        except Exception as e:
            rows.append(_skip(name, "train", "img/s", f"{type(e).__name__}: {e}"[:200]))
    if len(rows) == 2 and rows[0]["value"] and rows[1]["value"]:
        rows[1]["speedup"] = rows[1]["value"] / rows[0]["value"]
    return rows


def run_measurements(device: str | None = None, repeats: int | None = None, sizes: dict | None = None) -> dict:
    """Measure everything on ``device`` (None: cuda if torch sees a GPU, else cpu); a JSON-able dict."""
    try:
        import torch
    except ImportError as e:
        raise BenchError(f"torch is not importable by {sys.executable} ({e}): install torch, or point "
                         "--python at an environment that has it") from None
    has_cuda = torch.cuda.is_available()
    device = device or ("cuda" if has_cuda else "cpu")
    if device == "cuda" and not has_cuda:
        why = "a CPU build" if not torch.version.cuda else f"built for CUDA {torch.version.cuda}"
        raise BenchError(f"torch {torch.__version__} ({why}) sees no CUDA device: run `dlrig verify --local` "
                         "for the reason, or use --device cpu")
    sz = dict(SIZES[device], **(sizes or {}))
    if repeats:
        sz["repeats"] = repeats
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    info = _device_info(torch, device)
    cc = None
    if device == "cuda":
        major, minor = (int(x) for x in info["capability"].split("."))
        cc = (major, minor)
    started = time.perf_counter()
    results = _matmul_rows(torch, device, sz, sync, cc)
    results += _memory_rows(torch, device, sz, sync)
    results += _train_rows(torch, device, sz, sync)
    info["seconds"] = round(time.perf_counter() - started, 2)
    info["method"] = (f"median of {sz['repeats']} timed samples after {sz['warmup']} warm-up calls; each sample "
                      f"~{sz['target_s'] * 1000:.0f} ms of back-to-back calls"
                      + (", torch.cuda.synchronize() around every sample" if device == "cuda" else ""))
    return {**info, "results": results}


def measure(device: str | None = None, python: str | None = None, repeats: int | None = None,
            sizes: dict | None = None) -> dict:
    """Measure in this interpreter, or with ``python`` (this file's source, no dlrig needed there).
    ``sizes`` overrides entries of :data:`SIZES` (tests use tiny ones)."""
    if not python:
        return run_measurements(device, repeats, sizes)
    args = ["--measure"] + (["--device", device] if device else []) + (["--repeats", str(repeats)] if repeats else [])
    if sizes:
        args += ["--sizes", json.dumps(sizes)]
    try:
        proc = subprocess.run([python, "-c", Path(__file__).read_text(), *args], capture_output=True, text=True,
                              timeout=1800)
    except FileNotFoundError:
        raise BenchError(f"--python {python}: not found") from None
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            payload = json.loads(line)
            if "error" in payload:
                raise BenchError(payload["error"])
            return payload
    raise BenchError(f"{python} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-400:]}")


def _main(argv: list[str]) -> int:
    device = argv[argv.index("--device") + 1] if "--device" in argv else None
    repeats = int(argv[argv.index("--repeats") + 1]) if "--repeats" in argv else None
    sizes = json.loads(argv[argv.index("--sizes") + 1]) if "--sizes" in argv else None
    try:
        print(json.dumps(run_measurements(device, repeats, sizes)))
    except BenchError as e:
        print(json.dumps({"error": str(e)}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
