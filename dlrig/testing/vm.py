"""Booted test machines: qemu (``-accel tcg``: this machine's KVM guests hang) on a copy-on-write
overlay of a cached VM image (:mod:`.vmimage`), reached over real SSH through user-mode networking
with ``hostfwd`` on 127.0.0.1 only (no bridges, no taps).

Typical use::

    from dlrig.testing.vm import vm

    with vm(Path("/tmp/work"), firmware="uefi", forwards=[8888]) as v:
        v.ssh("mokutil --sb-state")
        v.reboot()                      # waits for a new boot id
        print(v.serial_log.read_text()) # the serial console since power-on

A :class:`VM` is a :class:`~dlrig.testing.nshost.TestHost` (same SSH helpers, ``inventory_entry``),
so :func:`~dlrig.testing.pool.write_inventory` writes pyinfra inventories of VMs too.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from dlrig.testing.nshost import TestHost
from dlrig.testing.system import HostError, _proc_starttime, _require_root, _require_tools, _run
from dlrig.testing.vmimage import FIRMWARES, HOST_TOOLS, vm_image, vm_image_key

log = logging.getLogger(__name__)

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
#: OVMF's variable store with Microsoft's keys enrolled (Secure Boot ON); copied per VM.
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
BOOT_TIMEOUT = float(os.environ.get("DLRIG_VM_BOOT_TIMEOUT", "420"))  # TCG on a busy 2-core box
MEMORY_MB = 2048
CPUS = 2


#: qemu runs under ``setpriv --pdeathsig KILL`` (util-linux): the kernel kills it when the thread
#: that started it ends, so a test run killed by a signal or a timeout (SIGTERM, SIGKILL: no Python
#: cleanup runs) leaves no qemu behind. Each VM's watcher thread starts all its qemu processes and
#: lives exactly as long as they do.
PDEATHSIG = ("setpriv", "--pdeathsig", "KILL", "--")

#: qemu process groups started by this process and not yet ended (killed at exit: :func:`_reap`)
_GROUPS: set[int] = set()
_GROUPS_LOCK = threading.Lock()


def _spawn(argv: list[str], logf) -> subprocess.Popen:
    """Start ``argv`` in a new session (its own process group, pgid = its pid), killed with this
    process (:data:`PDEATHSIG`) and at exit (:func:`_reap`)."""
    proc = subprocess.Popen([*PDEATHSIG, *argv], stdin=subprocess.DEVNULL, stdout=logf,
                            stderr=subprocess.STDOUT, start_new_session=True)
    with _GROUPS_LOCK:
        _GROUPS.add(proc.pid)
    return proc


def _kill_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL it after ``grace`` seconds; reap ``proc``."""
    pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 15)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with _GROUPS_LOCK:
        if pgid in _GROUPS:  # not yet forgotten by the watcher: whatever else is left in the group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        _GROUPS.discard(pgid)


@atexit.register
def _reap() -> None:
    """At interpreter exit: kill every qemu process group still running (VMs never stopped)."""
    with _GROUPS_LOCK:
        groups = sorted(_GROUPS)
        _GROUPS.clear()
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def missing_requirements() -> str | None:
    """Why VMs cannot run here (a sentence), or None when they can."""
    try:
        _require_root()
        _require_tools(*HOST_TOOLS, PDEATHSIG[0])
        for fd in (OVMF_CODE, OVMF_VARS):
            if not fd.exists():
                raise HostError(f"{fd} missing: apt-get install ovmf")
    except HostError as e:
        return str(e)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(eq=False)
