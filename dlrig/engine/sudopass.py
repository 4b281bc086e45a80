"""sudo that asks for a password: where dlrig takes it from, and how it reaches pyinfra unseen.

Three ways, first match wins:

1. ``_sudo_password`` in the inventory's host data: pyinfra's own global argument (e.g.
   ``"_sudo_password": os.environ["RIG_SUDO"]`` in ``my-rig.py``).
2. ``DLRIG_SUDO_PASSWORD`` in the environment.
3. ``--sudo-password-prompt``: dlrig asks once and puts the answer in its own environment as
   ``DLRIG_SUDO_PASSWORD`` for its children (plan's and apply's pyinfra), so nobody asks again.

The password never goes on a command line (``--data`` would show it in ``ps`` and in apply's log):
``--data _sudo_password=...`` is refused. Inside pyinfra it is handed to pyinfra's own slot for a
prompted password (``host.connector_data["prompted_sudo_password"]``), which pyinfra passes to
``sudo -A`` through an askpass helper and prints as ``***``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

ENV = "DLRIG_SUDO_PASSWORD"
DATA_KEY = "_sudo_password"


def password_for(data: Mapping[str, Any]) -> str | None:
    """The sudo password for a host with host data ``data``, or None (passwordless sudo / root)."""
    value = data.get(DATA_KEY) or os.environ.get(ENV)
    return str(value) if value else None


def source_of(data: Mapping[str, Any]) -> str:
    """Where :func:`password_for` took it from, for a message (never the value)."""
    if data.get(DATA_KEY):
        return "_sudo_password"
    if os.environ.get(ENV):
        return ENV
    return "no password"


def use_in_pyinfra(host) -> None:
    """Inside a pyinfra deploy file: give ``DLRIG_SUDO_PASSWORD`` to pyinfra as if it had prompted
    for it (host data ``_sudo_password``, pyinfra's own, is used by pyinfra directly)."""
    password = os.environ.get(ENV)
    if password and not host.data.get(DATA_KEY):
        host.connector_data["prompted_sudo_password"] = password


def sudo_argv(script: str, password: str | None) -> tuple[list[str], str | None]:
    """argv that runs ``sh -c script`` as root with sudo, and the first line for its stdin.

    With a password, sudo checks it first (``sudo -S -v``, stdin read up to the first line only),
    prints ``SUDO_REFUSED`` and exits 1 if it is wrong (never a retry that would wait on stdin),
    then runs ``script`` with ``sudo -n`` on the credential just cached; the rest of stdin is the
    script's. The password is read by the shell's ``read``: it is on no command line."""
    if not password:
        return ["sudo", "-n", "sh", "-c", script], None
    check = ('IFS= read -r pw; '
             'if ! printf "%s\\n" "$pw" | sudo -S -p "" -v 2>/dev/null; then echo SUDO_REFUSED; exit 1; fi; '
             'pw=; sudo -n sh -c "$0"')
    return ["sh", "-c", check, script], password + "\n"


REFUSED = "SUDO_REFUSED"


def refused_message(host: str, data: Mapping[str, Any]) -> str:
    return (f"sudo on {host} refused the password from {source_of(data)}: check it (or use "
            "--sudo-password-prompt); nothing was changed")
