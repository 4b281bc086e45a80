"""Debian 13 (trixie) as a second real OS: roles base, ssh, power and unattended_upgrades on a
fresh Debian 13 test host over real SSH (python3.13, apt 3, deb822 sources only), then their
shipped checks over testinfra and a re-plan with zero changes. Real apt, dpkg, sshd and pyinfra.

Not here: firewall (it needs a host that owns its network namespace, tests/hosts/test_remote_firewall.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from dlrig.testing import write_inventory
from tests.hosts.test_remote_ssh import run_checks

pytestmark = pytest.mark.hosts

ROLES = ["base", "ssh", "power", "unattended_upgrades"]


def _dlrig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlrig", *args], capture_output=True, text=True, timeout=900)


def test_roles_apply_check_and_replan_to_zero_on_debian_13(make_hosts, tmp_path, record_property):
    (h,) = make_hosts(1, suite="trixie")
    osr = h.ssh("cat /etc/os-release").stdout
    assert 'VERSION_ID="13"' in osr and "VERSION_CODENAME=trixie" in osr
    assert not (h.root / "etc/apt/sources.list").exists()  # deb822 only

    settings = {"unattended_upgrades_blacklist": ["my-pinned-"]}
    inv = write_inventory([h], tmp_path / "inventory.py", data=settings)
    t0 = time.monotonic()
    res = _dlrig("apply", str(inv), "--roles", ",".join(ROLES), "--yes", "--json")
    t_apply = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)["hosts"][h.name]
    assert summary["failed"] == 0 and summary["changed"] >= 5

    t = h.testinfra_host()
    for pkg in ("build-essential", "git", "unattended-upgrades"):
        assert t.package(pkg).is_installed, pkg
    assert t.run("dpkg --audit").stdout.strip() == ""
    dump = h.ssh("apt-config dump").stdout
    assert 'Unattended-Upgrade::Package-Blacklist:: "my-pinned-";' in dump
    assert "masked" in h.ssh("systemctl is-enabled suspend.target", check=False).stdout

    checks = run_checks(h, tmp_path, ["base", "ssh", "power"], **settings)  # roles with shipped checks
    assert checks.returncode == 0, checks.stdout[-3000:]

    t0 = time.monotonic()
    plan = _dlrig("plan", str(inv), "--roles", ",".join(ROLES), "--json")
    t_plan = time.monotonic() - t0
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert json.loads(plan.stdout)["changes"] == []
    record_property("timings", {"apply_s": round(t_apply, 1), "replan_s": round(t_plan, 1)})
    print(f"\ndebian-13: apply {t_apply:.1f}s, re-plan {t_plan:.1f}s")
