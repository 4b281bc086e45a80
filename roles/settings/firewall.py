"""Settings of role ``firewall``: ufw, deny incoming by default, SSH rate-limited and allowed *before* enabling.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/firewall.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

import ipaddress
import re

from dlrig.engine.settings import Setting, declare

_SPEC_RE = re.compile(r"^[A-Za-z0-9 ./:,_-]+$")


def _check_specs(specs: list) -> str | None:
    for s in specs:
        if not isinstance(s, str) or not _SPEC_RE.match(s) or s.split()[0] in ("allow", "deny", "limit", "reject"):
            return (f"{s!r}: give what follows `ufw allow`, e.g. '6006/tcp' or "
                    "'from 192.168.1.0/24 to any port 6006 proto tcp' (no quotes, no action word)")
    return None


def _check_cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"{value!r} is not an address or network, e.g. '192.168.1.0/24'"
    return None


DEFAULTS = declare(
    "firewall",
    Setting("firewall_allow", [], "list",
            "extra ufw rules, each what follows `ufw allow` (e.g. '6006/tcp')", item_kind="str",
            check=_check_specs),
    Setting("firewall_ssh_limit", True, "bool",
            "rate-limit SSH (ufw limit: 6 new connections in 30 s per address) instead of allow"),
    Setting("firewall_jupyter_from", None, "str",
            "allow Jupyter only from this address/network (None: from anywhere)",
            nullable=True, check=_check_cidr),
)
