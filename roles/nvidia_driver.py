"""Role ``nvidia_driver``: the resolved NVIDIA driver, held, Secure-Boot-aware, nouveau off.

Sources (``driver_source``; None picks by OS, see dlrig.gpu.resolver):
- ``ubuntu``: Canonical's signed prebuilt ``linux-modules-nvidia-<branch>-<flavour>`` with the
  no-DKMS userspace (what ``ubuntu-drivers install`` does): loads under Secure Boot without MOK,
  follows kernel updates through the linux-modules metapackage.
- ``nvidia``: NVIDIA's CUDA repository (``nvidia_repo_url``) with its key under ``signed-by`` and
  an apt pin keeping the branch; modules built by DKMS.
- ``debian``: Debian non-free ``nvidia-driver`` + ``nvidia-smi`` (DKMS).

DKMS with Secure Boot on: refused with the steps to take, unless ``driver_mok_password`` opts in to
MOK enrolment (``mokutil --import``; confirm the key at the blue MOK Manager screen on next boot).
Packages are held (``apt-mark hold``) so unattended-upgrades cannot cause "Driver/library version
mismatch"; a different driver already installed (another branch or source) is unheld and purged.
"""

from __future__ import annotations

import re
from io import StringIO
from shlex import quote

from dlrig.roles import ROOT_OWNED, template
from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.facts.apt import AptSources
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File, Link, Sha256File
from pyinfra.facts.server import Arch, KernelVersion, LinuxDistribution
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from dlrig.engine import aptget
from dlrig.engine.facts import AptHeld, MokKey, SecureBoot, fact
from dlrig.engine.hostdata import setting
from dlrig.engine.stack import resolve_host
from dlrig.gpu import packages
from dlrig.gpu.resolver import OSES, Resolution

KEYRING = "/etc/apt/keyrings/dlrig-nvidia-cuda.asc"
REPO_LIST = "/etc/apt/sources.list.d/dlrig-nvidia-cuda.list"
DRIVER_PIN = "/etc/apt/preferences.d/dlrig-nvidia-driver"
NOUVEAU = "/etc/modprobe.d/dlrig-blacklist-nouveau.conf"
NONFREE_LIST = "/etc/apt/sources.list.d/dlrig-debian-nonfree.list"
REBOOT_MARKER = "/var/run/reboot-required"
MOK_KEYS = {"debian": "/var/lib/dkms/mok.pub", "ubuntu": "/var/lib/shim-signed/mok/MOK.der"}

# Installed packages that belong to some NVIDIA driver (any source, any branch).
DRIVER_PACKAGE = re.compile(
    r"^(nvidia-driver(-\d+.*)?|nvidia-open(-\d+)?|cuda-drivers(-\d+)?|nvidia-driver-pinning-\d+|"
    r"nvidia-headless(-no-dkms)?-\d+.*|nvidia-utils-\d+.*|nvidia-dkms-\d+.*|linux-modules-nvidia-\d+.*|"
    r"nvidia-kernel-(open-)?dkms|nvidia-kernel-common(-\d+.*)?|nvidia-smi|xserver-xorg-video-nvidia(-\d+.*)?|"
    r"libnvidia-gl-\d+.*|nvidia-compute-utils-\d+.*)$"
)
from dlrig.roles.settings.nvidia_driver import DEFAULTS, OP_PACKAGES, OP_REMOVE

# --- shared with the cuda and cudnn roles -------------------------------------------------------


def repo_arch() -> str:
    arch = fact(Arch) or "x86_64"
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "sbsa", "arm64": "sbsa"}.get(arch, arch)


def repo_url(os_name: str) -> str:
    return f"{setting('nvidia_repo_url').rstrip('/')}/{OSES[os_name]['repo']}/{repo_arch()}"


