"""Settings of role ``base``: apt that waits for its lock, a repaired dpkg, essentials, universe, extra CAs.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/base.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

from pathlib import Path

from dlrig.engine.settings import Setting, declare

ESSENTIALS = [
    "build-essential",
    "ca-certificates",
    "curl",
    "git",
    "gnupg",
    "htop",
    "pciutils",
    "rsync",
    "tmux",
    "unzip",
    "wget",
]

CA_DIR = "/usr/local/share/ca-certificates"


def _pem_files(paths: list) -> str | None:
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            return f"{p} does not exist on this machine; give the path of a PEM certificate file"
        if "-----BEGIN CERTIFICATE-----" not in path.read_text(errors="replace"):
            return f"{p} is not a PEM certificate (no BEGIN CERTIFICATE line)"
    return None


DEFAULTS = declare(
    "base",
    Setting("base_packages", ESSENTIALS, "list", "essential packages on every rig", item_kind="str",
            shape="deb_package"),
    Setting("base_extra_packages", [], "list", "more apt packages you want", item_kind="str",
            shape="deb_package"),
    Setting(
        "apt_lock_timeout",
        600,
        "int",
        "seconds apt waits for the dpkg lock (unattended-upgrades) before failing",
        min=0,
        max=7200,
    ),
    Setting("apt_cache_time", 3600, "int", "skip `apt-get update` when lists are this fresh (s)", min=0),
    Setting(
        "extra_ca_certificates",
        [],
        "list",
        "PEM files on this machine to trust on the host (TLS-inspecting proxies)",
        item_kind="str",
        check=_pem_files,
    ),
    Setting("ubuntu_enable_universe", True, "bool", "enable Ubuntu's universe component"),
)
