"""Settings of role ``conda``: Miniforge (conda-forge only) for the workstation user, checksum-verified.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/conda.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

import re

from dlrig.engine.settings import Setting, declare

MINIFORGE_VERSION = "24.11.3-0"
MINIFORGE_URL = (
    "https://github.com/conda-forge/miniforge/releases/download/"
    f"{MINIFORGE_VERSION}/Miniforge3-{MINIFORGE_VERSION}-Linux-x86_64.sh"
)
MINIFORGE_SHA256 = "2e1ad2188fe69fcdd522c2b20c08c800a5c7411b775eca768318b1540ed32e53"

MARKER = "conda-meta/dlrig-installer"


def _sha256(value: str) -> str | None:
    if re.fullmatch(r"[0-9a-f]{64}", value):
        return None
    return "give the installer's SHA-256 as 64 lowercase hex digits (from the release's .sha256 file)"


def _channels(value: list) -> str | None:
    if not value:
        return "give at least one channel, e.g. ['conda-forge']"
    if any(str(c).strip() in ("defaults", "anaconda", "main") for c in value):
        return "the Anaconda `defaults` channels are not used by dlrig (license, solver conflicts); use conda-forge"
    return None


DEFAULTS = declare(
    "conda",
    Setting("conda_prefix", None, "path", "where Miniforge is installed; None: ~USER/miniforge3", nullable=True),
    Setting("conda_installer_url", MINIFORGE_URL, "url", "the Miniforge installer (.sh) to download"),
    Setting(
        "conda_installer_sha256",
        MINIFORGE_SHA256,
        "str",
        "SHA-256 of conda_installer_url; the installer is refused unless it matches",
        check=_sha256,
    ),
    Setting(
        "conda_channels",
        ["conda-forge"],
        "list",
        "channels in .condarc and environment.yml (a conda-forge mirror URL works too)",
        item_kind="str",
        shape="conda_channel",
        check=_channels,
    ),
)
