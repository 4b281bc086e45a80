"""Ctrl-C during ``dlrig apply`` is never success (issue 11): a real multi-role apply on a Debian 12
test host, interrupted with SIGINT in the middle of its first role, exits 130, says which roles did
not run and that re-running is safe; the re-run converges (plan: no changes)."""

from __future__ import annotations

import glob
import json
import signal
import subprocess
import sys
import time

import pytest

from dlrig.testing import write_inventory

pytestmark = pytest.mark.hosts

MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dlrig.cli", *args]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130)])
def test_sigint_mid_role_exits_130_and_reapply_converges(make_hosts, tmp_path, sig, code):
    (h,) = make_hosts(1)
    inv = write_inventory([h], tmp_path / "inv.py", data={"extra_ca_certificates": MACHINE_CAS,
                                                          "base_packages": ["less"]})
    proc = subprocess.Popen(_cli("apply", str(inv), "--roles", "base,ssh", "--yes", "-v"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, sent = [], False
    deadline = time.monotonic() + 600
    for line in proc.stderr:
        seen.append(line)
        # the second operation of role base has started: interrupt mid-role
        if not sent and sum("Starting operation: base |" in x for x in seen) >= 2:
            proc.send_signal(sig)
            sent = True
        assert time.monotonic() < deadline
    out = proc.stdout.read()
    rc = proc.wait()
    err = "".join(seen)
    assert sent, "the apply never reached base's second operation:\n" + err[-3000:]
    assert rc == code, f"exit {rc}\n{out}\n{err[-3000:]}"
    assert "apply interrupted (SIGINT)" in err
    assert "roles that did not run: ssh" in err, err[-2000:]
    assert "re-running `dlrig apply` is safe" in err
    assert "stopped in base |" in err or "roles that did not run: ssh" in err

    j = subprocess.run(_cli("apply", str(inv), "--roles", "base,ssh", "--yes", "--json"),
                       capture_output=True, text=True, timeout=900)
    assert j.returncode == 0, j.stdout[-2000:] + j.stderr[-3000:]
    assert json.loads(j.stdout)["ok"] is True
    plan = subprocess.run(_cli("plan", str(inv), "--roles", "base,ssh", "--json"),
                          capture_output=True, text=True, timeout=600)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert json.loads(plan.stdout)["changes"] == []
    assert h.ssh("sudo -n true && echo ok").stdout.strip() == "ok"


def test_sigint_json_says_not_ok(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    inv = write_inventory([h], tmp_path / "inv.py", data={"ssh_extra_config": ["X11Forwarding no"]})
    proc = subprocess.Popen(_cli("apply", str(inv), "--roles", "ssh", "--yes", "--json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (h.root / "var/lib/dlrig/ssh").exists():  # role ssh's staging step ran: mid-role
        assert proc.poll() is None and time.monotonic() < deadline, "apply ended before its staging step"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, rest = proc.communicate(timeout=300)
    assert proc.returncode == 143, out + rest
    payload = json.loads(out.strip().splitlines()[-1])
    assert payload["ok"] is False and payload["interrupted"] == "SIGTERM"
    assert h.name in payload["hosts"] and "hint" in payload
