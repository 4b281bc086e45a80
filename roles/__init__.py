"""dlrig roles: one concern each, a pyinfra packaged deploy per module.

Every role module exposes one ``@deploy`` function named after the role. Its settings are declared
(:func:`dlrig.engine.settings.declare`) in ``settings/<role>.py``, which imports no pyinfra: ``dlrig
check`` validates an inventory without loading pyinfra or any role. The one list of roles, in the
order ``deploys/workstation.py`` applies them, is :data:`dlrig.engine.catalogue.ORDER`.
"""

from __future__ import annotations

from pathlib import Path

# Installed, templates/ sits beside roles/ inside the dlrig package; in a checkout, beside it at
# the top of the repository. Either way it is this folder's sibling.
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def template(name: str) -> str:
    """Path of a shipped template, for ``files.template(src=...)``."""
    path = TEMPLATES / name
    if not path.is_file():
        raise FileNotFoundError(f"template {name} not found in {TEMPLATES}")
    return str(path)


# Owner and group of every file dlrig writes outside a user's home: pyinfra compares them with the
# host's and chowns a file whose ownership drifted (plan shows it, apply repairs it), as for mode.
ROOT_OWNED = {"user": "root", "group": "root"}
