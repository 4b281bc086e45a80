"""Fixtures of the VM tier (marker ``vm``): booted Debian 12 machines under qemu TCG.

``shared_vm`` boots ONE BIOS VM for the whole session: the tests that use it leave it working (SSH
on port 22, booted) and may reboot it. Tests that need a fresh machine, another firmware or that
move sshd boot their own with ``make_vm``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dlrig.testing import vm as VMMOD
from dlrig.testing.system import HostError
from tests.vm.helpers import TIMINGS

BOOT_TIMES: dict[str, list[float]] = {}


def _require_vms() -> None:
    reason = VMMOD.missing_requirements()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI cannot run the VM tier: {reason}")
        pytest.skip(f"VMs unavailable: {reason}")


def _boot(workdir: Path, firmware: str, name: str, forwards=()) -> VMMOD.VM:
    t0 = time.monotonic()
    v = VMMOD.start_vm(workdir, firmware, name, forwards)
    BOOT_TIMES.setdefault(firmware, []).append(time.monotonic() - t0)
    return v


@pytest.fixture(scope="session")
def shared_vm(tmp_path_factory) -> Iterator[VMMOD.VM]:
    """One booted BIOS VM shared by the tests that do not conflict (22, 8888 and 8080 forwarded)."""
    _require_vms()
    VMMOD.vm_image("bios")  # built (or found) before the boot clock starts
    v = _boot(tmp_path_factory.mktemp("shared-vm"), "bios", "shared", forwards=(8888, 8080))
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
