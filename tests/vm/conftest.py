"""Fixtures of the VM tier (marker ``vm``): booted Debian 12 machines under qemu TCG.

``shared_vm`` boots ONE BIOS VM for the whole session: the tests that use it leave it working (SSH
on port 22, booted) and may reboot it. Tests that need a fresh machine, another firmware or that
move sshd boot their own with ``make_vm``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dlrig.engine import passwords
from dlrig.testing import image as IMAGE
from dlrig.testing import vm as VMMOD
from dlrig.testing import vmimage as VMIMAGE
from dlrig.testing.system import HostError
from tests.fixtures import pyindex
from tests.fixtures.miniforge_standin import build_installer
from tests.vm.helpers import TIMINGS, dlrig, inventory, out

#: qemu user-mode networking's address of this machine's 127.0.0.1, as the guest sees it
HOST_FROM_GUEST = "10.0.2.2"
TORCH = "2.13.0"  # the CPU wheel on this machine's disk (/opt/wheels)
TORCHVISION = "0.28.0"
PASSWORD = "correct horse battery staple"
MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))

BOOT_TIMES: dict[str, list[float]] = {}


def _require_vms() -> None:
    reason = VMMOD.missing_requirements()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI cannot run the VM tier: {reason}")
        pytest.skip(f"VMs unavailable: {reason}")


def _boot(workdir: Path, firmware: str, name: str, forwards=(), mirrored: int = 0,
          suite: str = VMIMAGE.SUITE, **kw) -> VMMOD.VM:
    # the image built (or found) before the boot clock starts
    kw.setdefault("image", VMMOD.vm_image(firmware, suite=suite))
    t0 = time.monotonic()
    v = VMMOD.start_vm(workdir, firmware, name, forwards, mirrored=mirrored, **kw)
    label = firmware if suite == VMIMAGE.SUITE else f"{firmware} ({suite})"
    BOOT_TIMES.setdefault(label, []).append(time.monotonic() - t0)
    return v


@pytest.fixture(scope="session")
def shared_vm(tmp_path_factory) -> Iterator[VMMOD.VM]:
    """One booted BIOS VM shared by the tests that do not conflict (22, 8888, 8080 and one mirrored
    port forwarded)."""
    _require_vms()
    VMMOD.vm_image("bios")  # built (or found) before the boot clock starts
    v = _boot(tmp_path_factory.mktemp("shared-vm"), "bios", "shared", forwards=(8888, 8080), mirrored=1)
    try:
        yield v
    finally:
        v.stop()


@pytest.fixture
def make_vm(tmp_path_factory) -> Iterator[Callable[..., VMMOD.VM]]:
    """Factory: ``make_vm(firmware="bios", forwards=())`` -> a fresh booted VM, stopped at test end."""
    _require_vms()
    started: list[VMMOD.VM] = []

    def make(firmware: str = "bios", forwards=(), name: str | None = None) -> VMMOD.VM:
        VMMOD.vm_image(firmware)
        v = _boot(tmp_path_factory.mktemp(f"vm-{firmware}"), firmware, name or f"{firmware}{len(started)}",
                  forwards)
        started.append(v)
        return v

    yield make
    for v in started:
        try:
            v.stop()
        except HostError as e:  # pragma: no cover - teardown report
            print(f"VM teardown: {e}")


def pytest_terminal_summary(terminalreporter):
    if BOOT_TIMES:
        terminalreporter.write_line("VM boot to SSH (s): " + "; ".join(
            f"{fw}: {', '.join(f'{t:.1f}' for t in ts)}" for fw, ts in sorted(BOOT_TIMES.items())))
    if TIMINGS:
        terminalreporter.write_line("VM steps (s): " + "; ".join(f"{k} {v:.1f}" for k, v in TIMINGS.items()))


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Iterator[dict]:
    """The stand-in Miniforge installer and the real torch CPU index, served on 127.0.0.1 and
    reached by the VMs as http://10.0.2.2:PORT (qemu user-mode networking's alias of it)."""
    root = tmp_path_factory.mktemp("vm-served")
    installer = build_installer(root / "miniforge")
    index = pyindex.build_index(IMAGE.default_cache_dir() / f"torch-index-{TORCH}-cpu",
                                [f"torch=={TORCH}", f"torchvision=={TORCHVISION}"])
    os.symlink(index, root / "torch")
    with pyindex.serve(root) as url:
        guest = url.replace("127.0.0.1", HOST_FROM_GUEST)
        yield {"installer_url": f"{guest}/miniforge/{installer.name}",
               "installer_sha256": hashlib.sha256(installer.read_bytes()).hexdigest(),
               "index_url": f"{guest}/torch/simple"}


