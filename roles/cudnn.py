"""Role ``cudnn``: the resolved cuDNN packages (PyTorch wheels bundle their own; this is for nvcc builds).

From NVIDIA's repository: ``libcudnn9-cuda-13`` / ``libcudnn9-cuda-12`` and their ``-dev-`` packages
(names: dlrig.gpu.packages, recorded in tools/sources/nvidia-repo/; pinned to 9.10.* where the cards
are Maxwell/Pascal/Volta: 9.10 is the last cuDNN for them) or ``libcudnn8`` 8.9 for CUDA 11.8. With
the distro toolkit: Debian's ``nvidia-cudnn`` (contrib; it downloads cuDNN from NVIDIA at install).
"""

from __future__ import annotations

from dlrig.roles import ROOT_OWNED, template
from dlrig.roles.settings.cudnn import DEFAULTS
from pyinfra.api import deploy
from pyinfra.operations import files

from dlrig.engine import aptget
from dlrig.engine.hostdata import setting
from dlrig.engine.stack import resolve_host
from dlrig.gpu import packages as apt_names

PIN = "/etc/apt/preferences.d/dlrig-cudnn"


def added_sources() -> list[aptget.AddedSource]:
    """The apt sources this role adds in the run: NVIDIA's repository where CUDA comes from it
    (the cuDNN pin changes no version's availability: it only raises the pinned ones)."""
    from dlrig.roles.nvidia_driver import nvidia_repo

    if setting("cpu_only") or not setting("cudnn_install"):
        return []
    res = resolve_host()
    return [nvidia_repo(res.os)] if res.cuda.source == "nvidia" else []


@deploy("cudnn", data_defaults=DEFAULTS)
def cudnn():
    if setting("cpu_only") or not setting("cudnn_install"):
        return
    from dlrig.roles.nvidia_driver import ensure_nvidia_repo

    res = resolve_host()
    c = res.cudnn
    packages = apt_names.cudnn(c.packages, setting("cudnn_dev"))
    repo_ops = []
    if added_sources():
        repo_ops = ensure_nvidia_repo(res.os)
    if c.pin:
        repo_ops.append(files.template(
            name=f"pin cuDNN {c.version}",
            src=template("cuda-cudnn-pin.j2"),
            dest=PIN,
            version=c.version,
            packages="libcudnn* cudnn*",
            pin=c.pin,
            mode="644",
            **ROOT_OWNED,
        ))
    else:
        files.file(name="no cuDNN pin", path=PIN, present=False)
    aptget.install(f"cuDNN {c.version}", packages, repo_ops=repo_ops, what="cuDNN")
