"""Debian 13 (trixie) as a booted machine: the BIOS VM image built from trixie (deb822 sources
only, as on the host tier's trixie hosts) boots through GRUB to systemd, one config role
(``power``) applies and re-plans to zero changes, and its masks hold in the booted system.

Real: qemu (TCG), Debian 13's GRUB, kernel, systemd and logind, pyinfra over SSH.
"""

from __future__ import annotations

import pytest

from tests.vm.helpers import apply, inventory, plan_changes

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def trixie_vm(tmp_path_factory):
    from tests.vm.conftest import _boot, _require_vms

    _require_vms()
    v = _boot(tmp_path_factory.mktemp("trixie-vm"), "bios", "trixie", suite="trixie")
    try:
        yield v
    finally:
        v.stop()


def test_debian13_vm_boots_and_power_applies_and_replans_to_zero(trixie_vm, tmp_path):
    v = trixie_vm
    release = dict(line.split("=", 1) for line in v.ssh("cat /etc/os-release").stdout.splitlines() if "=" in line)
    assert release["VERSION_CODENAME"] == "trixie" and release["VERSION_ID"] == '"13"', release
    assert v.ssh("ps -o comm= -p 1").stdout.strip() == "systemd"
    assert v.ssh("test -d /sys/firmware/efi && echo efi || echo bios").stdout.strip() == "bios"
    assert v.ssh("test -e /etc/apt/sources.list && echo yes || echo no").stdout.strip() == "no"  # deb822 only
    assert "Booting `Debian" in v.serial_log.read_text(errors="replace")  # GRUB's menu entry
    inv = inventory(v, tmp_path / "inv.py")
    apply(inv, "power", "trixie: power apply")
    for target in ("sleep", "suspend", "hibernate", "hybrid-sleep"):
        assert v.ssh(f"systemctl is-enabled {target}.target", check=False).stdout.strip() == "masked"
    r = v.ssh("sudo -n systemctl start suspend.target", check=False, timeout=60)
    assert r.returncode != 0 and "Unit suspend.target is masked" in r.stderr, r.stderr
    assert plan_changes(inv, "power", "trixie: re-plan power") == []
