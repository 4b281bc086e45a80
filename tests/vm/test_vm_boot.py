"""The VM tier's BIOS machine itself: GRUB boots the kernel, systemd is PID 1, its reboots are
checked where tests reboot it (the workstation fixture, dualboot). (UEFI with Secure Boot: test_vm_uefi.py.)"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.vm


def test_bios_vm_boots_grub_kernel_and_systemd(shared_vm):
    v = shared_vm
    assert v.ssh("ps -o comm= -p 1").stdout.strip() == "systemd"
    state = v.ssh("systemctl is-system-running --wait", check=False).stdout.strip()
    assert state in ("running", "degraded"), v.ssh("systemctl --failed", check=False).stdout
    assert v.ssh("test -d /sys/firmware/efi && echo efi || echo bios").stdout.strip() == "bios"
    assert v.ssh("findmnt -no SOURCE /").stdout.strip() == "/dev/vda3"
    serial = v.serial_log.read_text(errors="replace")
    assert "GRUB" in serial or "Booting `Debian" in serial, serial[-2000:]
    assert "Linux version" in serial and "systemd" in serial
    print(f"BIOS boot to SSH: {v.boot_seconds:.1f} s")

