"""Throw-away Debian 12 (bookworm) test hosts on this machine, reached over real SSH.

A *golden image* (debootstrap minbase + openssh-server, python3, sudo, a passwordless-sudo
user ``dlrig`` with a generated ed25519 key) is built once and cached as
``golden-<recipe hash>.tar.zst``. Each host gets its own root filesystem (an overlay over one
extracted copy of the image, or a full extract) and its own sshd, PID 1 of private mount, UTS
and PID namespaces, listening on a random 127.0.X.Y:22. The network namespace is shared with
this machine, so hosts reach package mirrors the same way this machine does.

Typical use::

    with test_hosts(2, Path("/tmp/work")) as hosts:
        hosts[0].ssh("hostname")
        write_inventory(hosts, Path("/tmp/work/inventory.py"))

Needs root, debootstrap, unshare (util-linux), ssh/ssh-keygen (openssh-client), tar and zstd.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import inspect
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

log = logging.getLogger(__name__)

#: Bump to force a rebuild of every cached golden image.
RECIPE_VERSION = 1
SUITE = "bookworm"
#: Packages added to debootstrap's minbase (keep it small: roles install the rest).
PACKAGES: tuple[str, ...] = (
    "openssh-server",
    "python3",
    "sudo",
    "ca-certificates",
    "systemd",  # a real Debian 12 has systemctl (enable works in a chroot, start does not)
    "iproute2",  # ss/ip: testinfra's socket checks
    "procps",  # ps: testinfra's process checks
)
COMPONENTS = "main contrib non-free non-free-firmware"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
USER = "dlrig"
UID = 1000
SSH_PORT = 22
START_TIMEOUT = 20.0
#: Shared between every process on this machine that uses this module (address locks, pid files).
STATE_DIR = Path(os.environ.get("DLRIG_HOSTS_STATE_DIR", "/run/dlrig-hosts"))
_CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_SSH_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "IdentitiesOnly=yes",
    "-o", "ConnectTimeout=5",
)


class HostError(RuntimeError):
    """A test host (or the golden image) could not be made, started or stopped."""


class SSHCommandError(subprocess.CalledProcessError):
    """A command run over SSH exited non-zero; str() shows its output."""

    def __str__(self) -> str:
        out = (self.stdout or "").strip()[-2000:]
        err = (self.stderr or "").strip()[-2000:]
        return f"{super().__str__()}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# golden image
# --------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$DLRIG_CACHE`` or ``~/.cache/dlrig``."""
    return Path(os.environ.get("DLRIG_CACHE") or Path.home() / ".cache" / "dlrig")


def default_mirror() -> str:
    return os.environ.get("DLRIG_DEBIAN_MIRROR") or DEFAULT_MIRROR


def default_security_mirror() -> str:
    return os.environ.get("DLRIG_DEBIAN_SECURITY_MIRROR") or DEFAULT_SECURITY_MIRROR


def sources_list(mirror: str, security_mirror: str) -> str:
    """The image's /etc/apt/sources.list (all four components, updates and security)."""
    return (
        f"deb {mirror} {SUITE} {COMPONENTS}\n"
        f"deb {mirror} {SUITE}-updates {COMPONENTS}\n"
        f"deb {security_mirror} {SUITE}-security {COMPONENTS}\n"
    )


