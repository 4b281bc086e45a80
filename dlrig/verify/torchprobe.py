"""What torch can do in one interpreter, as one JSON line. Standalone: stdlib + torch only.

The GPU checks send this file's source to the host and run it with the environment's python
(``python -c SOURCE [--gpu]``); run it yourself with ``python torchprobe.py --gpu``. It never
raises: an import error, a CUDA init warning or a failing sub-check is reported in the JSON.

Per GPU (with ``--gpu``): a float16 matmul against a float32 reference, an autocast +
GradScaler training step that must lower the loss, a cuDNN convolution against the CPU result,
and a bfloat16 matmul only where the card has bfloat16 (compute capability >= 8.0).
"""

from __future__ import annotations

import json
import math
import sys
import warnings

CONV_TOL = 1e-3  # fp32 cuDNN conv vs CPU (TF32 off)
CONV_FP16_TOL = 1e-2  # fp16 cuDNN conv (27-term dot products) vs the fp32 CPU result
MATMUL_N = 512  # the matmul checks' n = K


def matmul_tolerance(torch, dtype, k: int) -> dict:
    """Bounds for C = A @ B with A, B (k columns/rows) rounded to ``dtype``, fp32 accumulation.

    With unit roundoff u = eps(dtype)/2 and u32 = eps(float32)/2 (standard error analysis):
    - ``elem``: every |C - C_ref| <= (3u + u^2 + 2k*u32) * (|A| @ |B|): rounding the two inputs
      (2u + u^2 per product), fp32 accumulation in the result and in the reference (k*u32 each),
      rounding the output to ``dtype`` (u*|C_ref| <= u*(|A| @ |B|)). Rigorous: a zeroed or corrupted
      output breaks it.
    - ``rel``: the relative Frobenius error. The inputs are exact in ``dtype`` (matmul_check), so a
      correct result only carries the output rounding, statistically ~0.4u for random data; the bound
      2u + 2k*u32 passes it with a 5x margin and fails a result of a coarser type (a bfloat16-grade
      result, u = 2^-8, has ~1.7e-3 > 1.04e-3, the float16 bound for k = 512).
    """
    u = torch.finfo(dtype).eps / 2
    u32 = torch.finfo(torch.float32).eps / 2
    return {"rel": 2 * u + 2 * k * u32, "elem": 3 * u + u * u + 2 * k * u32}


def matmul_verdict(torch, a, b, got, ref, dtype) -> dict:
    """Judge a reduced-precision product ``got`` of ``a @ b`` against the fp32 ``ref`` (all float32)."""
    tol = matmul_tolerance(torch, dtype, a.shape[1])
    err = _rel_err(torch, got, ref)
    bound = tol["elem"] * (a.double().abs() @ b.double().abs())
    bad = int(((got.double() - ref.double()).abs() > bound).sum())
    # NaN/inf anywhere makes err NaN/inf, which no comparison below lets through
    return {"ok": err <= tol["rel"] and bad == 0, "rel_err": err, "tol": tol["rel"], "elements_out_of_bound": bad}


def _err(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:400]


def _rel_err(torch, got, ref) -> float:
    return float((got.double() - ref.double()).norm() / ref.double().norm())


def matmul_check(torch, device, dtype, n: int = MATMUL_N) -> dict:
    try:
        g = torch.Generator(device="cpu").manual_seed(0)
        # inputs exact in the reduced type: the check measures the product, not the input rounding twice
        a = torch.randn(n, n, generator=g).to(dtype).float()
        b = torch.randn(n, n, generator=g).to(dtype).float()
        if device.type == "cuda":
            m = torch.backends.cuda.matmul
            m.allow_tf32 = False
            for flag in ("allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction"):
                if hasattr(m, flag):
                    setattr(m, flag, False)
        ref = (a.to(device) @ b.to(device)).cpu()  # float32 reference
        got = (a.to(device).to(dtype) @ b.to(device).to(dtype)).float().cpu()
        return matmul_verdict(torch, a, b, got, ref, dtype)
    except Exception as e:
        return {"ok": False, "error": _err(e)}


