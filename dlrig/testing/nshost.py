"""One test host: its own root filesystem, and its own sshd as PID 1 of private mount, UTS and PID
namespaces on a random 127.0.X.Y:22; the address locks and state files shared by every process on
this machine; SSH helpers (``ssh``, ``session``, testinfra) to reach it."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import random
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlrig.engine.tcp import set_nodelay
from dlrig.testing.image import USER
from dlrig.testing.system import (
    STATE_DIR,
    HostError,
    SSHCommandError,
    _alive,
    _children,
    _clean_env,
    _FileLock,
    _proc_starttime,
    _safe_rmtree,
    _umount_all_under,
)

log = logging.getLogger(__name__)


SSH_PORT = 22
START_TIMEOUT = 20.0
_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_SSH_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "IdentitiesOnly=yes",
    "-o", "ConnectTimeout=5",
)



def _addr_lock_path(address: str) -> Path:
    return STATE_DIR / f"addr-{address}.lock"


def _state_path(address: str) -> Path:
    return STATE_DIR / f"host-{address}.json"


def _port_free(address: str, port: int) -> bool:
    """Could a server bind ``address:port`` now? With SO_REUSEADDR, as sshd binds: a listener there
    makes it fail, a TIME_WAIT left by a stopped host's closed connections does not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _reserve_address(port: int, tries: int = 200, address: str | None = None) -> tuple[str, _FileLock]:
    """Pick a random free 127.0.X.Y (X, Y in 1..254) and hold its lock file; or exactly ``address``."""
    if address is not None:
        if not re.fullmatch(r"127\.\d{1,3}\.\d{1,3}\.\d{1,3}", address):
            raise HostError(f"test host address {address!r}: give a 127.0.0.0/8 address")
        lock = _FileLock(_addr_lock_path(address))
        if lock.acquire(blocking=False):
            if _port_free(address, port):
                return address, lock
            lock.release()
        raise HostError(f"{address}:{port} is taken (another test host or process holds it)")
    rng = random.SystemRandom()  # immune to pytest-randomly & co. seeding `random`
    for _ in range(tries):
        address = f"127.0.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
        lock = _FileLock(_addr_lock_path(address))
        if not lock.acquire(blocking=False):
            continue
        if _port_free(address, port):
            return address, lock
        lock.release()
    raise HostError(
        f"no free 127.0.X.Y:{port} after {tries} tries; is something listening on "
        f"0.0.0.0:{port} (this machine's own sshd?) - then use another port"
    )





# The namespace side of a host: $1 root, $2 hostname, $3 address, $4 port.
_NS_SCRIPT = r"""
set -eu
R=$1
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mkdir -p "$R/run/sshd" "$R/run/lock"
mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
mknod -m 666 "$R/dev/null" c 1 3
mknod -m 666 "$R/dev/zero" c 1 5
mknod -m 666 "$R/dev/full" c 1 7
mknod -m 666 "$R/dev/random" c 1 8
mknod -m 666 "$R/dev/urandom" c 1 9
mknod -m 666 "$R/dev/tty" c 5 0
mkdir -m 755 "$R/dev/pts"
mkdir -m 1777 "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
hostname "$2"
exec chroot "$R" /usr/sbin/sshd -D -e -o "ListenAddress=$3" -p "$4"
"""


