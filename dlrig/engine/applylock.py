"""One ``dlrig apply`` at a time per host: a host-side ``flock`` held for the whole pyinfra run.

Before pyinfra starts, the controller opens its own session per host (SSH with the host's
``ssh_*`` data, or a local process for ``@local``) running ``flock`` on :data:`LOCK_FILE` and
keeps it open: its stdin is the only thing the remote ``cat`` reads, so closing the session, or
the controller dying (the SSH connection drops), ends ``cat`` and releases the lock. A host whose
lock is not free within ``apply_lock_timeout`` seconds is failed before any change, with
"another dlrig apply is running on HOST since T" (T: when that apply took the lock).
``plan`` never takes it: it changes nothing.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlrig.engine.sudopass import REFUSED, password_for, refused_message, sudo_argv

LOCK_FILE = "/run/lock/dlrig-apply.lock"
SINCE_FILE = "/run/lock/dlrig-apply.since"
LOCKED, BUSY = "LOCKED", "BUSY"
BUSY_EXIT = 75  # EX_TEMPFAIL

# Hosts of these connectors are not locked: nothing real to change (@fake) or no shell to hold.
_UNLOCKED_PREFIXES = ("@fake", "@chroot", "@docker", "@podman", "@terraform", "@vagrant")


def lock_script(timeout: int) -> str:
    """The shell that takes the lock (fd 9), says LOCKED and holds it until its stdin ends."""
    t = int(timeout)
    return (
        f"exec 9>>{LOCK_FILE} || exit 1; "
        f"if ! flock -w {t} 9; then echo {BUSY} \"$(cat {SINCE_FILE} 2>/dev/null)\"; exit {BUSY_EXIT}; fi; "
        f"date -u +%Y-%m-%dT%H:%M:%SZ > {SINCE_FILE}; echo {LOCKED}; cat >/dev/null"
    )


def _argv(script: str, data: dict[str, Any], user: str | None) -> tuple[list[str], str | None]:
    """The command (as argv) under sudo when the login is not root, and what goes first on its stdin."""
    if user == "root" or (user is None and os.geteuid() == 0):
        return ["sh", "-c", script], None
    return sudo_argv(script, password_for(data))


@dataclass
class _Held:
    host: str
    close: Any  # a callable that releases the lock


@dataclass
class ApplyLocks:
    """The locks this apply holds (``held``), the hosts refused, with their one-line reason, and
    those dlrig could not connect to (``unreached``): pyinfra then reports them unreachable with
    its own connect error (it cannot change a host it cannot reach either)."""

    held: dict[str, _Held] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    unreached: dict[str, str] = field(default_factory=dict)

    def release(self) -> None:
        for h in list(self.held.values()):
            try:
                h.close()
            except Exception:  # noqa: BLE001 (the lock goes with the connection anyway)
                pass
        self.held.clear()

    def __enter__(self) -> ApplyLocks:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lockable(name: str) -> bool:
    return not name.startswith(_UNLOCKED_PREFIXES)


def acquire(hosts: list, timeout_of, note=None) -> ApplyLocks:
    """Take every host's lock, in name order (two applies over the same hosts cannot deadlock).

    ``timeout_of(host)``: its ``apply_lock_timeout``; ``note(line)``: told when a host is busy and
    dlrig waits."""
    locks = ApplyLocks()
    ordered = [h for h in sorted(hosts, key=lambda h: h.name) if lockable(h.name)]
    # The SSH connections (TCP, key exchange, auth: most of the time) are made side by side; the
    # locks are then taken over them one host at a time, in name order.
    clients = _connect_all([h for h in ordered if h.name != "@local"])
    for h in ordered:
        try:
            client = clients.get(h.name)
            if isinstance(client, BaseException):
                raise client
            held, reason = _take(h, int(timeout_of(h)), note, client)
        except _Unreached as e:
            locks.unreached[h.name] = str(e)
            continue
        except Exception as e:  # noqa: BLE001 (paramiko and sockets raise many kinds)
            held, reason = None, f"cannot take the apply lock on {h.name}: {type(e).__name__}: {e}"
        if held is None:
            locks.refused[h.name] = reason
        else:
            locks.held[h.name] = held
    return locks


class _Unreached(Exception):
    """No SSH connection to the host (refused, timed out, authentication failed)."""


def _busy(name: str, since: str) -> str:
    return (f"another dlrig apply is running on {name} since {since.strip() or 'an unknown time'}; "
            "wait for it to finish, or raise apply_lock_timeout")


def _connect_all(hosts: list) -> dict:
    """{host name: its connected paramiko client, or the exception connecting raised}, made in parallel."""
    if not hosts:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    def one(h):
        try:
            return _connect_ssh(h)
        except BaseException as e:  # noqa: BLE001 (returned, raised by the caller for its host)
            return e

    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        return dict(zip([h.name for h in hosts], pool.map(one, hosts)))


def _take(h, timeout: int, note, client=None) -> tuple[_Held | None, str]:
    if h.name == "@local":
        return _take_local(h, timeout, note)
    return _take_ssh(h, timeout, note, client if client is not None else _connect_ssh(h))


def _read_first_line(readline, name: str, timeout: int, note, poll) -> str:
    """The session's first line; tells ``note`` once if it is not there within a second (busy)."""
    start = time.monotonic()
    told = False
    while not poll():
        if not told and note and time.monotonic() - start > 1.0:
            note(f"{name}: another dlrig apply holds the host; waiting up to {timeout}s (apply_lock_timeout)")
            told = True
        time.sleep(0.05)
    return readline()


