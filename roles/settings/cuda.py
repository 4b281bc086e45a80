"""Settings of role ``cuda``: the resolved CUDA toolkit and its PATH/LD settings in /etc/profile.d.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/cuda.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

from dlrig.engine.settings import Setting, declare


def _cuda_check(v):
    from dlrig.gpu.resolver import CUDA_MIN_DRIVER

    v = str(v)
    return None if v in CUDA_MIN_DRIVER else f"CUDA {v} is not a release dlrig knows; use one of {', '.join(CUDA_MIN_DRIVER)}"


DEFAULTS = declare(
    "cuda",
    Setting("cuda_version", None, "str", "CUDA toolkit X.Y, e.g. '12.8' (None: torch's CUDA, as resolved)",
            nullable=True, check=_cuda_check),
    Setting("cuda_source", None, "str", "toolkit from NVIDIA's repo ('nvidia') or the OS ('distro'); None: resolved",
            choices=(None, "nvidia", "distro")),
    Setting("cuda_profile", True, "bool", "put nvcc on PATH and CUDA_HOME in /etc/profile.d/dlrig-cuda.sh"),
)
