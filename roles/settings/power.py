"""Settings of role ``power``: a remote training box never sleeps; optional wake-on-LAN.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/power.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

import re

from dlrig.engine.settings import Setting, declare


def _check_iface(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,15}", value):
        return f"{value!r} is not a network interface name, e.g. 'enp3s0' (see `ip link`)"
    return None


DEFAULTS = declare(
    "power",
    Setting("power_never_sleep", True, "bool", "mask sleep/suspend/hibernate; GDM and logind never suspend"),
    Setting("power_wol_interface", None, "str",
            "enable wake-on-LAN (magic packet) on this interface, e.g. 'enp3s0'",
            nullable=True, check=_check_iface),
)
