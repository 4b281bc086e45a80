"""Role ``cuda``: the resolved CUDA toolkit and its PATH/LD settings in /etc/profile.d.

``cuda_source`` ``nvidia``: the pinned ``cuda-toolkit-X-Y`` from NVIDIA's repository
(``nvidia_repo_url``; toolkit only, never the driver); ``distro``: the OS's ``nvidia-cuda-toolkit``
(Debian non-free: CUDA 11.8 on Debian 12, a 1.6 GB download). None: the resolver's choice (distro
where the driver comes from Debian, else NVIDIA's repo, matching torch's CUDA).
"""

from __future__ import annotations

from dlrig.roles import ROOT_OWNED, template
from dlrig.roles.settings.cuda import DEFAULTS
from pyinfra.api import deploy
from pyinfra.operations import files

from dlrig.engine import aptget
from dlrig.engine.hostdata import setting
from dlrig.engine.stack import resolve_host
from dlrig.gpu import packages as apt_names

PROFILE = "/etc/profile.d/dlrig-cuda.sh"
DISTRO_HOME = "/usr/lib/nvidia-cuda-toolkit"


def added_sources() -> list[aptget.AddedSource]:
    """The apt sources this role adds in the run: NVIDIA's repository for ``cuda_source`` nvidia."""
    from dlrig.roles.nvidia_driver import nvidia_repo

    if setting("cpu_only"):
        return []
    res = resolve_host()
    return [nvidia_repo(res.os)] if res.cuda.source == "nvidia" else []


@deploy("cuda", data_defaults=DEFAULTS)
def cuda():
    if setting("cpu_only"):
        return
    from dlrig.roles.nvidia_driver import ensure_nvidia_repo

    res = resolve_host()
    c = res.cuda
    packages = apt_names.cuda(c.version, c.source)
    repo_ops = ensure_nvidia_repo(res.os) if added_sources() else []
    aptget.install(f"CUDA toolkit {c.version} ({c.source})", packages, recommends=c.source != "nvidia",
                   repo_ops=repo_ops, what="CUDA toolkit")

    if setting("cuda_profile"):
        if c.source == "nvidia":
            home = f"/usr/local/cuda-{c.version}"
            bin_dir, lib_dir = f"{home}/bin", f"{home}/lib64"
        else:
            home, bin_dir, lib_dir = DISTRO_HOME, None, None  # nvcc is /usr/bin/nvcc, libs in the linker path
        files.template(
            name="CUDA on PATH (/etc/profile.d)",
            src=template("cuda-profile.sh.j2"),
            dest=PROFILE,
            version=c.version,
            source=c.source,
            cuda_home=home,
            bin_dir=bin_dir,
            lib_dir=lib_dir,
            mode="644",
            **ROOT_OWNED,
        )
    else:
        files.file(name="no CUDA profile", path=PROFILE, present=False)