def recipe_hash(mirror: str | None = None, security_mirror: str | None = None) -> str:
    """Hash of everything that shapes the image: recipe code, package list, suite, mirrors."""
    h = hashlib.sha256()
    for part in (
        f"v{RECIPE_VERSION}", SUITE, COMPONENTS, ",".join(PACKAGES), USER, str(UID),
        mirror or default_mirror(), security_mirror or default_security_mirror(),
        inspect.getsource(sources_list), inspect.getsource(_build_rootfs),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def image_key(image: Path) -> Path:
    """The private SSH key that logs in as ``dlrig`` on hosts made from ``image``."""
    name = image.name.removesuffix(".tar.zst")
    return image.with_name(name + ".key")


def _image_lock(image: Path) -> Path:
    return image.with_name("." + image.name.removesuffix(".tar.zst") + ".lock")


def _lower_dir(image: Path) -> Path:
    return image.with_name(image.name.removesuffix(".tar.zst") + ".root")


def _overlay_lowers() -> set[str]:
    """Lower dirs of the overlays mounted in this mount namespace (i.e. in use by hosts)."""
    lowers = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.startswith("overlay "):
                for opt in post.split()[2].split(","):
                    if opt.startswith("lowerdir="):
                        lowers.update(_unescape_mountinfo(opt[9:]).split(":"))
    return lowers


def _remove_cached(paths: Iterable[Path]) -> list[Path]:
    """Remove cache entries, skipping extracted roots that running hosts still use."""
    in_use = _overlay_lowers()
    removed = []
    for p in paths:
        if p.is_dir() and str(p) in in_use:
            log.warning("%s is in use by running test hosts; kept", p)
            continue
        if p.exists():
            _safe_rmtree(p)
            removed.append(p)
    return removed


def prune_cache(cache_dir: Path | None = None, keep: Iterable[Path] = ()) -> list[Path]:
    """Delete cached golden images (tarball, key, extracted root) other than ``keep``.

    Images whose extracted root is in use by running hosts are kept. Returns what was removed.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    keep_stems = {Path(k).name.removesuffix(".tar.zst") for k in keep}
    doomed = [p for p in cache_dir.glob("golden-*")
              if p.name.split(".")[0] not in keep_stems]
    # temp dirs of builds/extractions killed half-way (a real one takes minutes, not hours)
    old = time.time() - 3 * 3600
    doomed += [p for pat in (".build-*", ".extract-*") for p in cache_dir.glob(pat)
               if p.is_dir() and p.stat().st_mtime < old]
    return _remove_cached(doomed)


def golden_image(
    cache_dir: Path | None = None,
    mirror: str | None = None,
    security_mirror: str | None = None,
) -> Path:
    """Return the cached golden image for the current recipe, building it if missing.

    Concurrent callers (several pytest processes) wait on a lock and build only once.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    mirror = mirror or default_mirror()
    security_mirror = security_mirror or default_security_mirror()
    digest = recipe_hash(mirror, security_mirror)
    image = cache_dir / f"golden-{digest}.tar.zst"
    if image.exists() and image_key(image).exists():
        return image
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _FileLock(_image_lock(image)):
        if image.exists() and image_key(image).exists():
            return image
        t0 = time.monotonic()
        log.info("building golden image %s (debootstrap %s from %s)", image, SUITE, mirror)
        _build_image(image, mirror, security_mirror)
        log.info("built %s in %.1f s", image, time.monotonic() - t0)
    return image


def _build_image(image: Path, mirror: str, security_mirror: str) -> None:
    """Build into a temp dir beside ``image``, then rename key and image into place."""
    _require_root()
    _require_tools("debootstrap", "ssh-keygen", "tar", "zstd", "chroot")
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=image.parent))
    try:
        root = tmp / "root"
        key = tmp / "key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{USER}@dlrig-test-hosts",
              "-f", str(key)], "ssh-keygen")
        _build_rootfs(root, mirror, security_mirror, key.with_suffix(".pub").read_text())
        packed = tmp / image.name
        _run(["tar", "--numeric-owner", "--one-file-system", "-I", "zstd -T0 -3", "-cpf",
              str(packed), "-C", str(root), "."], "packing the golden image")
        key.chmod(0o600)
        os.replace(key.with_suffix(".pub"), image_key(image).with_name(image_key(image).name + ".pub"))
        os.replace(key, image_key(image))
        # an extracted root left from a deleted image of the same recipe has the old key
        if _remove_cached([_lower_dir(image)]) == [] and _lower_dir(image).exists():
            raise HostError(f"{_lower_dir(image)} (from a deleted image) is in use by running "
                            "hosts: stop them, then build again")
        os.replace(packed, image)  # last: the image's presence means "complete"
    finally:
        with contextlib.suppress(HostError):
            _umount_all_under(tmp)
        _safe_rmtree(tmp)


