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
    """Apply the roles this host asks for (``dlrig_roles``), or ``default``, in dlrig's order.

    Downloads of later roles that can start early (a role's ``start_downloads()``) start in the
    background where :func:`dlrig.engine.prefetch.start` is called: in base, before its apt
    transaction (without base, a role has nothing before it to overlap: it downloads itself)."""
    from pyinfra import host  # here, not at the top: the CLI imports this package for deploy_file()

    from dlrig.engine import prefetch

    sudo_password(host)
    wanted = host.data.get("dlrig_roles")
    roles = [(name, load(name)) for name in parse_roles(wanted if wanted is not None else default)]
    prefetch.pending(host, [r.start_downloads for _, r in roles if hasattr(r, "start_downloads")])
    for name, role in roles:
        getattr(role, name)()
