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

FP16_TOL = 1e-2  # relative Frobenius error of a 512x512 fp16 matmul (fp32 accumulate: ~5e-4)
BF16_TOL = 3e-2  # bfloat16 has 8 bits of mantissa (~4e-3 typical)
CONV_TOL = 1e-3  # fp32 cuDNN conv vs CPU (TF32 off)


def _err(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:400]


def _rel_err(torch, got, ref) -> float:
    return float((got.double() - ref.double()).norm() / ref.double().norm())


def matmul_check(torch, device, dtype, tol: float, n: int = 512) -> dict:
    try:
        g = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(n, n, generator=g).to(device)
        b = torch.randn(n, n, generator=g).to(device)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
        ref = a @ b  # float32 reference
        got = (a.to(dtype) @ b.to(dtype)).float()
        err = _rel_err(torch, got, ref)
        ok = math.isfinite(err) and err < tol
        return {"ok": ok, "rel_err": err, "tol": tol}
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
        ok = all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
        return {"ok": ok, "loss_first": losses[0], "loss_last": losses[-1], "steps": steps,
                "scale": float(scaler.get_scale())}
    except Exception as e:
        return {"ok": False, "error": _err(e)}


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
        err = _rel_err(torch, got, ref)
        half = F.conv2d(x.to(device).half(), w.to(device).half(), padding=1).float().cpu()
        err16 = _rel_err(torch, half, ref)
        ok = err < CONV_TOL and err16 < FP16_TOL
        return {"ok": ok, "rel_err": err, "rel_err_fp16": err16, **info}
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
            "fp16_matmul": matmul_check(torch, device, torch.float16, FP16_TOL),
            "amp_step": amp_step_check(torch, device),
            "cudnn_conv": cudnn_conv_check(torch, device),
        }
        if cc >= (8, 0):
            g["bf16_matmul"] = matmul_check(torch, device, torch.bfloat16, BF16_TOL)
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
