"""Local plumbing of the test-host layer: clean subprocess environments, required tools, process
liveness, mounts, file locks, and the errors every part raises."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)


#: Shared between every process on this machine that uses this module (address locks, pid files).
STATE_DIR = Path(os.environ.get("DLRIG_HOSTS_STATE_DIR", "/run/dlrig-hosts"))
_CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
class HostError(RuntimeError):
    """A test host (or the golden image) could not be made, started or stopped."""
class SSHCommandError(subprocess.CalledProcessError):
    """A command run over SSH exited non-zero; str() shows its output."""

    def __str__(self) -> str:
        out = (self.stdout or "").strip()[-2000:]
        err = (self.stderr or "").strip()[-2000:]
        return f"{super().__str__()}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"



def _clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment: no PIP_*, DEBIAN_FRONTEND or other leaks into chroots."""
    env = {"PATH": _CLEAN_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
    env.update({k: os.environ[k] for k in _PROXY_VARS if k in os.environ})
    env.update(extra)
    return env


def _run(cmd: Sequence[str], what: str, **kw: Any) -> subprocess.CompletedProcess:
    """Run a local command; raise HostError with its output when it fails."""
    kw.setdefault("env", _clean_env())
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    except FileNotFoundError as e:
        raise HostError(f"{what}: {e.filename} not found") from None
    if res.returncode != 0:
        out = (res.stdout + res.stderr).strip()[-3000:]
        raise HostError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{out}")
    return res


def _require_root() -> None:
    if os.geteuid() != 0:
        raise HostError("test hosts need root (namespaces, chroot, mounts): run as root")


_APT_HINT = {
    "debootstrap": "debootstrap", "unshare": "util-linux", "ssh": "openssh-client",
    "ssh-keygen": "openssh-client", "zstd": "zstd", "tar": "tar", "chroot": "coreutils",
    "mount": "mount", "umount": "mount",
}


def _require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t, path=os.environ.get("PATH", "") + ":" + _CLEAN_PATH) is None]
    if missing:
        pkgs = sorted({_APT_HINT.get(t, t) for t in missing})
        raise HostError(f"{', '.join(missing)} not found: apt-get install {' '.join(pkgs)}")


def missing_requirements() -> str | None:
    """Why test hosts cannot run here (a sentence), or None when they can."""
    try:
        _require_root()
        _require_tools("debootstrap", "unshare", "ssh", "ssh-keygen", "tar", "zstd", "chroot")
    except HostError as e:
        return str(e)
    return None


def _proc_starttime(pid: int) -> int | None:
    """The kernel start time of ``pid`` (None if gone or a zombie): guards against pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(pid: int | None, starttime: int | None) -> bool:
    return bool(pid) and starttime is not None and _proc_starttime(pid) == starttime


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(p.name))
    return kids


def _unescape_mountinfo(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` in this process's mount namespace, deepest first."""
    base = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape_mountinfo(line.split()[4])
            if mp == base or mp.startswith(base.rstrip("/") + "/"):
                found.append(Path(mp))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def _umount_all_under(path: Path, timeout: float = 10.0) -> None:
    """Unmount everything at or under ``path`` (retrying while busy, lazily as a last resort)."""
    deadline = time.monotonic() + timeout
    while mounts := mounts_under(path):
        for mp in mounts:
            subprocess.run(["umount", str(mp)], capture_output=True, env=_clean_env())
        if time.monotonic() > deadline:
            for mp in mounts_under(path):
                subprocess.run(["umount", "-l", str(mp)], capture_output=True, env=_clean_env())
            break
        if mounts_under(path):
            time.sleep(0.1)
    if left := mounts_under(path):
        raise HostError(f"still mounted under {path}: {', '.join(map(str, left))}")


def _safe_rmtree(path: Path) -> None:
    """rm -rf ``path``, refusing while anything is mounted at or below it."""
    if not path.exists() and not path.is_symlink():
        return
    if left := mounts_under(path):
        raise HostError(f"refusing to remove {path}: still mounted: {', '.join(map(str, left))}")
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    shutil.rmtree(path)


class _FileLock:
    """An exclusive fcntl lock on a file; ``unlink_on_release`` removes it race-free."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; False if ``blocking`` is False and someone else holds it."""
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else: the holder unlinked it after we opened it; retry on the new file
                self.fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return True
            os.close(fd)

    def release(self, unlink: bool = False) -> None:
        if self.fd is None:
            return
        if unlink:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "_FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
