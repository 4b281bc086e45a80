"""dlrig's own error paths (issue 11): bad inventories and keys end in one or two lines, exit 2,
the file/line or key named, no traceback, the same reason in --json, no secret echoed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlrig.engine.runner import user_reason

CASES = {
    "raises": ('x = 1\nraise RuntimeError("boom")\n', ["line 2", "RuntimeError: boom"]),
    "imports": ("import nosuchmodule_dlrig\nhosts = ['a']\n", ["line 1", "'nosuchmodule_dlrig'", "not installed"]),
    "twice": ("hosts = ['h1',\n 'h1']\n", ["line 2", "'h1' is listed twice"]),
    "string": ('hosts = "x"\n', ["no hosts", "`hosts` is a string", "hosts = ['x']"]),
    "empty": ("hosts = []\n", ["no hosts", "hosts = [...]"]),
    "wrong key path": ("hosts = [('h', {'ssh_key': '/nonexistent/id_x'})]\n", ["ssh_key /nonexistent/id_x: no such file"]),
    "public key as key": ("hosts = [('h', {'ssh_key': 'PUB'})]\n", ["not a private key file", "drop the .pub"]),
    "password hash in clear": ("hosts = [('h', {'jupyter_password_hash': 'hunter2-clear'})]\n",
                               ["jupyter_password_hash (value not shown)"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_inventory_one_line_exit_2_no_traceback(tmp_path, case):
    text, wanted = CASES[case]
    pub = tmp_path / "id.pub"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDo2 me\n")
    inv = tmp_path / "inv.py"
    inv.write_text(text.replace("PUB", str(pub)))
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", "plan", str(inv), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2, r.stderr
    for w in wanted:
        assert w in r.stderr, r.stderr
    payload = json.loads(r.stdout)
    assert payload["ok"] is False and all(w in payload["error"] for w in wanted)
    assert "hunter2" not in r.stdout + r.stderr


def test_pyinfra_prefix_is_not_shown():
    line = "--> pyinfra error in /usr/lib/python3/site-packages/dlrig/gpu/resolver.py line 212: no driver for 12345"
    assert user_reason(line) == "no driver for 12345"
    assert user_reason("--> pyinfra error: No hosts remaining!") == "No hosts remaining!"


def test_unknown_driver_branch_refused_before_connecting_and_by_resolve():
    from dlrig.engine.settings import validate_host_data

    errors = validate_host_data("h", {"driver_branch": 12345})
    assert errors and "not one dlrig knows" in errors[0] and "580" in errors[0]
    assert validate_host_data("h", {"driver_branch": 580}) == []
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", "resolve", "--driver", "12345"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--driver 12345: driver branch 12345 is not one dlrig knows" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
