"""The checks' commands through a sudo that asks for a password (``verify`` on a host whose sudo
needs one, with ``DLRIG_SUDO_PASSWORD``, ``--sudo-password-prompt`` or ``_sudo_password``).

testinfra's ``--sudo`` runs ``sudo /bin/sh -c CMD``, which cannot answer a prompt. For a backend
given a password (:func:`give`), a command run through sudo becomes ``sudo -k -S -p '' /bin/sh -c
CMD`` and the password is written to its standard input, which is then closed: sudo reads the one
line (``-k``: always, never a cached credential that would leave the line to CMD), CMD gets an empty
stdin. The password is on no command line, local or remote. Backends without a password are
unchanged. testinfra's paramiko (SSH) and local backends are the two verify uses.
"""

from __future__ import annotations

import subprocess
from typing import Any

_ATTR = "_dlrig_sudo_password"
_installed = False


def give(host: Any, password: str | None) -> None:
    """Let ``host`` (a testinfra host) answer sudo's password prompt with ``password``."""
    if not password:
        return
    _install()
    setattr(host.backend, _ATTR, password)


def _password(backend: Any) -> str | None:
    return getattr(backend, _ATTR, None) if getattr(backend, "sudo", False) else None


def _install() -> None:
    global _installed
    if _installed:
        return
    from testinfra.backend import base, local, paramiko

    plain_sudo = base.BaseBackend.get_sudo_command

    def get_sudo_command(self, command: str, sudo_user: str | None) -> str:
        if getattr(self, _ATTR, None) is None:
            return plain_sudo(self, command, sudo_user)
        if sudo_user is None:
            return self.quote("sudo -k -S -p '' /bin/sh -c %s", command)
        return self.quote("sudo -k -S -p '' -u %s /bin/sh -c %s", sudo_user, command)

    plain_exec = paramiko.ParamikoBackend._exec_command

    def _exec_command(self, command: bytes) -> tuple[int, bytes, bytes]:
        password = _password(self)
        if password is None:
            return plain_exec(self, command)
        chan = self.client.get_transport().open_session()
        if self.get_pty:
            chan.get_pty()
        chan.exec_command(command)
        chan.sendall((password + "\n").encode())
        chan.shutdown_write()
        stdout = b"".join(chan.makefile("rb"))
        stderr = b"".join(chan.makefile_stderr("rb"))
        return chan.recv_exit_status(), stdout, stderr

    plain_run = local.LocalBackend.run

    def run(self, command: str, *args: str, **kwargs: Any):
        password = _password(self)
        if password is None:
            return plain_run(self, command, *args, **kwargs)
        cmd = self.encode(self.get_command(command, *args))
        p = subprocess.Popen(cmd, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = p.communicate((password + "\n").encode())
        return self.result(p.returncode, cmd, stdout, stderr)

    base.BaseBackend.get_sudo_command = get_sudo_command
    paramiko.ParamikoBackend._exec_command = _exec_command
    local.LocalBackend.run = run
    _installed = True