def nvidia_repo(os_name: str) -> aptget.AddedSource:
    """NVIDIA's CUDA repository as the roles add it: the list under signed-by (its key only), the
    key's URL and checksum. Not the cuda-keyring .deb: it writes its own list pointing at
    developer.download.nvidia.com, which a mirror (``nvidia_repo_url``) must not get. Same key, same
    signed-by, our URL."""
    from pyinfra.api.util import get_template

    url = repo_url(os_name)
    text = get_template(template("nvidia-repo.list.j2")).render(
        keyring=KEYRING, fingerprint=setting("nvidia_repo_key_fingerprint"), url=url)
    return aptget.AddedSource(name="NVIDIA CUDA repository", path=REPO_LIST, text=text, keyring=KEYRING,
                              key_url=setting("nvidia_repo_key_url") or f"{url}/3bf863cc.pub",
                              key_sha256=setting("nvidia_repo_key_sha256") or "")


def ensure_nvidia_repo(os_name: str) -> list:
    """NVIDIA's CUDA repository (:func:`nvidia_repo`) with its key; the op results (for ``_if``)."""
    done = getattr(host, "_dlrig_nvidia_repo", None)
    if done is not None:  # an earlier role of this run added it (and updated apt after it)
        return []
    src = nvidia_repo(os_name)
    ops = [
        files.directory(name="/etc/apt/keyrings", path="/etc/apt/keyrings", mode="755", **ROOT_OWNED),
        *_repo_key(src.key_url, src.key_sha256 or None),
        files.put(name="NVIDIA CUDA repository (signed-by)", src=StringIO(src.text), dest=src.path, mode="644",
                  **ROOT_OWNED),
    ]
    host._dlrig_nvidia_repo = ops
    return ops


def _repo_key(key_url: str, sha256: str | None) -> list:
    """The repository key, fetched by apt's own downloader (``apt-helper download-file``, which
    checks ``sha256``): no curl to install first, so the role's packages stay one transaction."""
    if fact(File, path=KEYRING) and (not sha256 or fact(Sha256File, path=KEYRING) == sha256.lower()):
        return []
    check = f" SHA256:{sha256.lower()}" if sha256 else ""
    return [server.shell(
        name="NVIDIA repository key",
        commands=[f"d=$(mktemp -d) && /usr/lib/apt/apt-helper download-file {quote(key_url)} \"$d/key\"{check} "
                  f"&& install -m 644 -o root -g root \"$d/key\" {KEYRING}; rc=$?; rm -rf \"$d\"; exit $rc"],
    )]


# --- driver packages ----------------------------------------------------------------------------


def package_options(res: Resolution, kernel: str) -> dict:
    """This host's settings that choose the apt names (dlrig.gpu.packages.for_resolution's options)."""
    return {"server": setting("driver_server"), "headless": setting("driver_headless"),
            "kernel_flavour": packages.ubuntu_kernel_flavour(res.os, kernel),
            "persistence": setting("driver_persistence"), "cudnn_dev": setting("cudnn_dev")}


def driver_packages(res: Resolution, kernel: str) -> list[str]:
    """The resolved driver's apt packages (dlrig.gpu.packages: Ubuntu's recorded names)."""
    options = {k: v for k, v in package_options(res, kernel).items() if k != "cudnn_dev"}
    try:
        return packages.driver(res, **options)
    except packages.UnavailablePackages as e:
        raise DeployError(f"{host.name}: {e}") from None


def _pkg_branch(version: str) -> int | None:
    m = re.match(r"^(?:\d+:)?(\d{3})\.", version or "")
    return int(m.group(1)) if m else None


def conflicting(res: Resolution, wanted: list[str]) -> list[str]:
    """Installed driver packages of another branch or source than the resolved one."""
    installed = fact(DebPackages) or {}
    out = []
    for name, versions in sorted(installed.items()):
        if not DRIVER_PACKAGE.match(name):
            continue
        versions = versions if isinstance(versions, (list, tuple, set)) else [versions]
        branches = {_pkg_branch(v) for v in versions} - {None}
        if name in wanted:  # NVIDIA's repo holds many branches: another one installed is replaced
            if res.driver.source == "nvidia" and branches and res.driver.branch not in branches:
                out.append(name)
            continue
        named = re.search(r"-(\d{3})(-|$)", name)
        if named and int(named.group(1)) != res.driver.branch:
            out.append(name)
        elif branches and res.driver.branch not in branches:
            out.append(name)
        elif res.driver.source != "ubuntu" and re.match(r"^(nvidia-headless|linux-modules-nvidia|nvidia-utils-\d)", name):
            out.append(name)
        elif res.driver.source == "ubuntu" and name in ("nvidia-driver", "nvidia-open", "nvidia-kernel-dkms",
                                                         "nvidia-kernel-open-dkms") or \
                re.match(r"^cuda-drivers", name) and res.driver.source != "nvidia":
            out.append(name)
    return out


