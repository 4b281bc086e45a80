"""Checks that run on the controller before any connection, after settings validation.

A role's settings module (``roles/settings/<role>.py``) may define ``preflight(host: str, data: dict) -> list[str]``: problems with its own
settings that need no host facts (contradicting wishes, a lock-out). ``data`` holds every
setting with defaults filled in. Each problem is one line naming host, setting and fix.
"""

from __future__ import annotations

from typing import Any

from dlrig.engine.catalogue import ORDER, load_settings, parse_roles
from dlrig.engine.inventory import HostSpec, UserError
from dlrig.engine.settings import registry


def effective_data(data: dict[str, Any]) -> dict[str, Any]:
    """A host's settings with every default filled in."""
    return {**{k: s.default for k, s in registry().items()}, **data}


def check(hosts: list[HostSpec]) -> None:
    errors = []
    for h in hosts:
        data = effective_data(h.data)
        for name in parse_roles(data.get("dlrig_roles")):
            hook = getattr(load_settings(name), "preflight", None)
            if hook is not None:
                errors += hook(h.name, data)
    if errors:
        raise UserError(errors)


__all__ = ["check", "effective_data", "ORDER"]
