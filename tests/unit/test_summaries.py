"""Truthful summaries: a host that cannot be reached is reported as unreachable with pyinfra's
connect error, never as "0 change(s)"; --json gives every host a status. The unreachable host is a
real closed TCP port on 127.0.0.1 (a refused connection); the reachable one is @local (dry runs only)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def inventory(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    inv = tmp_path / "inv.py"
    inv.write_text(f'hosts = [("@local", {{}}), ("dead", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}, '
                   f'"ssh_connect_retries": 0}})]\n')
    return inv, port


def dlrig(*args):
    return subprocess.run([sys.executable, "-m", "dlrig", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_plan_reports_an_unreachable_host_with_its_connect_error(inventory):
    inv, port = inventory
    r = dlrig("plan", str(inv), "--roles", "base", "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["status"]["dead"] == "unreachable"
    assert out["status"]["@local"] in ("changes", "converged")
    assert f"Unable to connect to port {port} on 127.0.0.1" in " ".join(out["errors"]["dead"])
    assert out["ok"] is False

    text = dlrig("plan", str(inv), "--roles", "base").stdout
    assert "dead: 0 change(s)" not in text
    assert f"dead: unreachable: Could not connect ([Errno None] Unable to connect to port {port} on 127.0.0.1)" in text


def test_apply_json_gives_every_host_a_status(inventory, tmp_path):
    inv, port = inventory
    only_dead = tmp_path / "dead.py"
    only_dead.write_text(inv.read_text().replace('("@local", {}), ', ""))
    r = dlrig("apply", str(only_dead), "--roles", "base", "--yes", "--json")
    assert r.returncode == 1
    host = json.loads(r.stdout)["hosts"]["dead"]
    assert host["status"] == "unreachable" and host["reachable"] is False
    assert any(f"Unable to connect to port {port}" in e for e in host["errors"])


def test_doctor_shows_the_connect_error(inventory, tmp_path):
    inv, port = inventory
    only_dead = tmp_path / "dead.py"
    only_dead.write_text(inv.read_text().replace('("@local", {}), ', ""))
    r = dlrig("doctor", str(only_dead))
    assert r.returncode == 1
    assert f"  unreachable: Could not connect ([Errno None] Unable to connect to port {port} on 127.0.0.1)" in r.stdout
