"""The catalogue of roles: their names in apply order, and loading one by name.

The engine knows roles only by name. Role modules live in the ``dlrig.roles`` package (the
design card's top-level ``roles/`` folder) and are loaded as plugins with :func:`load`, their
settings (``roles/settings/<role>.py``, no pyinfra) with :func:`load_settings`; no
engine module imports a role statically, so the arrows between layers point down only.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ROLES_PACKAGE = "dlrig.roles"
SETTINGS_PACKAGE = "dlrig.roles.settings"

ORDER: tuple[str, ...] = (
    "base",
    "nvidia_driver",
    "cuda",
    "cudnn",
    "conda",
    "pytorch",
    "jupyter",
    "ssh",
    "firewall",
    "power",
    "dualboot",
    "unattended_upgrades",
)


def load(name: str) -> ModuleType:
    """The role module ``name``: its ``@deploy`` (this imports pyinfra)."""
    if name not in ORDER:
        raise KeyError(f"unknown role {name!r}; known: {', '.join(ORDER)}")
    return importlib.import_module(f"{ROLES_PACKAGE}.{name}")


def load_settings(name: str) -> ModuleType:
    """The settings module of role ``name`` (declares its settings; no pyinfra), e.g. for ``preflight``."""
    if name not in ORDER:
        raise KeyError(f"unknown role {name!r}; known: {', '.join(ORDER)}")
    return importlib.import_module(f"{SETTINGS_PACKAGE}.{name}")


def load_all() -> None:
    """Declare every setting (the settings registry needs them) without importing a role or pyinfra."""
    importlib.import_module(SETTINGS_PACKAGE)
    for name in ORDER:
        load_settings(name)


def parse_roles(value: str | list | tuple | None) -> list[str]:
    """A role selection (``"a,b"`` or a list) in dlrig's order; None or empty means all."""
    if value is None or value == "" or value == []:
        return list(ORDER)
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        raise KeyError(f"unknown role(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    return [n for n in ORDER if n in names]
