"""Concurrent applies to one host are serialized by a host-side lock (issue 11, item 5), on a real
Debian 12 test host over real SSH: a second apply started while one runs waits for it; with a small
``apply_lock_timeout`` it is refused before any change, naming the host and since when the other
one runs; after the first ends the lock is free; a killed controller releases it."""

from __future__ import annotations

import glob
import json
import re
import signal
import subprocess
import sys
import time

import pytest

from dlrig.engine.applylock import LOCK_FILE
from dlrig.testing import write_inventory

pytestmark = pytest.mark.hosts

MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))
FREE = f"sudo -n flock -n {LOCK_FILE} true"  # exit 0: nobody holds the lock


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dlrig.cli", *args]


def _wait_held(h, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while h.ssh(FREE, check=False).returncode == 0:
        assert proc.poll() is None and time.monotonic() < deadline, "the first apply never took the lock"
        time.sleep(0.2)


def test_second_apply_waits_or_is_refused_and_lock_is_freed(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    inv = write_inventory([h], tmp_path / "inv.py", data={"extra_ca_certificates": MACHINE_CAS,
                                                          "base_packages": ["less"]})
    roles = ("--roles", "base,ssh")
    t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    first = subprocess.Popen(_cli("apply", str(inv), *roles, "--yes", "--json"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_held(h, first)
    # a second apply with the default timeout: waits for the first, then runs
    waiter = subprocess.Popen(_cli("apply", str(inv), *roles, "--yes", "--json"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # a third with a small timeout: refused before any change, naming the host and the time
    started = time.monotonic()
    refused = subprocess.run(_cli("apply", str(inv), *roles, "--yes", "--json", "--data", "apply_lock_timeout=2"),
                             capture_output=True, text=True, timeout=300)
    assert first.poll() is None, "the first apply ended before the refused one asked: no concurrency tested"
    assert refused.returncode == 1, refused.stdout + refused.stderr[-2000:]
    payload = json.loads(refused.stdout.strip().splitlines()[-1])
    assert payload["ok"] is False
    hs = payload["hosts"][h.name]
    assert hs["status"] == "failed" and hs["changed"] == 0 and hs["failed"] == 1
    m = re.search(rf"another dlrig apply is running on {re.escape(h.name)} since (\S+);", hs["errors"][0])
    assert m, hs["errors"]
    assert t0 <= m[1] <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), m[1]
    assert "Starting operation" not in refused.stderr  # pyinfra never ran for it
    assert time.monotonic() - started < 120

    out, err = first.communicate(timeout=900)
    assert first.returncode == 0, out[-2000:] + err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["ok"] is True
    wout, werr = waiter.communicate(timeout=900)
    assert waiter.returncode == 0, wout[-2000:] + werr[-3000:]
    assert "another dlrig apply holds the host; waiting" in werr
    w = json.loads(wout.strip().splitlines()[-1])
    assert w["ok"] is True and w["hosts"][h.name]["changed"] == 0  # it ran after the first: converged
    assert h.ssh(FREE, check=False).returncode == 0  # both ended: the lock is free


def test_killed_controller_releases_the_lock(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    inv = write_inventory([h], tmp_path / "inv.py")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from dlrig.engine.applylock import acquire\n"
         "from dlrig.engine.inventory import load_inventory\n"
         f"locks = acquire(load_inventory({str(inv)!r}), lambda h: 5)\n"
         "print(sorted(locks.held), locks.refused, flush=True)\n"
         "time.sleep(600)\n"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        assert line.strip() == f"[{h.name!r}] {{}}", line + holder.stderr.read() if holder.poll() else line
        assert h.ssh(FREE, check=False).returncode != 0  # held
        holder.send_signal(signal.SIGKILL)  # the controller dies: no clean release
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    deadline = time.monotonic() + 30
    while h.ssh(FREE, check=False).returncode != 0:
        assert time.monotonic() < deadline, "the lock outlived its controller"
        time.sleep(0.2)
    r = subprocess.run(_cli("apply", str(inv), "--roles", "ssh", "--yes", "--json", "--data", "apply_lock_timeout=2"),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
