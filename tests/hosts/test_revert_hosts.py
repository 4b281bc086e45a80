"""``dlrig revert`` on a real Debian 12 test host, and ``dlrig files`` proved against what the
config-only roles really write.

The host runs in its own network namespace (the firewall role's ufw rules land there, never on this
machine; see test_remote_firewall.py). Its packages (ufw, unattended-upgrades, os-prober) are
installed before it starts, so what is snapshotted before the apply is a fresh host with those
packages: the distribution's defaults to come back to.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlrig.roles.footprint import REVERTIBLE, covering
from dlrig.testing import pool as POOL
from tests.hosts.test_remote_firewall import _run, netns_host  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

ROLES = ",".join(REVERTIBLE)
UFW_FILES = ("/etc/ufw/user.rules", "/etc/ufw/user6.rules")
PACKAGES = ("ufw", "unattended-upgrades", "os-prober")
SNAPSHOT = (r"sudo -n find /etc /var/lib/dlrig -xdev ! -type d -printf '%p\t%y\t%l\t%m\n' 2>/dev/null; "
            r"sudo -n find /etc -xdev -type f -exec sha1sum {} + | sed 's/^/SHA /'")


def snapshot(c) -> dict[str, tuple]:
    """Every file and link under /etc and /var/lib/dlrig: (type, link target, mode, sha1)."""
    out: dict[str, list] = {}
    for line in _run(c, SNAPSHOT).splitlines():
        if line.startswith("SHA "):
            sha, _, path = line[4:].partition("  ")
            if path in out:
                out[path][3] = sha
        elif line.count("\t") == 3:
            path, kind, target, mode = line.split("\t")
            out[path] = [kind, target, mode, None]
    return {p: tuple(v) for p, v in out.items()}


def dlrig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlrig", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("netns_host", [PACKAGES], indirect=True)
def test_apply_then_revert_restores_the_distribution_defaults(netns_host, tmp_path):
    h = netns_host
    live = h.session()
    fresh = snapshot(live)
    fresh_rules = _run(live, "sudo -n ufw show added")
    assert "/etc/ufw/ufw.conf" in fresh and "/etc/apt/apt.conf.d/50unattended-upgrades" in fresh, sorted(fresh)[:20]
    ifaces = [i for i in _run(live, "ls /sys/class/net").split() if i != "lo"]
    data = {"rtc_local": True, "firewall_allow": ["6006/tcp"]}
    if ifaces:
        data["power_wol_interface"] = ifaces[0]
    inv = POOL.write_inventory([h], tmp_path / "inventory.py", data=data)

    res = dlrig("apply", str(inv), "--roles", ROLES, "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    applied = snapshot(live)
    changed = sorted(p for p in set(applied) | set(fresh) if applied.get(p) != fresh.get(p))
    # dlrig files lists every file these roles wrote
    unlisted = [p for p in changed if not covering(p, list(REVERTIBLE))]
    assert not unlisted, f"written by {ROLES} but not in dlrig files: {unlisted}"
    for must in ("/etc/ssh/sshd_config.d/00-dlrig.conf", "/etc/systemd/system/suspend.target",
                 "/etc/apt/apt.conf.d/52dlrig-unattended-upgrades", "/etc/default/grub.d/99-dlrig.cfg",
                 "/etc/adjtime", "/etc/systemd/logind.conf.d/90-dlrig-power.conf"):
        assert must in changed, f"{must} not written by the apply: {changed}"
    if ifaces:
        assert f"/etc/systemd/network/50-dlrig-wol-{ifaces[0]}.link" in changed
    assert "Status: active" in _run(live, "sudo -n ufw status")

    res = dlrig("revert", str(inv), "--roles", ROLES, "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "still" in _run(live, "echo still"), "the SSH session that ran the revert died"
    reverted = snapshot(live)
    differ = sorted(p for p in set(reverted) | set(fresh) if reverted.get(p) != fresh.get(p))
    # /etc/adjtime: a fresh minbase root has none; the distribution's default (UTC) is written back.
    # ufw rewrites user*.rules in its own full layout once it has been used: the rules must be the same.
    assert [p for p in differ if p not in UFW_FILES + ("/etc/adjtime",)] == [], f"not as on the fresh host: {differ}"
    assert _run(live, "sudo -n ufw show added") == fresh_rules
    if "/etc/adjtime" in differ:
        assert _run(live, "cat /etc/adjtime").splitlines()[2] == "UTC"
    assert "Status: inactive" in _run(live, "sudo -n ufw status")
    assert "dlrig" not in _run(live, "sudo -n ufw show added")

    fresh_login = h.session()  # a brand-new SSH login still works and still gets sudo
    assert _run(fresh_login, "sudo -n true && echo sudo-ok").strip() == "sudo-ok"
    fresh_login.close()

    plan = dlrig("plan", str(inv), "--roles", ROLES, "--json")
    assert plan.returncode == 0, plan.stderr
    roles_with_changes = {c["role"] for c in json.loads(plan.stdout)["changes"]}
    assert roles_with_changes == set(REVERTIBLE), roles_with_changes

    again = dlrig("revert", str(inv), "--roles", ROLES, "--yes", "--json")  # a second revert changes nothing
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["hosts"][h.name]["changed"] == 0, again.stdout
    live.close()


def test_ssh_revert_refuses_what_would_lock_dlrig_out(make_hosts, tmp_path):
    """A key file only dlrig's drop-in names (ssh_extra_config AuthorizedKeysFile ... /etc/ssh/keys/%u):
    removing the drop-in would stop sshd reading it, so revert refuses before any change (the ssh
    role's lock-out proof, which refuses an apply without the line just the same). On a host
    without that line the revert goes through, sshd is reloaded, and password login (Debian's
    default) is back."""
    from dlrig.roles.ssh import DROPIN

    h, other = make_hosts(2)
    extra = ["AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 /etc/ssh/keys/%u"]
    inv = POOL.write_inventory([h], tmp_path / "extra.py", data={"ssh_extra_config": extra})
    res = dlrig("apply", str(inv), "--roles", "ssh", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    path = h.root / DROPIN.lstrip("/")
    dropin = path.read_text()
    assert "/etc/ssh/keys/%u" in dropin and "passwordauthentication no" in h.ssh("sudo -n sshd -T").stdout

    res = dlrig("revert", str(inv), "--roles", "ssh", "--yes")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "refusing before any change" in res.stdout + res.stderr and "/etc/ssh/keys/%u" in res.stdout + res.stderr, \
        res.stdout + res.stderr
    assert path.read_text() == dropin, "the drop-in changed although revert refused"

    h = other
    path = h.root / DROPIN.lstrip("/")
    plain = POOL.write_inventory([h], tmp_path / "plain.py")
    assert dlrig("apply", str(plain), "--roles", "ssh", "--yes").returncode == 0
    assert path.exists() and "passwordauthentication no" in h.ssh("sudo -n sshd -T").stdout
    res = dlrig("revert", str(plain), "--roles", "ssh", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not path.exists() and not (h.root / "var/lib/dlrig/ssh").exists()
    assert "passwordauthentication yes" in h.ssh("sudo -n sshd -T").stdout  # Debian's default again
    assert h.log_path.read_text().count("Received SIGHUP; restarting.") == 2  # apply, revert
    assert h.ssh("sudo -n true && echo ok").stdout.strip() == "ok"
