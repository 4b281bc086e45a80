"""dlrig roles: one concern each, a pyinfra packaged deploy per module.

Every role module declares its settings with :func:`dlrig.settings.declare` and exposes one
``@deploy`` function named after the role. ``ORDER`` is the order ``deploys/workstation.py``
applies them in; it is the one list of roles.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from dlrig.settings import Setting, declare

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

# Installed, templates/ sits beside roles/ inside the dlrig package; in a checkout, beside it at
# the top of the repository. Either way it is this folder's sibling.
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

COMMON_DEFAULTS = declare(
    "dlrig",
    Setting(
        "dlrig_roles",
        None,
        "list",
        "roles to apply to this host, in dlrig's order (None: every role)",
        item_kind="str",
        nullable=True,
        check=lambda v: None
        if set(v) <= set(ORDER)
        else f"unknown role(s) {sorted(set(v) - set(ORDER))}; known: {', '.join(ORDER)}",
    ),
    Setting(
        "cpu_only",
        False,
        "bool",
        "no GPU stack: skip the NVIDIA roles and install a CPU build of torch",
    ),
    Setting(
        "workstation_user",
        None,
        "str",
        "the rig's owner (conda, Jupyter and SSH keys are theirs); None: the login user",
        nullable=True,
    ),
)


def template(name: str) -> str:
    """Path of a shipped template, for ``files.template(src=...)``."""
    path = TEMPLATES / name
    if not path.is_file():
        raise FileNotFoundError(f"template {name} not found in {TEMPLATES}")
    return str(path)


def setting(key: str):
    """A setting of the current host, with its declared default (for roles reading other roles' keys)."""
    from pyinfra import host

    from dlrig.settings import registry

    return host.data.get(key, registry()[key].default)


def owner() -> str:
    """The rig's owner: ``workstation_user``, else the SSH login user, else who pyinfra runs as."""
    from pyinfra import host
    from pyinfra.facts.server import User

    return setting("workstation_user") or host.data.get("ssh_user") or host.get_fact(User, _sudo=False)


def load(name: str) -> ModuleType:
    if name not in ORDER:
        raise KeyError(f"unknown role {name!r}; known: {', '.join(ORDER)}")
    return importlib.import_module(f"dlrig.roles.{name}")


def parse_roles(value: str | list | tuple | None) -> list[str]:
    """A role selection (``"a,b"`` or a list) in dlrig's order; None or empty means all."""
    if value is None or value == "" or value == []:
        return list(ORDER)
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        raise KeyError(f"unknown role(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    return [n for n in ORDER if n in names]


for _name in ORDER:  # declare every role's settings on import
    load(_name)