def _pdeathsig() -> None:
    """In the child: die (SIGKILL) when the process that started us dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(eq=False)
class TestHost:
    """One running test host. ``root`` is its root filesystem as seen from this machine."""

    __test__ = False  # not a pytest test class

    name: str
    address: str
    key_path: Path
    root: Path
    port: int = SSH_PORT
    user: str = USER
    pid: int | None = None  # the unshare process
    sshd_pid: int | None = None  # PID 1 inside the host's PID namespace
    hostdir: Path | None = None  # root/, sshd.log, ssh_config live here
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _starttime: int | None = field(default=None, repr=False)
    _sshd_starttime: int | None = field(default=None, repr=False)
    _addr_lock: _FileLock | None = field(default=None, repr=False)
    _overlay: bool = field(default=False, repr=False)
    _stopped: bool = field(default=False, repr=False)

    # -- using it --------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        """sshd's stderr (-e)."""
        return (self.hostdir or self.root.parent) / "sshd.log"

    @property
    def ssh_config(self) -> Path:
        """An ssh_config for this host (also used by testinfra's paramiko backend)."""
        return (self.hostdir or self.root.parent) / "ssh_config"

    def ssh_argv(self, cmd: str | None = None) -> list[str]:
        """The ``ssh`` command line that runs ``cmd`` on this host."""
        argv = ["ssh", "-F", "/dev/null", "-i", str(self.key_path), *_SSH_OPTIONS, "-p", str(self.port),
                f"{self.user}@{self.address}"]
        return argv + ([cmd] if cmd is not None else [])

    def ssh(self, cmd: str, check: bool = True, input: str | None = None,
            timeout: float | None = 600) -> subprocess.CompletedProcess:
        """Run ``cmd`` (a shell command line) over real SSH; output captured as text."""
        res = subprocess.run(self.ssh_argv(cmd), capture_output=True, text=True, input=input,
                             timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise SSHCommandError(res.returncode, f"ssh {self.name}: {cmd}", res.stdout, res.stderr)
        return res

    def session(self, timeout: float = 10) -> Any:
        """A live paramiko SSH session with the test key (for tests that hold one open)."""
        import paramiko

        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(self.address, port=self.port, username=self.user, key_filename=str(self.key_path),
                       look_for_keys=False, allow_agent=False, timeout=timeout)
        set_nodelay(client)
        return client

    def testinfra_host(self) -> Any:
        """A testinfra Host over paramiko, with sudo (and TCP_NODELAY, as ``dlrig verify`` sets it)."""
        import testinfra

        host = testinfra.get_host(self._testinfra_spec(), sudo=True)
        set_nodelay(host.backend.client)
        return host

    def _testinfra_spec(self) -> str:
        return (f"paramiko://{self.user}@{self.address}:{self.port}"
                f"?ssh_identity_file={self.key_path}&ssh_config={self.ssh_config}")

    def inventory_entry(self) -> tuple[str, dict[str, Any]]:
        """(name, host data) for a pyinfra inventory."""
        return self.name, {
            "ssh_hostname": self.address,
            "ssh_user": self.user,
            "ssh_key": str(self.key_path),
            "ssh_port": self.port,
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "no",
            "_sudo": True,
        }

    @property
    def running(self) -> bool:
        return _alive(self.pid, self._starttime) and _alive(self.sshd_pid, self._sshd_starttime)

    # -- lifecycle -------------------------------------------------------------------------
    def _write_state(self) -> None:
        state = {
            "name": self.name, "address": self.address, "port": self.port,
            "owner_pid": os.getpid(), "owner_starttime": _proc_starttime(os.getpid()),
            "pid": self.pid, "starttime": self._starttime,
            "sshd_pid": self.sshd_pid, "sshd_starttime": self._sshd_starttime,
            "hostdir": str(self.hostdir), "root": str(self.root), "overlay": self._overlay,
        }
        path = _state_path(self.address)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def _launch(self) -> None:
        """Start the namespaced sshd (returns at once; see _wait_ready)."""
        self.ssh_config.write_text(
            f"Host *\n  User {self.user}\n  IdentityFile {self.key_path}\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        )
        with open(self.log_path, "wb") as logf:
            self._proc = subprocess.Popen(
                ["unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child=SIGKILL",
                 "--propagation", "private", "sh", "-c", _NS_SCRIPT, "sh",
                 str(self.root), self.name, self.address, str(self.port)],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                env=_clean_env(), start_new_session=True, preexec_fn=_pdeathsig,
            )
        self.pid = self._proc.pid
        self._starttime = _proc_starttime(self.pid)
        self._write_state()

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return "(no sshd log)"

    def _wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until sshd accepts a real login, or raise with sshd's log."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise HostError(f"host {self.name} ({self.address}): sshd exited "
                                f"({self._proc.returncode}) during start\n--- sshd log ---\n"
                                f"{self._log_tail()}")
            if self.sshd_pid is None:
                kids = _children(self.pid or 0)
                if kids:
                    self.sshd_pid = kids[0]
                    self._sshd_starttime = _proc_starttime(kids[0])
                    self._write_state()
            if self.sshd_pid is not None:
                try:
                    with socket.create_connection((self.address, self.port), timeout=1):
                        pass
                except OSError as e:
                    last = f"connect: {e}"
                else:
                    res = subprocess.run(self.ssh_argv("true"), capture_output=True, text=True,
                                         stdin=subprocess.DEVNULL, timeout=15)
                    if res.returncode == 0:
                        return
                    last = f"ssh true: exit {res.returncode}: {res.stderr.strip()}"
            if time.monotonic() > deadline:
                raise HostError(f"host {self.name} ({self.address}:{self.port}) did not answer SSH "
                                f"within {timeout:.0f} s ({last})\n--- sshd log ---\n"
                                f"{self._log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill the host, unmount and remove its files, release its address. Idempotent."""
        if self._stopped:
            return
        # Kill sshd (PID 1 of the namespace) first: unshare reaps it, so no zombie is left for
        # this machine's init (which here does not reap). Its death kills the whole namespace.
        if _alive(self.sshd_pid, self._sshd_starttime):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.sshd_pid, signal.SIGKILL)  # type: ignore[arg-type]
        elif self._proc is not None and self._proc.poll() is None:
            self._proc.kill()  # sshd not found yet: kill unshare (--kill-child takes the rest)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        _wait_gone(self.sshd_pid, self._sshd_starttime)
        self._evict_testinfra()
        if self.hostdir is not None:
            _umount_all_under(self.hostdir)
            _safe_rmtree(self.hostdir)
        with contextlib.suppress(FileNotFoundError):
            _state_path(self.address).unlink()
        if self._addr_lock is not None:
            self._addr_lock.release(unlink=True)
        self._stopped = True

    def _evict_testinfra(self) -> None:
        """Drop cached testinfra hosts for this address (their connections are dead now)."""
        with contextlib.suppress(Exception):
            from testinfra.host import Host

            for key in [k for k in Host._host_cache if k[0] == self._testinfra_spec()]:
                backend = Host._host_cache.pop(key).backend
                client = backend.__dict__.get("client")
                if client is not None:
                    client.close()


def _wait_gone(pid: int | None, starttime: int | None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid, starttime):
        if time.monotonic() > deadline:
            raise HostError(f"process {pid} survived SIGKILL for {timeout:.0f} s")
        time.sleep(0.02)
