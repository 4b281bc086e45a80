"""dlrig roles: one concern each, a pyinfra packaged deploy per module.

Every role module declares its settings with :func:`dlrig.engine.settings.declare` and exposes one
``@deploy`` function named after the role. The one list of roles, in the order ``deploys/workstation.py``
applies them, is :data:`dlrig.engine.catalogue.ORDER`.
"""

from __future__ import annotations

from pathlib import Path

from dlrig.engine.catalogue import ORDER, load
from dlrig.engine.settings import Setting, declare

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


for _name in ORDER:  # declare every role's settings on import
    load(_name)