def _build_rootfs(root: Path, mirror: str, security_mirror: str, pubkey: str) -> None:
    """debootstrap a bookworm minbase into ``root`` and make it a test host."""
    root.mkdir(parents=True)
    try:
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
              SUITE, str(root), mirror], "debootstrap", env=_clean_env())
    except HostError as e:
        tail = ""
        with contextlib.suppress(OSError):
            tail = (root / "debootstrap/debootstrap.log").read_text()[-3000:]
        raise HostError(f"{e}\n--- debootstrap.log ---\n{tail}") from None

    def chroot(*cmd: str) -> None:
        _run(["chroot", str(root), *cmd], f"in the image: {' '.join(cmd)}",
             env=_clean_env(DEBIAN_FRONTEND="noninteractive"))

    etc = root / "etc"
    (etc / "apt/sources.list").write_text(sources_list(mirror, security_mirror))
    policy = root / "usr/sbin/policy-rc.d"  # package installs must not start daemons here
    policy.write_text("#!/bin/sh\n# dlrig test host: never start services\nexit 101\n")
    policy.chmod(0o755)
    (etc / "hosts").write_text(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )
    (etc / "hostname").write_text("dlrig-test\n")
    chroot("useradd", "--create-home", "--uid", str(UID), "--user-group",
           "--shell", "/bin/bash", USER)
    chroot("usermod", "--password", "*", USER)  # no password login; keys only
    sudoers = etc / "sudoers.d" / USER
    sudoers.write_text(f"{USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    chroot("visudo", "-c")
    ssh_dir = root / "home" / USER / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(pubkey)
    (ssh_dir / "authorized_keys").chmod(0o600)
    for p in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(p, UID, UID)
    chroot("ssh-keygen", "-A")
    chroot("apt-get", "clean")
    # no package lists in the image: they would go stale in the cache (hosts run apt-get update)
    lists = root / "var/lib/apt/lists"
    for p in lists.iterdir():
        if p.is_file() and p.name != "lock":
            p.unlink()
    for p in (root / "var/cache/apt").glob("*.bin"):
        p.unlink()
    with contextlib.suppress(FileNotFoundError):
        (etc / "machine-id").write_text("")  # "uninitialized", like Debian's cloud images
    _umount_all_under(root)


def _extracted_root(image: Path) -> Path:
    """One read-only extracted copy of ``image`` (the overlay lower dir), made on demand."""
    lower = _lower_dir(image)
    if lower.is_dir():
        return lower
    with _FileLock(_image_lock(image)):
        if lower.is_dir():
            return lower
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=image.parent))
        try:
            _extract(image, tmp)
            tmp.chmod(0o755)
            os.replace(tmp, lower)
        except BaseException:
            _safe_rmtree(tmp)
            raise
    return lower


def _extract(image: Path, dest: Path) -> None:
    _run(["tar", "--numeric-owner", "-I", "zstd", "-xpf", str(image), "-C", str(dest)],
         f"extracting {image}")


def _overlay_supported() -> bool:
    try:
        return "overlay" in Path("/proc/filesystems").read_text().split()
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# addresses and state (shared by every process on this machine)
# --------------------------------------------------------------------------------------------

def _addr_lock_path(address: str) -> Path:
    return STATE_DIR / f"addr-{address}.lock"


def _state_path(address: str) -> Path:
    return STATE_DIR / f"host-{address}.json"


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _reserve_address(port: int, tries: int = 200) -> tuple[str, _FileLock]:
    """Pick a random free 127.0.X.Y (X, Y in 1..254) and hold its lock file."""
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


# --------------------------------------------------------------------------------------------
# hosts
# --------------------------------------------------------------------------------------------

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
        return client

    def testinfra_host(self) -> Any:
        """A testinfra Host over paramiko, with sudo."""
        import testinfra

        return testinfra.get_host(self._testinfra_spec(), sudo=True)

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