def kernel_headers(os_name: str, kernel: str) -> list[str]:
    if not kernel:
        return []
    if OSES[os_name]["family"] == "debian" and not re.search(r"-(amd64|arm64|cloud-amd64|rt-amd64)$", kernel):
        return []  # not a Debian kernel (a container or custom kernel): no such package
    return [f"linux-headers-{kernel}"]


def _secure_boot_refusal(res: Resolution) -> str:
    d = res.driver
    alt = ("driver_source='ubuntu' (Canonical-signed modules, no MOK needed), "
           if OSES[res.os]["family"] == "ubuntu" else "")
    return (f"{host.name}: Secure Boot is on and driver_source={d.source!r} builds the NVIDIA module with DKMS, "
            f"which Secure Boot will not load: use {alt}or set driver_mok_password='<one-time password>' to enrol "
            "the DKMS key (type it at the MOK Manager screen on the next boot), or turn Secure Boot off in the firmware")


@deploy("nvidia_driver", data_defaults=DEFAULTS)
def nvidia_driver():
    if setting("cpu_only"):
        return
    res = resolve_host()
    d = res.driver
    family = OSES[res.os]["family"]
    kernel = fact(KernelVersion) or ""
    secure_boot = fact(SecureBoot)
    mok_password = setting("driver_mok_password")
    if d.dkms and secure_boot == "enabled" and not mok_password:
        raise DeployError(_secure_boot_refusal(res))

    wanted = driver_packages(res, kernel)
    held = set(fact(AptHeld) or [])

    # A different driver (branch or source) already installed: unhold and purge it first.
    conflicts = conflicting(res, wanted)
    removed = None
    if conflicts:
        removed = server.shell(
            name=OP_REMOVE,
            commands=[
                f"apt-mark unhold {' '.join(conflicts)}",
                "DEBIAN_FRONTEND=noninteractive apt-get -y purge " + " ".join(conflicts),
            ],
        )

    if setting("driver_blacklist_nouveau"):
        blacklist = files.template(
            name="blacklist nouveau",
            src=template("nvidia-blacklist-nouveau.conf.j2"),
            dest=NOUVEAU,
            mode="644",
            **ROOT_OWNED,
        )
        server.shell(
            name="rebuild the initramfs without nouveau",
            commands=["if command -v update-initramfs >/dev/null 2>&1; then update-initramfs -u; fi"],
            _if=blacklist.did_change,
        )

    repo_ops = []
    for src in added_sources():  # NVIDIA's repository (with its key), or Debian's non-free list
        repo_ops += ensure_nvidia_repo(res.os) if src.path == REPO_LIST else [
            files.put(name=src.name, src=StringIO(src.text), dest=src.path, mode="644", **ROOT_OWNED)]
    if d.source == "nvidia":
        repo_ops.append(files.template(
            name=f"pin the driver to branch {d.branch}",
            src=template("nvidia-apt-pin.j2"),
            dest=DRIVER_PIN,
            branch=d.branch,
            mode="644",
            **ROOT_OWNED,
        ))
    else:
        files.file(name="no NVIDIA-repo driver pin", path=DRIVER_PIN, present=False)

    # One transaction: the driver and, for DKMS, the running kernel's headers (they follow the
    # kernel, not the lock: a reinstalled OS may boot a newer one).
    headers = kernel_headers(res.os, kernel) if d.dkms and setting("driver_kernel_headers") else []
    packages = aptget.install(OP_PACKAGES, wanted + headers, recommends=setting("driver_recommends"),
                              repo_ops=repo_ops, what="NVIDIA driver", unlocked=headers, removed=conflicts)

    if setting("driver_hold"):
        to_hold = [p for p in wanted if p not in held]
        if to_hold:
            server.shell(name="hold the driver packages", commands=[f"apt-mark hold {' '.join(wanted)}"])
    else:
        to_release = [p for p in wanted if p in held]
        if to_release:
            server.shell(name="release the driver packages", commands=[f"apt-mark unhold {' '.join(to_release)}"])

    if d.dkms and secure_boot == "enabled" and mok_password:
        _mok_enrol(family, mok_password)

    if setting("driver_persistence"):
        # By the unit's symlink, not systemctl's bus: works where systemd is not running (chroots, images).
        wants = "/etc/systemd/system/multi-user.target.wants/nvidia-persistenced.service"
        if not fact(Link, path=wants):
            server.shell(
                name="persistence mode (enable nvidia-persistenced at boot)",
                commands=["systemctl enable nvidia-persistenced.service"],
            )

    changed = [op for op in (packages, removed) if op is not None]
    if changed:
        server.shell(
            name="reboot required (driver changed)",
            commands=[f"echo 'dlrig: NVIDIA driver changed' > {REBOOT_MARKER}"],
            _if=any_changed(*changed),
        )


