"""Ubuntu facts for tests, read from the recorded public sources in tools/sources/ubuntu/ (never from
the code under test): which binary packages each release has per driver branch, which signed kernel
module packages were seen published, and what ``ubuntu-drivers install`` puts on apt's line."""

from __future__ import annotations

from pathlib import Path

SOURCES = Path(__file__).resolve().parents[1] / "tools" / "sources" / "ubuntu"


def _rows(name: str) -> list[list[str]]:
    return [line.split("\t") for line in (SOURCES / name).read_text().splitlines()
            if line and not line.startswith("#")]


def binaries(release: str) -> set[str]:
    """Every binary package name the recorded nvidia-graphics-drivers branches build for a release."""
    return {n for r in _rows("nvidia-graphics-drivers.tsv") if r[0] == release for n in r[5].split()}


def signed_modules(release: str) -> set[str]:
    """linux-modules-nvidia-* names seen published for a release (packages.ubuntu.com, a real dpkg -l)."""
    return {r[1] for r in _rows("linux-restricted-modules.tsv") if r[0] == release}


def ubuntu_drivers_install(branch: int, open_: bool, server: bool, headless: bool, kernel_flavour: str) -> list[str]:
    """ubuntu-drivers-install.md: desktop nvidia-driver-F, --gpgpu nvidia-headless-no-dkms-F (+ nvidia-utils
    for nvidia-smi); linux-modules-nvidia-F-K either way. F = branch[-server][-open]."""
    f = f"{branch}{'-server' if server else ''}{'-open' if open_ else ''}"
    u = f"{branch}{'-server' if server else ''}"
    head = [f"nvidia-headless-no-dkms-{f}", f"nvidia-utils-{u}"] if headless else [f"nvidia-driver-{f}"]
    return head + [f"linux-modules-nvidia-{f}-{kernel_flavour}"]


def exists(release: str, name: str) -> bool:
    if name.startswith("linux-modules-nvidia-"):
        # the branch's flavour must exist as a driver, and the kernel-flavour suffix be one Ubuntu uses
        known = signed_modules(release)
        if name in known:
            return True
        flav = name[len("linux-modules-nvidia-"):]
        for k in ("generic-hwe-22.04", "generic-hwe-24.04", "generic", "lowlatency"):
            if flav.endswith("-" + k):
                return f"nvidia-driver-{flav[: -len(k) - 1]}" in binaries(release)
        return False
    return name in binaries(release)
