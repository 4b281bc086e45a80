"""The VM tier's BIOS machine itself: GRUB boots the kernel, systemd is PID 1, ``reboot()`` gives a
new boot. (UEFI with Secure Boot: test_vm_uefi.py.)"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.vm


def test_bios_vm_boots_grub_kernel_and_systemd_and_reboots(shared_vm):
    v = shared_vm
    assert v.ssh("ps -o comm= -p 1").stdout.strip() == "systemd"
    state = v.ssh("systemctl is-system-running --wait", check=False).stdout.strip()
    assert state in ("running", "degraded"), v.ssh("systemctl --failed", check=False).stdout
    assert v.ssh("test -d /sys/firmware/efi && echo efi || echo bios").stdout.strip() == "bios"
    assert v.ssh("findmnt -no SOURCE /").stdout.strip() == "/dev/vda3"
    serial = v.serial_log.read_text(errors="replace")
    assert "GRUB" in serial or "Booting `Debian" in serial, serial[-2000:]
    assert "Linux version" in serial and "systemd" in serial
    before = v.boot_id()
    seconds = v.reboot()
    assert v.boot_id() != before
    assert v.serial_log.read_text(errors="replace").count("Linux version") == 2
    print(f"BIOS reboot to SSH: {seconds:.1f} s")

