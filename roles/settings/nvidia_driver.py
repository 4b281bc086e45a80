"""Settings of role ``nvidia_driver``: the resolved NVIDIA driver, held, Secure-Boot-aware, nouveau off.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/nvidia_driver.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

import re

from dlrig.engine.settings import Setting, declare

# Op names other code reads without importing the role (dlrig.cli.run: did the driver change on this host?).
OP_PACKAGES = "driver packages"
OP_REMOVE = "remove conflicting driver packages"

NVIDIA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos"
# NVIDIA's CUDA repository signing key (3bf863cc.pub, long id A4B469963BF863CC, since the 2022 rotation).
NVIDIA_KEY_FINGERPRINT = "EB693B3035CD5710E231E123A4B469963BF863CC"


def _fingerprint_check(v):
    return None if re.fullmatch(r"[0-9A-Fa-f]{40}", v) else "a key fingerprint is 40 hex digits (gpg --show-keys)"


def _branch_check(v):
    from dlrig.gpu.resolver import unknown_branch

    return unknown_branch(v)


DEFAULTS = declare(
    "nvidia_driver",
    Setting("driver_source", None, "str", "where the driver comes from (None: ubuntu on Ubuntu, debian on Debian, "
            "NVIDIA's repo where those cannot serve the card)", choices=(None, "ubuntu", "nvidia", "debian")),
    Setting("driver_branch", None, "int", "driver branch, e.g. 580 (None: the resolver's choice for the GPUs)",
            nullable=True, check=_branch_check),
    Setting("driver_gpus", None, "list", "plan for these GPUs (PCI ids or names) instead of lspci's, e.g. "
            "['10de:1e84']: prepare a host before the card is in", item_kind="str", nullable=True,
            shape="gpu"),
    Setting("driver_hold", True, "bool", "apt-mark hold the driver packages (no surprise upgrades: "
            "'Driver/library version mismatch')"),
    Setting("driver_headless", False, "bool", "ubuntu source: compute only, no X/OpenGL driver (servers)"),
    Setting("driver_server", False, "bool", "ubuntu source: the -server (Enterprise Ready Driver) packages"),
    Setting("driver_persistence", True, "bool", "enable nvidia-persistenced (persistence mode) at boot"),
    Setting("driver_kernel_headers", True, "bool", "DKMS sources: install the running kernel's headers"),
    Setting("driver_recommends", True, "bool", "install the driver packages' Recommends (Debian: dkms pulls "
            "linux-headers-amd64 and builds the module; nvidia-settings...)"),
    Setting("driver_blacklist_nouveau", True, "bool", "blacklist the nouveau driver"),
    Setting("driver_mok_password", None, "str", "DKMS + Secure Boot: one-time password to enrol the DKMS "
            "signing key (you type it at the MOK Manager screen on the next boot); None refuses instead",
            nullable=True, secret=True, shape="mok_password"),
    Setting("driver_mok_key", None, "path", "DKMS signing key to enrol (None: /var/lib/dkms/mok.pub on Debian, "
            "/var/lib/shim-signed/mok/MOK.der on Ubuntu)", nullable=True),
    Setting("nvidia_repo_url", NVIDIA_REPO, "url", "NVIDIA CUDA apt repository root (a mirror works); "
            "<url>/<distro>/<arch>/ is the repository"),
    Setting("nvidia_repo_key_url", None, "url", "the repository's signing key (None: "
            "<repo>/3bf863cc.pub, NVIDIA's key)", nullable=True),
    Setting("nvidia_repo_key_sha256", None, "str", "expected sha256 of the key file (None: not checked)",
            nullable=True, shape="hex"),
    Setting("nvidia_repo_key_fingerprint", NVIDIA_KEY_FINGERPRINT, "str", "apt accepts the repository only "
            "when signed by the key with this fingerprint (signed-by=KEYRING,FINGERPRINT); None: any key in "
            "the downloaded keyring", nullable=True, check=_fingerprint_check),
)


def preflight(host_name: str, data: dict) -> list[str]:
    errors = []
    if data.get("driver_source") == "ubuntu" and data.get("driver_mok_password"):
        errors.append(f"{host_name}: driver_mok_password is only used with DKMS sources (nvidia, debian); "
                      "driver_source='ubuntu' uses Canonical-signed modules: drop driver_mok_password")
    return errors