def amp_step_check(torch, device, steps: int = 30) -> dict:
    """autocast(float16) + GradScaler on a tiny regression: the loss must go down and stay finite."""
    try:
        torch.manual_seed(0)
        nn = torch.nn
        model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)
        g = torch.Generator(device="cpu").manual_seed(1)
        x = torch.randn(256, 32, generator=g).to(device)
        y = (x[:, :4].sum(dim=1, keepdim=True) * 0.5 + 0.1).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        try:
            scaler = torch.amp.GradScaler(device.type)
        except (AttributeError, TypeError):  # torch < 2.3
            scaler = torch.cuda.amp.GradScaler()
        losses = []
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16):
                loss = nn.functional.mse_loss(model(x).float(), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
        return {**amp_verdict(losses), "steps": steps, "scale": float(scaler.get_scale())}
    except Exception as e:
        return {"ok": False, "error": _err(e)}


def amp_verdict(losses: list[float]) -> dict:
    """A mixed-precision training run works when every loss is finite and the last is below the first."""
    ok = bool(losses) and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    return {"ok": ok, "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}


def conv_verdict(torch, got, half, ref) -> dict:
    """cuDNN's fp32 and fp16 convolutions against the CPU fp32 result (NaN/inf or a wrong value fails)."""
    err, err16 = _rel_err(torch, got, ref), _rel_err(torch, half, ref)
    ok = math.isfinite(err) and math.isfinite(err16) and err < CONV_TOL and err16 < CONV_FP16_TOL
    return {"ok": ok, "rel_err": err, "rel_err_fp16": err16}


def cudnn_conv_check(torch, device) -> dict:
    try:
        F = torch.nn.functional
        info = {"cudnn_available": bool(torch.backends.cudnn.is_available()),
                "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
        if not info["cudnn_available"]:
            return {"ok": False, "error": "torch.backends.cudnn.is_available() is False", **info}
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.allow_tf32 = False
        g = torch.Generator(device="cpu").manual_seed(2)
        x = torch.randn(8, 3, 32, 32, generator=g)
        w = torch.randn(16, 3, 3, 3, generator=g)
        ref = F.conv2d(x, w, padding=1)
        got = F.conv2d(x.to(device), w.to(device), padding=1).cpu()
        half = F.conv2d(x.to(device).half(), w.to(device).half(), padding=1).float().cpu()
        return {**conv_verdict(torch, got, half, ref), **info}
    except Exception as e:
        return {"ok": False, "error": _err(e)}


def gpu_report(torch, index: int) -> dict:
    props = torch.cuda.get_device_properties(index)
    cc = (props.major, props.minor)
    device = torch.device("cuda", index)
    with torch.cuda.device(index):
        g = {
            "index": index,
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "fp16_matmul": matmul_check(torch, device, torch.float16),
            "amp_step": amp_step_check(torch, device),
            "cudnn_conv": cudnn_conv_check(torch, device),
        }
        if cc >= (8, 0):
            g["bf16_matmul"] = matmul_check(torch, device, torch.bfloat16)
        else:
            g["bf16_matmul"] = {"skipped": f"compute capability {g['capability']} < 8.0: no native bfloat16"}
    return g


def probe(gpu: bool) -> dict:
    out: dict = {"python": sys.version.split()[0], "executable": sys.executable}
    try:
        import torch
    except Exception as e:
        out["import_error"] = _err(e)
        return out
    out["torch"] = torch.__version__
    out["cuda"] = torch.version.cuda
    try:
        a = torch.randn(64, 64)
        out["cpu_matmul_ok"] = bool(torch.allclose(a @ torch.eye(64), a, atol=1e-5))
    except Exception as e:
        out["cpu_matmul_ok"] = False
        out["cpu_error"] = _err(e)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out["cuda_available"] = bool(torch.cuda.is_available())
            out["device_count"] = int(torch.cuda.device_count()) if out["cuda_available"] else 0
        except Exception as e:
            out["cuda_available"] = False
            out["device_count"] = 0
            out["cuda_error"] = _err(e)
    out["cuda_warnings"] = [" ".join(str(w.message).split())[:400] for w in caught]
    out["gpus"] = []
    if gpu and out["cuda_available"]:
        for i in range(out["device_count"]):
            try:
                out["gpus"].append(gpu_report(torch, i))
            except Exception as e:
                out["gpus"].append({"index": i, "error": _err(e)})
    return out


if __name__ == "__main__":
    print(json.dumps(probe(gpu="--gpu" in sys.argv[1:])))