class HostPool:
    """Starts test hosts under ``workdir`` (one dir per host) and stops them all on exit.

    ``mode``: "overlay" (an overlay over one extracted image: ~0.1 s per host), "copy" (a full
    tar extract per host: seconds) or "auto" (overlay where the kernel has it; env
    ``DLRIG_HOSTS_MODE`` overrides).
    """

    def __init__(self, workdir: Path, image: Path | None = None, *, mode: str | None = None,
                 port: int = SSH_PORT, start_timeout: float = START_TIMEOUT):
        _require_root()
        _require_tools("unshare", "ssh", "tar", "zstd", "chroot", "mount", "umount")
        self.workdir = Path(workdir).resolve()
        self.image = Path(image) if image else golden_image()
        self.key_path = image_key(self.image)
        if not self.image.exists():
            raise HostError(f"golden image {self.image} does not exist")
        if not self.key_path.exists():
            raise HostError(f"test key {self.key_path} (beside the image) does not exist")
        self.mode = mode or os.environ.get("DLRIG_HOSTS_MODE") or "auto"
        if self.mode not in ("auto", "overlay", "copy"):
            raise ValueError(f"mode must be auto, overlay or copy, not {self.mode!r}")
        self.port = port
        self.start_timeout = start_timeout
        self.hosts: list[TestHost] = []
        cleanup_stale()

    def __enter__(self) -> "HostPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def _prepare_root(self, hostdir: Path) -> tuple[Path, bool]:
        root = hostdir / "root"
        root.mkdir()
        if self.mode in ("auto", "overlay") and _overlay_supported():
            lower = _extracted_root(self.image)
            (hostdir / "upper").mkdir()
            (hostdir / "work").mkdir()
            res = subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={lower},upperdir={hostdir / 'upper'},workdir={hostdir / 'work'}",
                 str(root)], capture_output=True, text=True, env=_clean_env())
            if res.returncode == 0:
                return root, True
            if self.mode == "overlay":
                raise HostError(f"overlay mount failed: {res.stderr.strip()}")
            log.warning("overlay mount failed (%s); extracting a full copy", res.stderr.strip())
        elif self.mode == "overlay":
            raise HostError("this kernel has no overlay filesystem: use mode='copy'")
        _extract(self.image, root)
        return root, False

    def _personalize(self, host: TestHost) -> None:
        """Hostname, /etc/hosts and this machine's resolv.conf in the host's root."""
        etc = host.root / "etc"
        files = {
            "hostname": f"{host.name}\n",
            "hosts": (f"127.0.0.1\tlocalhost\n{host.address}\t{host.name}\n"
                      "::1\tlocalhost ip6-localhost ip6-loopback\n"
                      "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"),
        }
        with contextlib.suppress(OSError):
            files["resolv.conf"] = Path("/etc/resolv.conf").read_text()
        for name, text in files.items():
            p = etc / name
            if p.is_symlink() or p.exists():
                p.unlink()  # never write through a symlink out of the root
            p.write_text(text)

    def start(self, name: str) -> TestHost:
        """Start one host (waits until SSH answers)."""
        return self.start_many(1, [name])[0]

    def start_many(self, n: int, names: Sequence[str] | None = None) -> list[TestHost]:
        """Start ``n`` hosts in parallel; all or none (a failure stops those already begun)."""
        taken = {h.name for h in self.hosts if not h._stopped}
        if names is None:
            names, i = [], 1
            while len(names) < n:
                if f"h{i}" not in taken:
                    names.append(f"h{i}")
                i += 1
        names = list(names)
        if len(names) != n:
            raise ValueError(f"{n} hosts but {len(names)} names")
        for nm in names:
            if not _NAME_RE.fullmatch(nm):
                raise ValueError(f"bad host name {nm!r}: use lowercase letters, digits and '-'")
        if len(set(names)) != n or taken & set(names):
            raise ValueError(f"host names must be unique: {names}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        new: list[TestHost] = []
        try:
            for nm in names:
                new.append(self._begin(nm))
            for h in new:
                h._wait_ready(self.start_timeout)
        except BaseException:
            for h in new:
                with contextlib.suppress(Exception):
                    h.stop()
            raise
        return new

    def _begin(self, name: str) -> TestHost:
        hostdir = self.workdir / name
        if hostdir.exists():
            raise HostError(f"{hostdir} already exists (another host with this name in {self.workdir}?)")
        address, lock = _reserve_address(self.port)
        host = TestHost(name=name, address=address, key_path=self.key_path,
                        root=hostdir / "root", port=self.port, hostdir=hostdir, _addr_lock=lock)
        self.hosts.append(host)
        try:
            hostdir.mkdir()
            host._write_state()  # before the first mount: cleanup_stale can undo a crash here
            host.root, host._overlay = self._prepare_root(hostdir)
            self._personalize(host)
            host._launch()
        except BaseException:
            with contextlib.suppress(Exception):
                host.stop()
            raise
        return host

    def stop_all(self) -> None:
        """Stop every host of this pool (errors are raised after all were tried)."""
        errors = []
        for h in reversed(self.hosts):
            try:
                h.stop()
            except Exception as e:  # keep stopping the others
                errors.append(f"{h.name}: {e}")
        self.hosts = [h for h in self.hosts if not h._stopped]
        if errors:
            raise HostError("teardown failed: " + "; ".join(errors))


@contextlib.contextmanager
def test_hosts(n: int, workdir: Path, image: Path | None = None,
               names: Sequence[str] | None = None, **pool_kw: Any) -> Iterator[list[TestHost]]:
    """Start ``n`` hosts under ``workdir``; stop and remove them on exit (even on errors)."""
    with HostPool(workdir, image, **pool_kw) as pool:
        yield pool.start_many(n, names)


test_hosts.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def write_inventory(hosts: Iterable[TestHost], path: Path, data: dict[str, Any] | None = None,
                    host_data: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write a pyinfra inventory (plain Python: ``hosts = [(name, {...}), ...]``)."""
    lines = ['"""pyinfra inventory of dlrig test hosts (generated by dlrig.hosts)."""', "",
             "hosts = ["]
    for h in hosts:
        name, entry = h.inventory_entry()
        entry.update(data or {})
        entry.update((host_data or {}).get(name, {}))
        lines.append(f"    ({name!r}, {{")
        lines += [f"        {k!r}: {v!r}," for k, v in entry.items()]
        lines.append("    }),")
    lines.append("]")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def cleanup_stale() -> list[str]:
    """Kill and remove hosts left by crashed runs of this module; returns their addresses.

    Only hosts recorded in STATE_DIR whose address lock is free (its owner is gone) are
    touched; a live owner always holds its lock.
    """
    cleaned = []
    if not STATE_DIR.is_dir():
        return cleaned
    for state_file in sorted(STATE_DIR.glob("host-*.json")):
        address = state_file.name.removeprefix("host-").removesuffix(".json")
        lock = _FileLock(_addr_lock_path(address))
        if not lock.acquire(blocking=False):
            continue  # its owner is alive
        try:
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):
                state_file.unlink(missing_ok=True)
                continue
            # the recorded start times make sure these are still our processes (no pid reuse)
            for pid_key, st_key in (("sshd_pid", "sshd_starttime"), ("pid", "starttime")):
                pid, st = state.get(pid_key), state.get(st_key)
                if _alive(pid, st):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            _wait_gone(state.get("sshd_pid"), state.get("sshd_starttime"))
            _wait_gone(state.get("pid"), state.get("starttime"))
            hostdir = state.get("hostdir")
            if hostdir and hostdir not in ("None", "/") and Path(hostdir).is_absolute():
                _umount_all_under(Path(hostdir))
                _safe_rmtree(Path(hostdir))
            state_file.unlink(missing_ok=True)
            cleaned.append(address)
            log.warning("cleaned up stale test host %s (%s)", state.get("name"), address)
        finally:
            lock.release(unlink=True)
    return cleaned

