"""Roles power, dualboot, unattended_upgrades on a Debian 12 test host (a chroot-like host).

What this host can prove: the files, links and packages these roles leave, that apt and
unattended-upgrades read them, and that a re-plan is empty. What it cannot: the host has no
running systemd, no GRUB and no block devices, so masked targets are not seen refusing a
suspend, update-grub does not run (the role warns and skips it) and no NTFS disk is mounted.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlrig.testing import write_inventory
from tests.hosts.test_remote_ssh import run_checks

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

UUID = "01D9A1B2C3D4E5F6"


def _dlrig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlrig", *args], capture_output=True, text=True, timeout=900)


def test_power_dualboot_unattended_upgrades(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    settings = {
        "rtc_local": True, "grub_default": "saved", "grub_timeout": 8,
        "data_disks": [{"uuid": UUID, "mount": "/mnt/windows"}],
        "unattended_upgrades_blacklist": ["my-pinned-"],
    }
    inv = write_inventory([h], tmp_path / "inventory.py", data=settings)
    res = _dlrig("apply", str(inv), "--roles", "power,dualboot,unattended_upgrades", "--yes")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "no update-grub on this host" in out
    assert f"no disk with UUID={UUID}" in out

    root = h.root
    for t in ("sleep", "suspend", "hibernate", "hybrid-sleep"):
        link = root / f"etc/systemd/system/{t}.target"
        assert link.is_symlink() and str(link.readlink()) == "/dev/null", t
    # systemctl (installed, not running) agrees the units are masked
    assert "masked" in h.ssh("systemctl is-enabled sleep.target suspend.target", check=False).stdout
    assert "HandleSuspendKey=ignore" in (root / "etc/systemd/logind.conf.d/90-dlrig-power.conf").read_text()

    assert (root / "etc/adjtime").read_text().splitlines()[2] == "LOCAL"
    grub = (root / "etc/default/grub.d/99-dlrig.cfg").read_text()
    for line in ("GRUB_DISABLE_OS_PROBER=false", "GRUB_DEFAULT=saved", "GRUB_SAVEDEFAULT=true",
                 "GRUB_TIMEOUT=8", "GRUB_TIMEOUT_STYLE=menu"):
        assert line in grub.splitlines()
    assert h.ssh("command -v os-prober ntfs-3g.probe", check=False).stdout.count("/") >= 2
    fstab = (root / "etc/fstab").read_text()
    # Debian 12's kernel has no ntfs3 (tools/sources/debian/kernel-ntfs3.txt): ntfs-3g, with windows_names
    assert f"UUID={UUID} /mnt/windows ntfs-3g uid=1000,gid=1000,umask=022,nofail," in fstab
    assert "windows_names" in fstab
    assert (root / "mnt/windows").is_dir()
    assert h.ssh(f"sudo -n findmnt --verify --tab-file /etc/fstab 2>&1 | grep -c {UUID}",
                 check=False).stdout.strip() != ""

    dump = h.ssh("apt-config dump").stdout
    assert 'Unattended-Upgrade::Package-Blacklist:: "nvidia-";' in dump
    assert 'Unattended-Upgrade::Package-Blacklist:: "my-pinned-";' in dump
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    uu = h.ssh("sudo -n unattended-upgrade --dry-run --debug 2>&1 | head -40", check=False).stdout
    assert "nvidia-" in uu and "libnvidia-" in uu, uu  # "Initial blacklist: ..." lists ours

    plan = _dlrig("plan", str(inv), "--roles", "power,dualboot,unattended_upgrades", "--json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["changes"] == []

    checks = run_checks(h, tmp_path, ["power", "dualboot"], **settings)
    assert checks.returncode == 0, checks.stdout[-3000:]
    wrong = run_checks(h, tmp_path, ["dualboot"], **{**settings, "rtc_local": False})
    assert wrong.returncode != 0 and "rtc_local wants UTC" in wrong.stdout
