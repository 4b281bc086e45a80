"""Ownership drift of a file dlrig manages (issue 11, item 6), on a real Debian 12 test host: after a
chown, plan reports the change, apply repairs it (root:root again) and plan then shows none."""

from __future__ import annotations

import glob
import json
import subprocess
import sys

import pytest

from dlrig.testing import write_inventory

pytestmark = pytest.mark.hosts

MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))
MANAGED = "/etc/apt/apt.conf.d/90dlrig"  # role base: "apt waits for the dpkg lock"


def _dlrig(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlrig.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _plan(inv) -> list[dict]:
    r = _dlrig("plan", str(inv), "--roles", "base", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])["changes"]


@pytest.mark.parametrize("owner", ["dlrig:dlrig", "root:dlrig"])
def test_chowned_file_is_reported_and_repaired(make_hosts, tmp_path, owner):
    (h,) = make_hosts(1)
    inv = write_inventory([h], tmp_path / "inv.py", data={"extra_ca_certificates": MACHINE_CAS})
    r = _dlrig("apply", str(inv), "--roles", "base", "--yes", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert _plan(inv) == []
    stat = f"stat -c %U:%G {MANAGED}"
    assert h.ssh(stat).stdout.strip() == "root:root"

    h.ssh(f"sudo -n chown {owner} {MANAGED}")
    changes = _plan(inv)
    assert [c["operation"] for c in changes] == ["apt waits for the dpkg lock"], changes
    assert h.ssh(stat).stdout.strip() == owner  # plan changed nothing

    r = _dlrig("apply", str(inv), "--roles", "base", "--yes", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["hosts"][h.name]["changed"] >= 1
    assert h.ssh(stat).stdout.strip() == "root:root"
    assert _plan(inv) == []
