"""Role base on fresh Debian 12 test hosts over real SSH: apply, checks, zero-change re-plan,
a held dpkg lock waited out, an interrupted dpkg repaired. Real apt, dpkg, sshd and pyinfra."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dlrig.testing import write_inventory

pytestmark = pytest.mark.hosts

MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))


def dlrig(*args: str, timeout: int = 900) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", *args], capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - start


def plan_changes(inv: Path, roles: str = "base") -> list[dict]:
    r, _ = dlrig("plan", str(inv), "--roles", roles, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)["changes"]


def test_base_on_two_hosts_converges_and_replans_to_zero_changes(make_hosts, tmp_path, record_property):
    hosts = make_hosts(2)
    inv = write_inventory(hosts, tmp_path / "inv.py", data={"extra_ca_certificates": MACHINE_CAS})

    r, t_apply = dlrig("apply", str(inv), "--roles", "base", "--yes", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["ok"] is True
    for h in hosts:
        assert summary["hosts"][h.name]["failed"] == 0
        assert summary["hosts"][h.name]["changed"] >= 3

    for h in hosts:
        t = h.testinfra_host()
        for pkg in ("build-essential", "curl", "git", "tmux", "htop", "pciutils"):
            assert t.package(pkg).is_installed, f"{h.name}: {pkg} missing"
        conf = t.file("/etc/apt/apt.conf.d/90dlrig")
        assert conf.contains('DPkg::Lock::Timeout "600";')
        assert t.run("dpkg --audit").stdout.strip() == ""
        # The machine's CA is trusted on the host: HTTPS through the intercepting proxy works.
        for i, ca in enumerate(MACHINE_CAS):
            stem = Path(ca).stem
            assert t.file(f"/etc/ssl/certs/dlrig-{i}-{stem}.pem").exists
        assert t.run("curl -sS -o /dev/null -w '%{http_code}' https://pypi.org/simple/pip/").stdout in ("200", "301", "302")

    start = time.monotonic()
    assert plan_changes(inv) == []
    t_replan = time.monotonic() - start
    r, t_noop = dlrig("apply", str(inv), "--roles", "base", "--yes", "--json")
    assert r.returncode == 0
    assert all(s["changed"] == 0 for s in json.loads(r.stdout)["hosts"].values())
    record_property("timings", {"apply_2_hosts_s": round(t_apply, 1), "replan_s": round(t_replan, 1),
                                "noop_apply_s": round(t_noop, 1)})
    print(f"\nbase on 2 hosts: apply {t_apply:.1f}s, no-op re-plan {t_replan:.1f}s, no-op apply {t_noop:.1f}s")


HOLD_LOCK = textwrap.dedent("""\
    import fcntl, sys, time
    f = open("/var/lib/dpkg/lock-frontend", "w")
    fcntl.lockf(f, fcntl.LOCK_EX)
    open("/tmp/lock-held", "w").close()
    time.sleep(float(sys.argv[1]))
""")


def _hold_dpkg_lock(host, seconds: float) -> None:
    """Another process on the host holds dpkg's frontend lock (as unattended-upgrades does)."""
    (host.root / "tmp" / "hold_lock.py").write_text(HOLD_LOCK)
    host.ssh("sudo rm -f /tmp/lock-held; "
             f"sudo setsid nohup python3 /tmp/hold_lock.py {seconds} >/dev/null 2>&1 < /dev/null &")
    deadline = time.monotonic() + 10
    while not (host.root / "tmp" / "lock-held").exists():
        assert time.monotonic() < deadline, "lock holder did not start"
        time.sleep(0.1)


def test_a_held_dpkg_lock_is_waited_out(make_hosts, tmp_path):
    (host,) = make_hosts(1)
    small = {"base_packages": ["jq"], "extra_ca_certificates": MACHINE_CAS}

    # Control: with no lock timeout, apt fails at once on the held lock.
    inv = write_inventory([host], tmp_path / "nowait.py", data={**small, "apt_lock_timeout": 0})
    _hold_dpkg_lock(host, 15)
    r, _ = dlrig("apply", str(inv), "--roles", "base", "--yes")
    assert r.returncode == 1
    assert "lock" in (r.stdout + r.stderr).lower()
    assert not host.testinfra_host().package("jq").is_installed
    time.sleep(15)

    # The default: apt waits for the 10 s lock, then installs.
    inv = write_inventory([host], tmp_path / "wait.py", data=small)
    _hold_dpkg_lock(host, 10)
    held_at = time.monotonic()
    r, elapsed = dlrig("apply", str(inv), "--roles", "base", "--yes", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.monotonic() - held_at >= 10
    assert host.testinfra_host().package("jq").is_installed


def _half_installed_deb(tmp_path: Path) -> Path:
    pkg = tmp_path / "dlrig-probe"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: dlrig-probe\nVersion: 1.0\nArchitecture: all\nMaintainer: dlrig tests <t@localhost>\n"
        "Description: a package left unpacked but unconfigured, as an interrupted dpkg leaves it\n"
    )
    (pkg / "usr/share/dlrig-probe").mkdir(parents=True)
    (pkg / "usr/share/dlrig-probe/README").write_text("probe\n")
    deb = tmp_path / "dlrig-probe_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(deb)], check=True,
                   capture_output=True)
    return deb


def test_an_interrupted_dpkg_is_repaired(make_hosts, tmp_path):
    (host,) = make_hosts(1)
    deb = _half_installed_deb(tmp_path)
    (host.root / "tmp" / deb.name).write_bytes(deb.read_bytes())
    host.ssh(f"sudo dpkg --unpack /tmp/{deb.name}")
    assert "dlrig-probe" in host.ssh("sudo dpkg --audit", check=False).stdout

    inv = write_inventory([host], tmp_path / "inv.py",
                          data={"base_packages": ["jq"], "extra_ca_certificates": MACHINE_CAS})
    changes = plan_changes(inv)
    assert {"host": host.name, "role": "base", "operation": "repair interrupted dpkg (dpkg --configure -a)"} in changes
    r, _ = dlrig("apply", str(inv), "--roles", "base", "--yes")
    assert r.returncode == 0, r.stderr[-3000:]
    t = host.testinfra_host()
    assert t.run("dpkg --audit").stdout.strip() == ""
    assert t.package("dlrig-probe").is_installed
    assert plan_changes(inv) == []
