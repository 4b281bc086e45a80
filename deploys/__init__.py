"""dlrig deploys: compositions of roles. The files beside this one are pyinfra deploy files.

``pyinfra INVENTORY deploys/workstation.py`` runs every role in order; ``dlrig apply`` runs the
same file after validating settings and resolving the GPU stack.
"""

from __future__ import annotations

from pathlib import Path

from dlrig.engine.catalogue import load, parse_roles

DEPLOYS = Path(__file__).resolve().parent


def deploy_file(name: str = "workstation") -> str:
    return str(DEPLOYS / f"{name}.py")


def report_name(host_name: str) -> str:
    """The file a per-host report deploy (``doctor.py``) writes for a host: a safe file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in host_name) + ".json"


def sudo_password(host) -> None:
    """DLRIG_SUDO_PASSWORD (or --sudo-password-prompt's answer) for pyinfra's sudo: every deploy
    file calls this before its first fact."""
    from dlrig.engine.sudopass import use_in_pyinfra

    use_in_pyinfra(host)


def run_roles(default: list[str] | None = None) -> None:
    """Apply the roles this host asks for (``dlrig_roles``), or ``default``, in dlrig's order."""
    from pyinfra import host  # here, not at the top: the CLI imports this package for deploy_file()

    sudo_password(host)
    wanted = host.data.get("dlrig_roles")
    for name in parse_roles(wanted if wanted is not None else default):
        role = load(name)
        getattr(role, name)()
