"""sudo that asks for a password, on a Debian 12 test host whose sudoers rule for the workstation
user has no NOPASSWD: apply base with DLRIG_SUDO_PASSWORD, and with --sudo-password-prompt (asked
once); a wrong password fails with one clear line and changes nothing; the password is in no output
and in no log (``~/.local/state/dlrig/logs``). Real sudo, sshd, apt and pyinfra."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from dlrig.engine.sudopass import ENV
from dlrig.testing import write_inventory
from tests.hosts.test_base_hosts import MACHINE_CAS

pytestmark = pytest.mark.hosts


def dlrig(*args: str, env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    # A new session: no controlling terminal, so the prompt reads the answer from stdin.
    return subprocess.run([sys.executable, "-m", "dlrig", *args], capture_output=True, text=True, timeout=900,
                          input=stdin, env=env, start_new_session=True)


def _log(res: subprocess.CompletedProcess) -> str:
    m = re.search(r"^log: (.+)$", res.stderr, re.M)
    assert m, res.stderr
    path = Path(m.group(1))
    assert path.parent == Path.home() / ".local/state/dlrig/logs" or os.environ.get("XDG_STATE_HOME")
    return path.read_text()


def test_sudo_with_a_password(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    password = "pw-" + secrets.token_hex(8)
    h.ssh(f"echo '{h.user}:{password}' | sudo -n chpasswd")
    rule = h.root / "etc/sudoers.d/zz-password"  # read after the image's NOPASSWD rule: the last match wins
    rule.write_text(f"{h.user} ALL=(ALL:ALL) ALL\n")
    rule.chmod(0o440)
    assert h.ssh("sudo -n true", check=False).returncode != 0, "precondition: sudo must ask for a password"
    inv = write_inventory([h], tmp_path / "inv.py",
                          data={"base_packages": ["jq"], "extra_ca_certificates": MACHINE_CAS})
    base = {k: v for k, v in os.environ.items() if k != ENV}

    # a wrong password: one line that says so, nothing changed, quickly (no sudo retry waiting)
    wrong = "pw-" + secrets.token_hex(8)
    res = dlrig("apply", str(inv), "--roles", "base", "--yes", env={**base, ENV: wrong})
    assert res.returncode == 1, res.stdout + res.stderr
    said = [line for line in (res.stdout + res.stderr).splitlines() if "refused the password" in line]
    assert len(said) == 1 and f"from {ENV}" in said[0] and "nothing was changed" in said[0], res.stdout + res.stderr
    assert wrong not in res.stdout + res.stderr
    assert h.ssh("command -v jq", check=False).returncode != 0
    res = dlrig("plan", str(inv), "--roles", "base", env={**base, ENV: wrong})  # no apply lock: pyinfra's sudo
    assert res.returncode == 1 and f"{h.name}: failed: sudo: 3 incorrect password attempts" in res.stdout, \
        res.stdout + res.stderr
    assert wrong not in res.stdout + res.stderr

    # the right one from the environment: apply converges
    res = dlrig("apply", str(inv), "--roles", "base", "--yes", env={**base, ENV: password})
    assert res.returncode == 0, res.stdout + res.stderr
    assert h.ssh("command -v jq", check=False).returncode == 0
    assert password not in res.stdout + res.stderr and password not in _log(res)
    # the default output counted apt's download (through the password sudo), against apt's own total
    counts = re.findall(rf"^  \S*{re.escape(h.name)}: base: ([\d.]+ (?:B|kB|MB)) of ([\d.]+ (?:B|kB|MB)) downloaded \(",
                        res.stderr, re.M)
    assert counts and counts[-1][0] == counts[-1][1], res.stderr  # the last one: all of it

    # asked once (--sudo-password-prompt), with pyinfra's raw output and its commands (-vvv)
    res = dlrig("plan", str(inv), "--roles", "base", "--sudo-password-prompt", "--json", env=base,
                stdin=password + "\n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert '"changes": []' in res.stdout
    res = dlrig("apply", str(inv), "--roles", "base", "--yes", "-vvv", "--sudo-password-prompt", env=base,
                stdin=password + "\n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr.count("sudo password") == 1, res.stderr  # dlrig's prompt; pyinfra never asks
    assert password not in res.stdout + res.stderr and password not in _log(res)
    assert "sudo -H -A -k" in res.stderr, "pyinfra did not use the password (sudo -A)"

    # verify runs its checks' commands through the same sudo (the inventory's _sudo): with the password
    # from the environment, or asked once, every base check passes; a wrong one is one line, no check ran
    res = dlrig("verify", str(inv), "--roles", "base", "--json", env={**base, ENV: password})
    assert res.returncode == 0, res.stdout + res.stderr
    checks = json.loads(res.stdout)
    assert checks["ok"] and any(r["result"] == "passed" for r in checks["results"]), res.stdout
    assert password not in res.stdout + res.stderr
    res = dlrig("verify", str(inv), "--roles", "base", "--sudo-password-prompt", env=base, stdin=password + "\n")
    assert res.returncode == 0 and res.stderr.count("sudo password") == 1, res.stdout + res.stderr
    assert password not in res.stdout + res.stderr
    res = dlrig("verify", str(inv), "--roles", "base", env={**base, ENV: wrong})
    assert res.returncode == 1 and f"refused the password from {ENV}" in res.stdout, res.stdout + res.stderr
    assert wrong not in res.stdout + res.stderr
    res = dlrig("verify", str(inv), "--roles", "base", env=base)  # no password: says how to give one
    assert res.returncode == 1 and "sudo needs a password" in res.stdout and ENV in res.stdout, \
        res.stdout + res.stderr

    # on the host: sudo's own log has no password either, and none is left in a file
    assert h.ssh(f"sudo -n true 2>/dev/null; grep -rl -- '{password}' /tmp /var/tmp 2>/dev/null", check=False).stdout == ""