def added_sources() -> list[aptget.AddedSource]:
    """The apt sources this role adds in the run (the role writes them; ``apply --locked`` reads
    them first into a temporary apt state, see :func:`dlrig.engine.aptget.moved`)."""
    if setting("cpu_only"):
        return []
    res = resolve_host()
    if res.driver.source == "nvidia":
        return [nvidia_repo(res.os)]
    if res.driver.source == "debian":
        return [s for s in [_debian_nonfree()] if s]
    return []


def _debian_nonfree() -> aptget.AddedSource | None:
    """Debian: contrib non-free non-free-firmware next to the host's main repository (None: there)."""
    sources = fact(AptSources) or []
    have: set[str] = set()
    mirror = None
    for repo in sources:
        comps = set(getattr(repo, "components", []) or [])
        url = getattr(repo, "url", "")
        if "debian-security" in url or getattr(repo, "type", "deb") != "deb":
            continue
        if "main" in comps and mirror is None:
            mirror = url
        have |= comps
    need = ["contrib", "non-free", "non-free-firmware"]
    if all(c in have for c in need):
        return None
    dist = fact(LinuxDistribution) or {}
    codename = (dist.get("release_meta") or {}).get("VERSION_CODENAME") or "bookworm"
    return aptget.AddedSource(
        name="Debian contrib non-free non-free-firmware", path=NONFREE_LIST,
        text=f"# Managed by dlrig (role nvidia_driver)\ndeb {mirror or 'http://deb.debian.org/debian'} "
             f"{codename} {' '.join(need)}\n")


MOK_PASSWORD_FILE = "/var/lib/dlrig/mok-password"


def _mok_enrol(family: str, password: str) -> None:
    key = setting("driver_mok_key") or MOK_KEYS[family]
    state = fact(MokKey, path=key)
    if state in ("enrolled", "pending"):
        return
    make_key = "dkms generate_mok" if family == "debian" else "update-secureboot-policy --new-key"
    # The password never appears in a command line: mokutil reads it (twice) from a 0600 file
    # uploaded over SFTP, removed right after, whatever mokutil's outcome.
    files.directory(name="dlrig's private directory", path="/var/lib/dlrig", mode="700", **ROOT_OWNED)
    files.put(name="stage the MOK password (0600, removed after use)",
              src=StringIO(f"{password}\n{password}\n"), dest=MOK_PASSWORD_FILE, mode="600", **ROOT_OWNED)
    k, pw = quote(key), quote(MOK_PASSWORD_FILE)
    server.shell(
        name="enrol the DKMS signing key (MOK): confirm at the MOK Manager screen on next boot",
        commands=[
            f"[ -f {k} ] || {make_key}",
            # Debian's /var/lib/dkms/mok.pub is DER despite its name; mokutil reads the password twice.
            f"mokutil --import {k} < {pw}; rc=$?; rm -f {pw}; exit $rc",
            f"echo 'dlrig: MOK enrolment pending' > {REBOOT_MARKER}",
        ],
    )
