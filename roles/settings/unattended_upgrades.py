"""Settings of role ``unattended_upgrades``: security updates keep coming; the GPU driver never moves by itself.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/unattended_upgrades.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

import re

from dlrig.engine.settings import Setting, declare

#: Packages of the GPU stack unattended-upgrades must never touch (regexes, matched at the start).
DRIVER_PACKAGE_PATTERNS = (
    r"nvidia-",
    r"libnvidia-",
    r"xserver-xorg-video-nvidia",
    r"linux-modules-nvidia-",
    r"linux-objects-nvidia-",
    r"linux-signatures-nvidia-",
    r"firmware-nvidia-",
    r"cuda-drivers",
    r"libcuda1",
)


def _check_regexes(values: list) -> str | None:
    for v in values:
        try:
            re.compile(v)
        except (re.error, TypeError) as e:
            return f"{v!r} is not a regular expression ({e})"
        if any(c in v for c in '";\n\r\0'):
            return f"{v!r}: no quotes, semicolons or line breaks (apt.conf syntax)"
    return None


DEFAULTS = declare(
    "unattended_upgrades",
    Setting("unattended_upgrades_enabled", True, "bool", "install and enable unattended-upgrades"),
    Setting("unattended_upgrades_blacklist", [], "list",
            "more package regexes unattended-upgrades must not upgrade", item_kind="str",
            check=_check_regexes),
    Setting("unattended_upgrades_reboot", False, "bool",
            "reboot automatically when an update needs it (off: a training run is never cut)"),
)