class VM(TestHost):
    """One booted VM. ``forwards`` maps a guest TCP port to its 127.0.0.1 port on this machine."""

    firmware: str = "bios"
    disk: Path | None = None
    forwards: dict[int, int] = field(default_factory=dict)
    #: ports forwarded to the same port number in the guest (a port sshd may move to: pyinfra's
    #: ssh_port is both the port it connects to and the port the ssh role gives sshd)
    mirrored: list[int] = field(default_factory=list)
    memory_mb: int = MEMORY_MB
    cpus: int = CPUS
    boot_seconds: float | None = None  # power-on to SSH of the last (re)boot
    power_cycles: int = 0  # guest reboots (each one a fresh qemu process on the same disk)
    _qemu: subprocess.Popen | None = field(default=None, repr=False)
    _watcher: threading.Thread | None = field(default=None, repr=False)
    _stopping: bool = field(default=False, repr=False)
    _dead: str | None = field(default=None, repr=False)

    @property
    def serial_log(self) -> Path:
        """The serial console (firmware, GRUB, kernel, systemd, getty) since power-on."""
        assert self.hostdir is not None
        return self.hostdir / "serial.log"

    @property
    def log_path(self) -> Path:
        assert self.hostdir is not None
        return self.hostdir / "qemu.log"

    @property
    def running(self) -> bool:
        return self._qemu is not None and self._qemu.poll() is None

    def qemu_argv(self) -> list[str]:
        assert self.hostdir is not None and self.disk is not None
        fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in self.forwards.items())
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max",
                "-smp", str(self.cpus),
                "-m", str(self.memory_mb), "-display", "none", "-monitor", "none",
                "-chardev", f"file,id=ser0,path={self.serial_log},append=on", "-serial", "chardev:ser0",
                # a guest reboot ends this qemu and the watcher powers the VM on again: TCG guests
                # here hung after a warm reset (GRUB loaded the kernel, which never printed)
                "-no-reboot", "-no-user-config", "-nodefaults",
                # cache=unsafe: the overlay is thrown away with the VM; a guest fsync need not reach this disk
                "-drive", f"file={self.disk},format=qcow2,if=virtio,discard=unmap,cache=unsafe",
                "-netdev", f"user,id=n0,{fwd}", "-device", "virtio-net-pci,netdev=n0",
                "-device", "virtio-rng-pci"]
        if self.firmware == "uefi":
            argv += ["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
                     "-global", "ICH9-LPC.disable_s3=1",
                     "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,unit=1,file={self.hostdir / 'OVMF_VARS.fd'}"]
        else:
            argv += ["-machine", "pc"]
        return argv

    # -- lifecycle -------------------------------------------------------------------------
    def _launch(self) -> None:
        with open(self.log_path, "ab") as logf:
            self._qemu = _spawn(self.qemu_argv(), logf)
        self.pid = self._qemu.pid
        self._starttime = _proc_starttime(self.pid)

    def _power_on(self) -> None:
        """Start a watcher thread that starts qemu, and again whenever the guest reboots; return
        once the first qemu runs. (The watcher starts them all: qemu's parent-death signal follows
        the thread that started it, and the watcher outlives every qemu it starts.)"""
        started = threading.Event()
        self._watcher = threading.Thread(target=self._watch, args=(started,), name=f"vm-{self.name}",
                                         daemon=True)
        self._watcher.start()
        started.wait()
        if self._qemu is None:
            raise HostError(f"VM {self.name}: qemu did not start: {self._dead}")

    def _watch(self, started: threading.Event) -> None:
        try:
            self._launch()
        except OSError as e:
            self._dead = f"qemu did not start: {e}"
            return
        finally:
            started.set()
        while True:
            proc = self._qemu
            assert proc is not None
            rc = proc.wait()
            with _GROUPS_LOCK:  # ended and reaped: its pid may be reused, never signal it again
                _GROUPS.discard(proc.pid)
            if self._stopping:
                return
            if rc != 0:
                self._dead = f"qemu exited with {rc}"
                return
            self.power_cycles += 1  # -no-reboot: the guest reset (or powered off): power on again
            self._launch()

    def _log_tail(self) -> str:
        out = []
        for p in (self.log_path, self.serial_log):
            with contextlib.suppress(OSError):
                out.append(f"--- {p.name} ---\n" + p.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def _wait_ready(self, timeout: float = BOOT_TIMEOUT, not_boot_id: str | None = None) -> None:
        """Wait until SSH logs in (on a boot other than ``not_boot_id``), or raise with the logs."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = ""
        while True:
            if self._dead or self._stopping:
                raise HostError(f"VM {self.name}: {self._dead or 'stopped'}\n{self._log_tail()}")
            try:
                with socket.create_connection((self.address, self.port), timeout=2):
                    pass
                res = subprocess.run(self.ssh_argv("cat /proc/sys/kernel/random/boot_id"),
                                     capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
                if res.returncode == 0 and res.stdout.strip() and res.stdout.strip() != not_boot_id:
                    self.boot_seconds = time.monotonic() - t0
                    return
                last = f"ssh: exit {res.returncode}: {res.stderr.strip()[-300:]}"
            except (OSError, subprocess.TimeoutExpired) as e:
                last = f"connect: {e}"
            if time.monotonic() > deadline:
                raise HostError(f"VM {self.name} ({self.address}:{self.port}) did not answer SSH within "
                                f"{timeout:.0f} s ({last})\n{self._log_tail()}")
            time.sleep(1)

    def boot_id(self) -> str:
        return self.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def reboot(self, timeout: float = BOOT_TIMEOUT) -> float:
        """``systemctl reboot`` in the guest; wait for SSH on a new boot. Returns the seconds taken."""
        before = self.boot_id()
        self.ssh("sudo -n systemctl reboot", check=False, timeout=30)
        self._wait_ready(timeout, not_boot_id=before)
        return self.boot_seconds or 0.0

    def wait_rebooted(self, before: str, timeout: float = BOOT_TIMEOUT) -> float:
        """Wait for a reboot someone else started (boot id other than ``before``)."""
        self._wait_ready(timeout, not_boot_id=before)
        return self.boot_seconds or 0.0

    def stop(self) -> None:
        """Power off (kill qemu) and remove the overlay. Idempotent."""
        if self._stopped:
            return
        self._stopping = True
        if self._watcher is not None:
            time.sleep(0.5)  # a relaunch under way finishes: its process is the one to end
        if self._qemu is not None:
            _kill_group(self._qemu)  # qemu's whole process group, also when qemu itself has ended
        if self._watcher is not None:
            self._watcher.join(timeout=15)
        self._evict_testinfra()
        if self.disk is not None:
            self.disk.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.hostdir / "OVMF_VARS.fd").unlink()  # type: ignore[operator]
        self._stopped = True


def start_vm(workdir: Path, firmware: str = "bios", name: str = "vm", forwards: Iterable[int] = (),
             image: Path | None = None, memory_mb: int = MEMORY_MB, cpus: int = CPUS, mirrored: int = 0) -> VM:
    """Boot a VM on a fresh qcow2 overlay of the cached image; returns once SSH answers."""
    if firmware not in FIRMWARES:
        raise HostError(f"firmware {firmware!r}: use one of {', '.join(FIRMWARES)}")
    image = image or vm_image(firmware)
    hostdir = Path(workdir) / name
    hostdir.mkdir(parents=True, exist_ok=True)
    disk = hostdir / "disk.qcow2"
    _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2", str(disk)],
         "qemu-img create (overlay)")
    if firmware == "uefi":
        shutil.copyfile(OVMF_VARS, hostdir / "OVMF_VARS.fd")
    last: Exception | None = None
    for _ in range(3):  # a port taken between _free_port() and qemu's bind: try new ports
        ports = {22: _free_port(), **{int(g): _free_port() for g in forwards}}
        same = [_free_port() for _ in range(mirrored)]
        ports.update({p: p for p in same})
        v = VM(name=name, address="127.0.0.1", key_path=vm_image_key(image), root=hostdir,
               port=ports[22], hostdir=hostdir, firmware=firmware, disk=disk, forwards=ports,
               memory_mb=memory_mb, cpus=cpus, mirrored=same)
        v.ssh_config.write_text(
            f"Host *\n  User {v.user}\n  IdentityFile {v.key_path}\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
        v._power_on()
        try:
            v._wait_ready()
            log.info("VM %s (%s) answered SSH after %.1f s", name, firmware, v.boot_seconds)
            return v
        except HostError as e:
            last = e
            v.stop()
            if "host forwarding" not in v._log_tail():  # the port was taken: new ports
                raise
            disk.unlink(missing_ok=True)
            _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2", str(disk)],
                 "qemu-img create (overlay)")
    raise HostError(f"VM {name}: no free ports: {last}")


@contextlib.contextmanager
def vm(workdir: Path, firmware: str = "bios", name: str = "vm", forwards: Iterable[int] = (),
       **kw) -> Iterator[VM]:
    """``with vm(workdir, firmware) as v:`` a booted VM, powered off and removed at the end."""
    v = start_vm(workdir, firmware, name, forwards, **kw)
    try:
        yield v
    finally:
        v.stop()


__all__ = ["VM", "vm", "start_vm", "missing_requirements", "vm_image"]
