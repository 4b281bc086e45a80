"""Commands on an inventory host over SSH, outside pyinfra: for commands that must *read* a host
and bring data back (``dlrig lock``, ``backup``, ``cache status``) or put files back before the
roles run (``apply --restore``).

The connection comes from the same pyinfra ``ssh_*`` host data the roles use (``ssh_hostname``,
``ssh_user``, ``ssh_key``, ``ssh_port``, ``ssh_password``, ``_sudo``); host keys follow
``ssh_known_hosts_file`` / ``ssh_strict_host_key_checking`` like pyinfra does.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Any


class RemoteError(RuntimeError):
    """A host could not be reached, or a command on it failed; one line for the user."""


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


class Remote:
    """One SSH connection (paramiko) to a host of the inventory."""

    def __init__(self, name: str, data: dict[str, Any], timeout: float = 15):
        import paramiko

        self.name = name
        self.sudo = bool(data.get("_sudo"))
        hostname = data.get("ssh_hostname") or name
        port = int(data.get("ssh_port") or 22)
        self.client = paramiko.SSHClient()
        known = data.get("ssh_known_hosts_file")
        strict = str(data.get("ssh_strict_host_key_checking", "yes")).lower()
        if known == "/dev/null" or strict in ("no", "off", "false", "accept-new"):
            self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            self.client.load_system_host_keys(os.path.expanduser(known) if known else None)
        key = data.get("ssh_key")
        try:
            self.client.connect(
                hostname, port=port, username=data.get("ssh_user"), password=data.get("ssh_password"),
                key_filename=os.path.expanduser(str(key)) if key else None,
                look_for_keys=not key, allow_agent=not key, timeout=timeout,
            )
        except Exception as e:  # paramiko raises many kinds; the user needs one line
            raise RemoteError(f"{name}: cannot connect to {hostname}:{port}: {type(e).__name__}: {e}; "
                              "check ssh_hostname, ssh_port, ssh_user and ssh_key in the inventory") from None

    def run(self, cmd: str, *, root: bool = False, user: str | None = None, stdin: bytes | str | None = None,
            check: bool = True, timeout: float = 3600) -> Result:
        """``cmd`` under ``sh -c``; as root (``root``) or as ``user`` through sudo where needed."""
        line = "sh -c " + shlex.quote(cmd)
        if user:
            line = f"sudo -n -H -u {shlex.quote(user)} {line}"
        elif root and self.sudo:
            line = f"sudo -n -H {line}"
        chan_in, chan_out, chan_err = self.client.exec_command(line, timeout=timeout)
        if stdin is not None:
            chan_in.write(stdin.encode() if isinstance(stdin, str) else stdin)
        chan_in.channel.shutdown_write()
        out = chan_out.read().decode(errors="replace")
        err = chan_err.read().decode(errors="replace")
        rc = chan_out.channel.recv_exit_status()
        if check and rc != 0:
            last = (err.strip() or out.strip()).splitlines()[-3:]
            raise RemoteError(f"{self.name}: `{cmd.splitlines()[0][:80]}` failed (exit {rc}): {' | '.join(last)}")
        return Result(rc, out, err)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Remote":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
