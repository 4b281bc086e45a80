"""The apt packages each part of a resolution installs on an OS: one place for the names.

NVIDIA's repository names come from ``data/nvidia_repo_packages.json`` (generated from the recorded
excerpts in tools/sources/nvidia-repo/; the names no recorded source shows yet are listed there under
``unrecorded``). Ubuntu's driver names come from ``data/ubuntu_driver_packages.json`` (generated from the recorded
``debian/control`` package lists of canonical/nvidia-graphics-drivers, tools/sources/ubuntu/). The
``ubuntu`` source installs what ``ubuntu-drivers install`` does (tools/sources/ubuntu/
ubuntu-drivers-install.md): desktop ``nvidia-driver-F`` + ``linux-modules-nvidia-F-K``; headless
(``--gpgpu``) ``nvidia-headless-no-dkms-F`` + ``linux-modules-nvidia-F-K``, plus ``nvidia-utils-U`` for
nvidia-smi. ``F`` is the branch with ``-server`` and ``-open`` (the metapackages and kernel side);
``U`` the branch with ``-server`` only: userspace packages never carry ``-open``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources


class UnavailablePackages(ValueError):
    """The wanted driver branch has no such packages on that OS; ``str(e)`` is one line with the fix."""


@lru_cache(maxsize=1)
def ubuntu_table() -> dict:
    return json.loads(resources.files("dlrig.gpu.data").joinpath("ubuntu_driver_packages.json").read_text())


@lru_cache(maxsize=1)
def nvidia_table() -> dict:
    return json.loads(resources.files("dlrig.gpu.data").joinpath("nvidia_repo_packages.json").read_text())


def nvidia_cudnn(major: int, cuda: str) -> tuple[str, ...]:
    """cuDNN ``major`` for CUDA ``cuda`` from NVIDIA's repository: the runtime and the dev package."""
    t = nvidia_table()["cudnn"]
    return tuple(t[f"{major}{suffix}"].format(cuda_major=cuda.split(".")[0]) for suffix in ("", "-dev"))


def nvidia_cudnn8_pin(version: str, cuda: str) -> str:
    """An apt version pin for cuDNN 8 ``version`` (a glob) built for CUDA ``cuda`` (X.Y)."""
    return nvidia_table()["cudnn"]["8-version"].format(version=version, cuda=cuda)


def ubuntu_names(os_name: str) -> set[str]:
    """Every driver binary package Ubuntu builds for that release (all branches, transitional ones too)."""
    return {n for names in ubuntu_table().get(os_name, {}).values() for n in names}


def ubuntu_kernel_flavour(os_name: str, kernel: str) -> str:
    """linux-modules-nvidia kernel flavour: generic / generic-hwe-24.04 / lowlatency... from ``uname -r``."""
    m = re.match(r"^(\d+\.\d+)\.\d+-\d+-(.+)$", kernel or "")
    if not m:
        return "generic"
    series, suffix = m.group(1), m.group(2)
    ga = {"ubuntu-22.04": "5.15", "ubuntu-24.04": "6.8"}.get(os_name)
    if series != ga and suffix in ("generic", "lowlatency"):
        return f"{suffix}-hwe-{os_name.split('-')[1]}"
    return suffix


def ubuntu_driver(os_name: str, branch: int, open_modules: bool, server: bool = False, headless: bool = False,
                  kernel_flavour: str = "generic") -> list[str]:
    userspace = f"{branch}{'-server' if server else ''}"
    flavour = userspace + ("-open" if open_modules else "")
    names = ([f"nvidia-headless-no-dkms-{flavour}", f"nvidia-utils-{userspace}"] if headless
             else [f"nvidia-driver-{flavour}"])
    have = ubuntu_names(os_name)
    missing = [n for n in names if n not in have]
    if missing:
        kind = "-server" if server else ""
        offered = sorted({int(m.group(1)) for n in have
                          if (m := re.fullmatch(rf"nvidia-driver-(\d{{3}}){kind}", n))})
        raise UnavailablePackages(
            f"{os_name} has no {' '.join(missing)}: Ubuntu packages driver_branch "
            f"{', '.join(map(str, offered)) or 'none'}{' (server)' if server else ''} there; "
            "set driver_branch to one of them or driver_source='nvidia'")
    return names + [f"linux-modules-nvidia-{flavour}-{kernel_flavour}"]


def nvidia_driver(branch: int, open_modules: bool) -> list[str]:
    """NVIDIA's CUDA repository: ``nvidia-open`` (+ the branch pin package from 580); proprietary
    ``cuda-drivers-B``, or from the branch where Ubuntu's names lose their number, ``cuda-drivers`` with
    the branch pin package (the Driver Installation Guide's "Ubuntu 590 and later packages")."""
    d = nvidia_table()["driver"]
    pin = [d["pinning"].format(branch=branch)] if branch >= 580 else []
    if open_modules:
        return [d["open"]] + pin
    if branch >= d["unversioned_from"]:
        return [d["proprietary-unversioned"]] + pin
    return [d["proprietary-branch"].format(branch=branch)]


def debian_driver(persistence: bool = True) -> list[str]:
    return ["nvidia-driver", "nvidia-smi"] + (["nvidia-persistenced"] if persistence else [])


def driver(res, server: bool = False, headless: bool = False, kernel_flavour: str = "generic",
           persistence: bool = True) -> list[str]:
    d = res.driver
    if d is None:
        return []
    if d.source == "ubuntu":
        return ubuntu_driver(res.os, d.branch, d.flavor == "open", server, headless, kernel_flavour)
    if d.source == "nvidia":
        return nvidia_driver(d.branch, d.flavor == "open")
    return debian_driver(persistence)


def cuda(version: str, source: str) -> list[str]:
    """The toolkit: NVIDIA's versioned ``cuda-toolkit-X-Y`` (never the driver) or the OS's own."""
    if source == "distro":
        return ["nvidia-cuda-toolkit"]
    major, minor = version.split(".")[:2]
    return [nvidia_table()["cuda"]["toolkit"].format(major=major, minor=minor)]


def cudnn(packages, dev: bool = True) -> list[str]:
    """The resolution's cuDNN packages, without the headers/dev ones (``libcudnn8-dev``,
    ``libcudnn9-dev-cuda-12``) unless ``dev``."""
    return [p for p in packages if dev or not re.search(r"-dev(-|$)", p)]


def for_resolution(res, cudnn_dev: bool = True, **driver_options) -> dict:
    """``{"driver": [...], "cuda": [...], "cudnn": [...]}`` (empty lists for parts not installed)."""
    return {
        "driver": driver(res, **driver_options),
        "cuda": cuda(res.cuda.version, res.cuda.source) if res.cuda else [],
        "cudnn": cudnn(res.cudnn.packages, cudnn_dev) if res.cudnn else [],
    }


def with_packages(res, **options) -> dict:
    """The resolution's JSON with ``packages`` (apt names on that OS) under driver, cuda and cudnn
    (``options``: :func:`for_resolution`'s; none: a desktop on the GA kernel, the default settings)."""
    j = res.as_json()
    names = for_resolution(res, **options)
    for part in ("driver", "cuda", "cudnn"):
        if j[part]:
            j[part]["packages"] = names[part]
    return j
