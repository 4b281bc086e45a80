"""Checks of role ``power``: the box cannot suspend; wake-on-LAN where asked."""

from __future__ import annotations

import pytest

from dlrig.roles.power import SLEEP_TARGETS
from dlrig.verify.hints import HINT_MARK, HINT_SEP

APPLY = "run `dlrig apply INVENTORY --roles power`"


def _msg(reason: str, hint: str) -> str:
    return f"{reason}{HINT_SEP}{HINT_MARK}{hint}"


@pytest.mark.parametrize("target", SLEEP_TARGETS[:4])
def test_sleep_target_masked(host, settings, target):
    if not settings.get("power_never_sleep", True):
        pytest.skip("power_never_sleep is False")
    f = host.file(f"/etc/systemd/system/{target}")
    assert f.is_symlink and f.linked_to == "/dev/null", _msg(
        f"{target} is not masked: the machine can suspend mid-training",
        f"`sudo systemctl mask {target}` or " + APPLY)


def test_gdm_does_not_suspend(host, settings):
    if not host.package("gdm3").is_installed or not settings.get("power_never_sleep", True):
        pytest.skip("no gdm3")
    f = host.file("/etc/dconf/db/gdm.d/90-dlrig-power")
    assert f.exists and "sleep-inactive-ac-type='nothing'" in f.content_string, _msg(
        "GDM's login screen still suspends after 20 min on AC", APPLY)


def test_wake_on_lan(host, settings):
    iface = settings.get("power_wol_interface")
    if not iface:
        pytest.skip("power_wol_interface not set")
    f = host.file(f"/etc/systemd/network/50-dlrig-wol-{iface}.link")
    assert f.exists and "WakeOnLan=magic" in f.content_string, _msg(f"no wake-on-LAN link file for {iface}", APPLY)
    res = host.run(f"ethtool {iface} 2>/dev/null | sed -n 's/^\\s*Wake-on: //p'")
    if res.rc == 0 and res.stdout.strip():
        assert "g" in res.stdout, _msg(f"{iface}: Wake-on is {res.stdout.strip()} (the .link applies at boot)",
                                       "reboot, or `sudo ethtool -s IFACE wol g` now")
