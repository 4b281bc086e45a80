"""Reading the current pyinfra host's settings inside a deploy: :func:`setting` and :func:`owner`."""

from __future__ import annotations


def setting(key: str):
    """A setting of the current host, with its declared default (for roles reading other roles' keys)."""
    from pyinfra import host

    from dlrig.engine.settings import registry

    return host.data.get(key, registry()[key].default)


def owner() -> str:
    """The rig's owner: ``workstation_user``, else the SSH login user, else who pyinfra runs as."""
    from pyinfra import host

    from dlrig.engine.facts import LoginUser, fact

    return setting("workstation_user") or host.data.get("ssh_user") or fact(LoginUser, _sudo=False)


def owner_home(user: str | None = None) -> str:
    """The home directory of ``user`` (default: the owner) from the host's passwd (``getent``),
    else the usual place for a user the host does not know yet (``/home/USER``)."""
    from dlrig.engine import pyenv
    from dlrig.engine.facts import UserHome, fact

    user = user or owner()
    return pyenv.home_of(user, fact(UserHome, user=user))


def owned_by(user: str) -> dict[str, str]:
    """``user=``/``group=`` arguments for a file of ``user``'s: the user and their primary group
    (from the host's passwd; the user alone where the host does not know them yet), so that
    pyinfra repairs ownership drift of the file (chown) as it repairs its mode."""
    from pyinfra.facts.server import Users

    from dlrig.engine.facts import fact

    group = ((fact(Users) or {}).get(user) or {}).get("group")
    return {"user": user, "group": group} if group else {"user": user}