def _take_local(h, timeout: int, note) -> tuple[_Held | None, str]:
    argv, first = _argv(lock_script(timeout), h.data, None)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if first:
        proc.stdin.write(first)
        proc.stdin.flush()
    import select

    line = _read_first_line(proc.stdout.readline, h.name, timeout, note,
                            lambda: bool(select.select([proc.stdout], [], [], 0)[0]))
    close = lambda: _close_local(proc)  # noqa: E731

    def finish() -> str:
        close()
        return proc.stderr.read()

    return _outcome(h.name, line, finish, close, h.data)


def _close_local(proc) -> None:
    try:
        proc.stdin.close()
    finally:
        proc.wait(timeout=30)


def _outcome(name: str, line: str, finish, close, data=None) -> tuple[_Held | None, str]:
    """Held when the session said LOCKED; else ended, with the one-line reason."""
    if line.strip() == LOCKED:
        return _Held(name, close), ""
    err = finish().strip().splitlines()
    if line.startswith(BUSY):
        return None, _busy(name, line[len(BUSY):])
    if line.strip() == REFUSED:
        return None, refused_message(name, data or {})
    return None, f"cannot take the apply lock on {name}: {line.strip() or (err[-1] if err else 'no answer')}"


def _connect_ssh(h):
    """A paramiko client connected to the host as pyinfra would connect (its ``ssh_*`` data)."""
    import paramiko

    from dlrig.engine.tcp import set_nodelay

    d = h.data
    name = h.name.split("/", 1)[1] if h.name.startswith(("@ssh/", "@dlrig-ssh/")) else h.name
    client = paramiko.SSHClient()
    known = d.get("ssh_known_hosts_file") or "~/.ssh/known_hosts"
    known = os.path.expanduser(known)
    if d.get("ssh_strict_host_key_checking") != "no" and Path(known).is_file():
        client.load_host_keys(known)  # a known host whose key changed is refused (as pyinfra does)
    if d.get("ssh_strict_host_key_checking") == "yes":
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    else:  # pyinfra's default (accept-new) and "no"; pyinfra itself records new keys
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    key = d.get("ssh_key")
    try:
        client.connect(
            d.get("ssh_hostname") or name,
            port=int(d.get("ssh_port") or 22),
            username=d.get("ssh_user"),
            password=d.get("ssh_password"),
            key_filename=os.path.expanduser(key) if key else None,
            passphrase=d.get("ssh_key_password"),
            allow_agent=bool(d.get("ssh_allow_agent", True)),
            look_for_keys=not key,
            timeout=30,
        )
    except Exception as e:  # noqa: BLE001 (paramiko and sockets raise many kinds)
        client.close()
        raise _Unreached(f"{type(e).__name__}: {e}") from None
    set_nodelay(client)
    return client


def _take_ssh(h, timeout: int, note, client) -> tuple[_Held | None, str]:
    d = h.data
    user = d.get("ssh_user") or client.get_transport().get_username()
    argv, first = _argv(lock_script(timeout), d, user)
    chan = client.get_transport().open_session()
    chan.exec_command(shlex.join(argv))
    if first:
        chan.sendall(first.encode())
    buf = bytearray()

    def readline() -> str:
        while b"\n" not in buf:
            chunk = chan.recv(4096)  # blocks until output or the end of the session
            if not chunk:
                break
            buf.extend(chunk)
        return bytes(buf).decode(errors="replace").split("\n", 1)[0]

    def close() -> None:
        try:
            chan.shutdown_write()  # EOF on the remote cat: the lock is released
            chan.recv_exit_status()
        finally:
            client.close()

    def finish() -> str:
        err = b""
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(4096)
        close()
        return err.decode(errors="replace")

    line = _read_first_line(readline, h.name, timeout, note,
                            lambda: chan.recv_ready() or chan.exit_status_ready())
    return _outcome(h.name, line, finish, close, d)
