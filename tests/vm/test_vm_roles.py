"""Roles on ONE shared booted BIOS VM (``shared_vm``): what only a machine that runs systemd as PID 1,
boots through GRUB and reboots can show. Each test leaves the VM booted with SSH on port 22.

Real here: qemu (TCG), GRUB (grub-pc), the Debian kernel, systemd, logind, timedated, ufw/iptables
in the VM's own kernel, os-prober, the ntfs3 driver. Stand-ins: the "Windows" partitions hold only
what os-prober reads (``bootmgr``, ``Boot/BCD``), so Windows is listed, never booted.
"""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

from tests.vm.helpers import apply, inventory, plan_changes

pytestmark = pytest.mark.vm


def test_power_suspend_refused_and_masks_survive_reboot(shared_vm, tmp_path):
    v = shared_vm
    inv = inventory(v, tmp_path / "inv.py")
    apply(inv, "power", "power: apply")
    before = v.boot_id()
    r = v.ssh("sudo -n systemctl suspend", check=False, timeout=60)
    assert r.returncode != 0 and "masked" in r.stderr.lower(), r.stderr
    assert v.boot_id() == before  # still up: nothing suspended
    v.reboot()
    for target in ("sleep", "suspend", "hibernate", "hybrid-sleep"):
        assert v.ssh(f"systemctl is-enabled {target}.target", check=False).stdout.strip() == "masked"
    r = v.ssh("sudo -n systemctl hibernate", check=False, timeout=60)
    assert r.returncode != 0 and "masked" in r.stderr.lower(), r.stderr
    assert plan_changes(inv, "power", "power: re-plan after reboot") == []


def _http_ok(port: int) -> bool:
    """Does a GET through the forwarded port get an HTTP answer? (slirp accepts the TCP connection
    on this side before the guest does, so a blocked port shows as a reset or no answer.)"""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=8) as r:
            return r.status == 200
    except (OSError, socket.timeout):
        return False


def test_firewall_in_the_vm_kernel_refuses_unless_allowed(shared_vm, tmp_path):
    v = shared_vm
    port = v.forwards[8080]
    v.ssh("sudo -n systemd-run --unit dlrig-web --property=WorkingDirectory=/tmp "
          "python3 -m http.server 8080 --bind 0.0.0.0")
    deadline = time.monotonic() + 60
    while not _http_ok(port):
        assert time.monotonic() < deadline, "the VM's web server never answered before ufw"
        time.sleep(1)
    # ssh_limit off: every ssh from this machine reaches the VM from one address (qemu's 10.0.2.2)
    inv = inventory(v, tmp_path / "inv.py", firewall_ssh_limit=False)
    apply(inv, "firewall", "firewall: apply")
    status = v.ssh("sudo -n ufw status verbose").stdout
    assert "Status: active" in status and "Default: deny (incoming)" in status, status
    assert "ufw-user-input" in v.ssh("sudo -n iptables -S").stdout  # rules in the VM's kernel
    assert not _http_ok(port), "ufw let the forwarded port through without a rule"
    assert v.ssh("true").returncode == 0  # SSH stays reachable
    inv = inventory(v, tmp_path / "inv2.py", firewall_ssh_limit=False, firewall_allow=["8080/tcp"])
    apply(inv, "firewall", "firewall: allow 8080")
    assert _http_ok(port), "firewall_allow=['8080/tcp'] did not open the port"
    assert plan_changes(inv, "firewall") == []
    v.ssh("sudo -n systemctl stop dlrig-web", check=False)


def test_dualboot_for_real(shared_vm, tmp_path):
    v = shared_vm
    uuid = v.ssh("sudo -n blkid -o value -s UUID /dev/vda2").stdout.strip()
    assert uuid
    inv = inventory(v, tmp_path / "inv.py", rtc_local=True, grub_timeout=7, grub_default="linux",
                    data_disks=[{"uuid": uuid, "mount": "/mnt/data"}])
    apply(inv, "dualboot", "dualboot: apply")
    cfg = v.ssh("sudo -n cat /boot/grub/grub.cfg").stdout
    assert "menuentry 'Windows" in cfg and "(on /dev/vda1)" in cfg, cfg[-3000:]  # os-prober found it
    assert "set timeout=7" in cfg
    assert "RTC in local TZ: yes" in v.ssh("timedatectl").stdout
    assert plan_changes(inv, "dualboot", "dualboot: re-plan") == []
    log_before = len(v.serial_log.read_text(errors="replace"))
    v.reboot()
    menu = v.serial_log.read_text(errors="replace")[log_before:]
    assert "Windows 10" in menu, menu[:3000]  # the menu GRUB drew on the serial console
    assert "RTC in local TZ: yes" in v.ssh("timedatectl").stdout
    assert v.ssh("findmnt -no FSTYPE /mnt/data").stdout.strip() == "ntfs3"
    assert "README.txt" in v.ssh("ls /mnt/data").stdout
    fstab = v.ssh("cat /etc/fstab").stdout
    assert f"UUID={uuid} /mnt/data ntfs3" in fstab and "nofail" in fstab
    # the data partition goes away: the VM still boots (nofail), only that mount is missing
    v.ssh("sudo -n umount /mnt/data && sudo -n sfdisk -q --no-reread --delete /dev/vda 2")
    v.reboot()
    assert v.ssh("findmnt /mnt/data", check=False).returncode != 0
    state = v.ssh("systemctl is-system-running --wait", check=False).stdout.strip()
    assert state in ("running", "degraded"), state
    assert "RTC in local TZ: yes" in v.ssh("timedatectl").stdout
