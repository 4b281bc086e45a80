"""The VM tier's machines themselves: each firmware boots its real bootloader, systemd is PID 1,
``reboot()`` gives a new boot, and under OVMF with Microsoft's keys Secure Boot is really ON."""

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


def test_uefi_vm_boots_shim_and_signed_grub_with_secure_boot_on(make_vm):
    v = make_vm("uefi")
    assert v.ssh("mokutil --sb-state", check=False).stdout.strip() == "SecureBoot enabled"
    dmesg = v.ssh("sudo -n dmesg").stdout
    assert "secureboot: Secure boot enabled" in dmesg, dmesg[:3000]
    assert "Kernel is locked down from EFI Secure Boot" in dmesg or "lockdown" in dmesg
    assert v.ssh("findmnt -no FSTYPE /boot/efi").stdout.strip() == "vfat"
    assert "bootmgfw.efi" in v.ssh("sudo -n ls /boot/efi/EFI/Microsoft/Boot").stdout
    seconds = v.reboot()
    assert v.ssh("mokutil --sb-state", check=False).stdout.strip() == "SecureBoot enabled"
    print(f"UEFI (Secure Boot) boot to SSH: {v.boot_seconds:.1f} s, reboot {seconds:.1f} s")