@dataclass
class Workstation:
    vm: VMMOD.VM
    inv: Path
    data: dict
    results: dict = field(default_factory=dict)  # step -> CompletedProcess


#: seconds the workstation's apply of every role may take under TCG on a loaded 2-core machine
WORKSTATION_APPLY_TIMEOUT = int(os.environ.get("DLRIG_VM_APPLY_TIMEOUT", "5400"))
#: guest RAM of the workstation VM: pip unpacks torch (~800 MB of wheels) and apt's dpkg runs beside it
WORKSTATION_MEMORY_MB = 4096


@pytest.fixture(scope="session")
def workstation_vm(tmp_path_factory) -> Iterator[VMMOD.VM]:
    """A fresh BIOS VM of its own for the whole workstation (vm_full); 22 and 8888 forwarded."""
    _require_vms()
    VMMOD.vm_image("bios")
    v = _boot(tmp_path_factory.mktemp("workstation-vm"), "bios", "workstation", forwards=(8888,),
              memory_mb=WORKSTATION_MEMORY_MB)
    try:
        yield v
    finally:
        v.stop()


def _timed(label: str, fn, *args, **kw):
    t0 = time.monotonic()
    try:
        return fn(*args, **kw)
    finally:
        TIMINGS[label] = time.monotonic() - t0


@pytest.fixture(scope="session")
def workstation(workstation_vm, served, tmp_path_factory) -> Workstation:
    """A fresh VM taken to the whole CPU-only workstation: ``dlrig apply`` of every role, ``verify``,
    reboot, ``verify``, ``plan``; each step timed (TIMINGS, and every output line stamped in
    helpers.STEP_LOG). Tests assert on it.

    One admin's choice made before apply, as a person might on a machine they set up: man-db's
    index is not rebuilt on every package install (``man-db/auto-update false``; under TCG each
    rebuild costs minutes)."""
    v = workstation_vm
    _timed("workstation: man-db auto-update off", v.ssh,
           "echo 'man-db man-db/auto-update boolean false' | sudo -n debconf-set-selections")
    data_uuid = v.ssh("sudo -n blkid -o value -s UUID /dev/vda2").stdout.strip()
    data = {
        "cpu_only": True,
        "extra_ca_certificates": MACHINE_CAS,
        "ssh_authorized_keys": [_pubkey(v.key_path)],
        "conda_installer_url": served["installer_url"],
        "conda_installer_sha256": served["installer_sha256"],
        "pip_index_url": served["index_url"],
        "torch_version": TORCH,
        "jupyter_password_hash": passwords.hash_password(PASSWORD),
        # every ssh from this machine reaches the VM from one address (10.0.2.2): no ufw limit
        "firewall_ssh_limit": False,
        "rtc_local": True, "grub_timeout": 7, "grub_default": "linux",
        "data_disks": [{"uuid": data_uuid, "mount": "/mnt/data"}],
    }
    inv = inventory(v, tmp_path_factory.mktemp("workstation") / "inv.py", **data)
    ws = Workstation(v, inv, data)
    # -v: pyinfra's per-operation lines, each stamped in STEP_LOG (where the time goes)
    # measured 2026-11-28 at load 9-18: base 915 s, pytorch 1136 s, and at 3000 s still in dualboot
    ws.results["apply"] = r = dlrig("apply", str(inv), "--yes", "-v", label="workstation: apply (every role)",
                                    timeout=WORKSTATION_APPLY_TIMEOUT)
    assert r.returncode == 0, out(r)
    ws.results["verify"] = dlrig("verify", str(inv), "--json", label="workstation: verify")
    t0 = time.monotonic()
    before = v.boot_id()
    v.reboot()
    TIMINGS["workstation: reboot"] = time.monotonic() - t0
    assert v.boot_id() != before
    ws.results["verify after reboot"] = dlrig("verify", str(inv), "--json",
                                              label="workstation: verify after reboot")
    ws.results["plan"] = dlrig("plan", str(inv), "--json", label="workstation: plan after reboot")
    return ws


