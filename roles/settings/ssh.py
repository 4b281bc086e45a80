"""Settings of role ``ssh``: OpenSSH server that never locks its owner out.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/ssh.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

from dlrig.engine.settings import Setting, declare
from dlrig.engine.sshkeys import KeyProblem, parse_keys


def _check_keys(keys: list) -> str | None:
    """Every key through OpenSSH's parser (controller side, before connecting)."""
    try:
        parse_keys(list(keys))
    except KeyProblem as e:
        return str(e)
    return None


def _check_extra(lines: list) -> str | None:
    for line in lines:
        if not isinstance(line, str) or "\n" in line or "\r" in line or not line.strip():
            return f"{line!r}: give one sshd_config directive per item, e.g. 'X11Forwarding no'"
    return None


def _check_ports(ports: list) -> str | None:
    bad = [p for p in ports if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535]
    return f"{bad!r} are not TCP ports (1-65535)" if bad else None


DEFAULTS = declare(
    "ssh",
    Setting("ssh_authorized_keys", [], "list",
            "public keys (lines of id_*.pub) installed for the rig's owner", item_kind="str",
            secret=True, check=_check_keys),
    Setting("ssh_password_authentication", None, "bool",
            "password login; None: off once the owner has an authorized key, else left as is",
            nullable=True),
    Setting("ssh_permit_root_login", "no", "str", "sshd PermitRootLogin",
            choices=("no", "prohibit-password")),
    Setting("ssh_port", 22, "port",
            "the port pyinfra connects to; sshd always keeps listening on the port it was reached on"),
    Setting("ssh_extra_ports", [], "list",
            "more ports for sshd (move ports: add the new one here first, then switch ssh_port)",
            item_kind="int", check=_check_ports),
    Setting("ssh_extra_config", [], "list",
            "extra sshd_config directives for the drop-in, one per item (validated by sshd -t)",
            item_kind="str", check=_check_extra),
)


def preflight(host_name: str, data: dict) -> list[str]:
    """Controller-side lock-out checks (no facts needed)."""
    errors = []
    keys = data.get("ssh_authorized_keys") or []
    if data.get("ssh_password_authentication") is False and not keys and data.get("ssh_password") \
            and not data.get("ssh_key"):
        errors.append(
            f"{host_name}: ssh_password_authentication = False would lock you out: pyinfra logs in "
            "with ssh_password and ssh_authorized_keys is empty; add your public key to "
            "ssh_authorized_keys (and log in with ssh_key), or keep password login on")
    if data.get("ssh_permit_root_login") == "no" and data.get("ssh_user") == "root":
        errors.append(
            f"{host_name}: ssh_permit_root_login = 'no' would lock out ssh_user = 'root'; log in as "
            "a sudo user (ssh_user, _sudo=True) or set ssh_permit_root_login = 'prohibit-password'")
    return errors
