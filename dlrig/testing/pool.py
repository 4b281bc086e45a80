"""Many test hosts: :class:`HostPool` starts them from the golden image and stops them all,
:func:`test_hosts` as a context manager, :func:`write_inventory` for pyinfra, and
:func:`cleanup_stale` for hosts left by crashed runs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from dlrig.testing.image import (
    _extract,
    _extracted_root,
    _overlay_supported,
    golden_image,
    image_key,
)
from dlrig.testing.nshost import (
    _NAME_RE,
    SSH_PORT,
    START_TIMEOUT,
    TestHost,
    _addr_lock_path,
    _reserve_address,
    _wait_gone,
)
from dlrig.testing.system import (
    STATE_DIR,
    HostError,
    _alive,
    _clean_env,
    _FileLock,
    _require_root,
    _require_tools,
    _safe_rmtree,
    _umount_all_under,
)

log = logging.getLogger(__name__)


class HostPool:
    """Starts test hosts under ``workdir`` (one dir per host) and stops them all on exit.

    ``mode``: "overlay" (an overlay over one extracted image: ~0.1 s per host), "copy" (a full
    tar extract per host: seconds) or "auto" (overlay where the kernel has it; env
    ``DLRIG_HOSTS_MODE`` overrides). ``binds``: {directory on this machine: absolute path in
    every host's root}, bind-mounted before sshd starts (a data disk that outlives its hosts).
    """

    def __init__(self, workdir: Path, image: Path | None = None, *, mode: str | None = None,
                 port: int = SSH_PORT, start_timeout: float = START_TIMEOUT,
                 binds: dict[Path | str, str] | None = None):
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
        self.binds = {Path(src).resolve(): dst for src, dst in (binds or {}).items()}
        for src, dst in self.binds.items():
            if not src.is_dir() or not dst.startswith("/") or ".." in dst.split("/"):
                raise ValueError(f"binds: {src} must be a directory here, {dst!r} an absolute path in the host")
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

    def _bind(self, host: TestHost) -> None:
        """Bind-mount ``binds`` into the host's root (stop() unmounts them before removing it)."""
        for src, dst in self.binds.items():
            target = host.root / dst.lstrip("/")
            if target.is_symlink():
                raise HostError(f"binds: {dst} is a symlink in the host's root")
            target.mkdir(parents=True, exist_ok=True)
            res = subprocess.run(["mount", "--bind", str(src), str(target)], capture_output=True, text=True,
                                 env=_clean_env())
            if res.returncode != 0:
                raise HostError(f"bind mount {src} -> {dst} failed: {res.stderr.strip()}")

    def start(self, name: str, address: str | None = None) -> TestHost:
        """Start one host (waits until SSH answers); at ``address`` (127.X.Y.Z) when given."""
        return self.start_many(1, [name], addresses=[address] if address else None)[0]

    def start_many(self, n: int, names: Sequence[str] | None = None,
                   addresses: Sequence[str] | None = None) -> list[TestHost]:
        """Start ``n`` hosts in parallel; all or none (a failure stops those already begun).

        ``addresses``: one 127.X.Y.Z per host (e.g. the address of a host stopped before), else random.
        """
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
        if addresses is not None and len(addresses) != n:
            raise ValueError(f"{n} hosts but {len(addresses)} addresses")
        self.workdir.mkdir(parents=True, exist_ok=True)
        new: list[TestHost] = []
        try:
            for i, nm in enumerate(names):
                new.append(self._begin(nm, addresses[i] if addresses else None))
            for h in new:
                h._wait_ready(self.start_timeout)
        except BaseException:
            for h in new:
                with contextlib.suppress(Exception):
                    h.stop()
            raise
        return new

    def _begin(self, name: str, address: str | None = None) -> TestHost:
        hostdir = self.workdir / name
        if hostdir.exists():
            raise HostError(f"{hostdir} already exists (another host with this name in {self.workdir}?)")
        address, lock = _reserve_address(self.port, address=address)
        host = TestHost(name=name, address=address, key_path=self.key_path,
                        root=hostdir / "root", port=self.port, hostdir=hostdir, _addr_lock=lock)
        self.hosts.append(host)
        try:
            hostdir.mkdir()
            host._write_state()  # before the first mount: cleanup_stale can undo a crash here
            host.root, host._overlay = self._prepare_root(hostdir)
            self._personalize(host)
            self._bind(host)
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
    """Write a pyinfra inventory (plain Python: ``hosts = [("@dlrig-ssh/NAME", {...}), ...]``).

    Hosts go through dlrig's connector (TCP_NODELAY, dlrig/engine/connector.py); pyinfra calls
    each one NAME."""
    lines = ['"""pyinfra inventory of dlrig test hosts (generated by dlrig.testing.nshost)."""', "",
             "hosts = ["]
    for h in hosts:
        name, entry = h.inventory_entry()
        entry.update(data or {})
        entry.update((host_data or {}).get(name, {}))
        lines.append(f"    ({'@dlrig-ssh/' + name!r}, {{")
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
