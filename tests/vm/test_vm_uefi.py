"""UEFI with Secure Boot ON: OVMF (``OVMF_CODE_4M.secboot.fd``) with a per-VM copy of its
Microsoft-keys variable store (``OVMF_VARS_4M.ms.fd``) boots Debian's signed shim -> signed GRUB ->
signed kernel, so ``mokutil --sb-state`` is real, and the roles that look at it take their real paths.

Stand-in: the ESP's ``EFI/Microsoft/Boot/bootmgfw.efi`` is a placeholder os-prober finds, not Windows.
"""

from __future__ import annotations

import pytest

from tests.vm.helpers import apply, dlrig, inventory, out, plan_changes

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def uefi_vm(tmp_path_factory):
    from tests.vm.conftest import _boot, _require_vms
    from dlrig.testing import vm as VMMOD

    _require_vms()
    VMMOD.vm_image("uefi")
    v = _boot(tmp_path_factory.mktemp("uefi-vm"), "uefi", "uefi")
    try:
        yield v
    finally:
        v.stop()


def test_uefi_vm_boots_shim_and_signed_grub_with_secure_boot_on(uefi_vm):
    v = uefi_vm
    assert v.ssh("mokutil --sb-state", check=False).stdout.strip() == "SecureBoot enabled"
    dmesg = v.ssh("sudo -n dmesg").stdout
    assert "secureboot: Secure boot enabled" in dmesg, dmesg[:3000]
    assert "Kernel is locked down from EFI Secure Boot" in dmesg
    assert v.ssh("findmnt -no FSTYPE /boot/efi").stdout.strip() == "vfat"
    assert "shim" in v.serial_log.read_text(errors="replace").lower() or "BdsDxe" in v.serial_log.read_text(
        errors="replace")


def test_nvidia_driver_on_debian_refuses_dkms_under_secure_boot_with_the_steps(uefi_vm, tmp_path):
    """Debian's driver is DKMS-built: with Secure Boot really on and no driver_mok_password the role
    refuses before changing anything, and says what to do. (The card is named with driver_gpus:
    the VM has no NVIDIA GPU.)"""
    v = uefi_vm
    inv = inventory(v, tmp_path / "inv.py", driver_gpus=["10de:1e84"])
    r = dlrig("apply", str(inv), "--roles", "nvidia_driver", "--yes", label="uefi: nvidia_driver refusal")
    text = r.stdout + r.stderr
    assert r.returncode != 0, out(r)
    assert "Secure Boot is on" in text and "DKMS" in text, out(r)
    assert "driver_mok_password" in text  # the steps: enrol a MOK, or a signed source, or SB off
    assert v.ssh("dpkg-query -W -f='${Status}' nvidia-driver 2>/dev/null", check=False).stdout.strip() \
        in ("", "unknown ok not-installed")
    assert v.ssh("mokutil --list-new", check=False).stdout.strip() == ""  # nothing queued


def test_dualboot_on_uefi_lists_windows_boot_manager_from_the_esp(uefi_vm, tmp_path):
    """os-prober (Debian 12's 1.81, ``mounted/efi/20microsoft``) lists the ESP's Windows only when
    ``EFI/Microsoft/Boot`` holds both ``bootmgfw.efi`` and ``BCD``, as a real Windows ESP does; the
    image's stand-in has both (vmimage._windows), and os-prober itself decides, on the booted ESP."""
    v = uefi_vm
    assert sorted(v.ssh("sudo -n ls /boot/efi/EFI/Microsoft/Boot").stdout.split()) == ["BCD", "bootmgfw.efi"]
    inv = inventory(v, tmp_path / "inv.py", grub_timeout=4, grub_default="windows")
    # 1st apply: no Windows entry in grub.cfg yet -> GRUB_DEFAULT=saved and update-grub finds it;
    # 2nd apply: grub_default=windows names that entry
    apply(inv, "dualboot", "uefi: dualboot apply")
    cfg = v.ssh("sudo -n cat /boot/grub/grub.cfg").stdout
    assert "menuentry 'Windows Boot Manager (on /dev/vda1)'" in cfg, cfg[-3000:]
    assert "chainloader /EFI/Microsoft/Boot/bootmgfw.efi" in cfg, cfg[-3000:]
    apply(inv, "dualboot", "uefi: dualboot apply again")
    cfg = v.ssh("sudo -n cat /boot/grub/grub.cfg").stdout
    assert 'set default="Windows Boot Manager (on /dev/vda1)"' in cfg, cfg[:3000]
    assert "set timeout=4" in cfg
    assert plan_changes(inv, "dualboot") == []