def _pubkey(key: Path) -> str:
    from subprocess import run
    return run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True).stdout.strip()


def verify_results(proc) -> dict[str, dict]:
    """``dlrig verify --json``: check name -> result."""
    try:
        return {r["check"]: r for r in json.loads(proc.stdout)["results"]}
    except (ValueError, KeyError):
        raise AssertionError(out(proc)) from None


# -- the config roles on one booted BIOS VM (tests/vm/test_vm_roles.py) --------------------------

#: The roles ``configured_vm`` applies: config only (no base/conda/torch: minutes, not the
#: workstation's 45+ under TCG).
CONFIG_ROLES = "ssh,firewall,power,dualboot,unattended_upgrades"


@dataclass
class Configured:
    vm: VMMOD.VM
    inv: Path
    data: dict
    roles: str = CONFIG_ROLES


@pytest.fixture(scope="session")
def configured_vm(tmp_path_factory) -> Iterator[Configured]:
    """Its own booted BIOS VM (8080 and one mirrored port forwarded) with only the config roles
    applied (:data:`CONFIG_ROLES`), then rebooted (boot id checked), so the tests see what survives
    a boot. Each step timed (TIMINGS). Powered off after the last test that uses it
    (:func:`pytest_runtest_teardown`), so no two VMs of this session run at once."""
    _require_vms()
    VMMOD.vm_image("bios")
    v = _boot(tmp_path_factory.mktemp("configured-vm"), "bios", "configured", forwards=(8080,), mirrored=1)
    try:
        data_uuid = v.ssh("sudo -n blkid -o value -s UUID /dev/vda2").stdout.strip()
        data = {
            "ssh_authorized_keys": [_pubkey(v.key_path)],
            # every ssh from this machine reaches the VM from one address (10.0.2.2): no ufw limit
            "firewall_ssh_limit": False,
            "rtc_local": True, "grub_timeout": 7, "grub_default": "linux",
            "data_disks": [{"uuid": data_uuid, "mount": "/mnt/data"}],
        }
        inv = inventory(v, tmp_path_factory.mktemp("configured") / "inv.py", **data)
        r = dlrig("apply", str(inv), "--roles", CONFIG_ROLES, "--yes", timeout=1800,
                  label=f"configured_vm: apply {CONFIG_ROLES}")
        assert r.returncode == 0, out(r)
        before = v.boot_id()
        t0 = time.monotonic()
        v.reboot()
        TIMINGS["configured_vm: reboot"] = time.monotonic() - t0
        assert v.boot_id() != before
        yield Configured(v, inv, data)
    finally:
        v.stop()


#: session VM fixtures powered off right after the last test that uses them (not at session end)
_EARLY_STOP = ("configured_vm", "shared_vm", "workstation_vm")
_LAST_USER = pytest.StashKey[list]()


def pytest_collection_modifyitems(items):
    last: dict[str, pytest.Item] = {}
    for item in items:
        for name in _EARLY_STOP:
            if name in getattr(item, "fixturenames", ()):
                last[name] = item
    for name, item in last.items():
        item.stash.setdefault(_LAST_USER, []).append(name)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """Stop a session VM after its last test (before pytest's own teardown): a VM idling under TCG
    still takes CPU from the next one. Its fixture's finalizer stops it again (a no-op)."""
    for name in item.stash.get(_LAST_USER, []):
        v = (getattr(item, "funcargs", None) or {}).get(name)  # None: never set up (skip, error)
        v = getattr(v, "vm", v)
        if isinstance(v, VMMOD.VM):
            v.stop()
