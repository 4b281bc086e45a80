"""Checks of role ``dualboot``: clock mode, GRUB settings, data disks, NTFS left clean by Windows."""

from __future__ import annotations

import pytest

from dlrig.roles.dualboot import GRUB_DROPIN
from dlrig.verify.hints import HINT_MARK, HINT_SEP

APPLY = "run `dlrig apply INVENTORY --roles dualboot`"


def _msg(reason: str, hint: str) -> str:
    return f"{reason}{HINT_SEP}{HINT_MARK}{hint}"


def test_rtc_mode(host, settings):
    want = "LOCAL" if settings.get("rtc_local") else "UTC"
    f = host.file("/etc/adjtime")
    got = (f.content_string.splitlines() + ["", "", ""])[2].strip() or "UTC" if f.exists else "UTC"
    assert got == want, _msg(f"hardware clock is kept in {got}, rtc_local wants {want} "
                             "(clock jumps by the UTC offset after booting Windows)", APPLY)


def test_grub_shows_other_systems(host, settings):
    f = host.file(GRUB_DROPIN)
    assert f.exists, _msg(f"{GRUB_DROPIN} is missing", APPLY)
    lines = f.content_string.splitlines()
    assert "GRUB_DISABLE_OS_PROBER=false" in lines, _msg("os-prober disabled: GRUB will not list Windows", APPLY)
    assert f"GRUB_TIMEOUT={settings.get('grub_timeout', 5)}" in lines, _msg("GRUB_TIMEOUT differs from grub_timeout", APPLY)
    assert host.package("os-prober").is_installed, _msg("os-prober is not installed", APPLY)


def test_data_disks_in_fstab(host, settings):
    disks = settings.get("data_disks") or []
    if not disks:
        pytest.skip("no data_disks")
    fstab = host.file("/etc/fstab").content_string
    for d in disks:
        line = next((x for x in fstab.splitlines() if x.startswith(f"UUID={d['uuid']} ")), None)
        assert line, _msg(f"UUID={d['uuid']} is not in /etc/fstab", APPLY)
        assert "nofail" in line, _msg(f"{d['mount']} lacks nofail: a missing disk would stop the boot", APPLY)


def test_ntfs_disks_not_hibernated(host, settings):
    ntfs = [d for d in settings.get("data_disks") or [] if d.get("fs", "ntfs") == "ntfs"]
    if not ntfs:
        pytest.skip("no NTFS data_disks")
    for d in ntfs:
        dev = host.run(f"blkid -U {d['uuid']}").stdout.strip()
        if not dev:
            pytest.skip(f"UUID={d['uuid']} not attached")
        rc = host.run(f"ntfs-3g.probe --readwrite {dev}").rc
        assert rc not in (14, 15), _msg(
            f"{dev} (UUID={d['uuid']}) was left {'hibernated' if rc == 14 else 'dirty'} by Windows: "
            "Linux can mount it read-only at most",
            "in Windows: turn Fast Startup off (`powercfg /h off` as admin) and shut down fully")
