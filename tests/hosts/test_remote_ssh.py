"""Role ssh on Debian 12 test hosts over real SSH: no lock-out, sshd -t before reload, reload only.

The hosts' sshd runs as PID 1 of its own PID namespace without systemd, started with
``-p 22 -o ListenAddress=...`` (command-line ports beat ``Port`` lines, so port changes are not
exercised here: see the unit tests). The role reloads it with SIGHUP through /run/sshd.pid, the
path it takes on any host without a running systemd.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from dlrig.testing import write_inventory

pytestmark = pytest.mark.hosts

DROPIN = "etc/ssh/sshd_config.d/00-dlrig.conf"
PASSWORD = "dlrig-test-pw-5"


def _dlrig(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "dlrig.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def run_checks(h, tmp_path, roles: list[str], **settings) -> subprocess.CompletedProcess:
    """Run the shipped checks of ``roles`` against ``h`` over testinfra (as ``dlrig verify`` does)."""
    import os
    import sys

    from dlrig.engine.preflight import effective_data
    from dlrig.verify.runner import CONTEXT_ENV, CheckContext

    ctx = CheckContext(host=h.name, settings=effective_data(settings), roles=roles, login_user=h.user)
    path = ctx.dump(tmp_path / f"context-{len(list(tmp_path.glob('context-*')))}.json")
    checks = Path(__file__).resolve().parents[2] / "dlrig" / "verify" / "checks"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--sudo",
         f"--hosts={h._testinfra_spec()}", "-rs", *(str(checks / f"test_{r}.py") for r in roles)],
        capture_output=True, text=True, env=dict(os.environ, **{CONTEXT_ENV: str(path)}), cwd=checks,
        timeout=300)


def _password_login(h) -> str:
    """'ok' when a password-only login as the host's user works, else the reason it did not."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(h.address, port=h.port, username=h.user, password=PASSWORD,
                       look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10,
                       auth_timeout=10)
        _, out, _ = client.exec_command("echo in")
        return "ok" if out.read().strip() == b"in" else "no output"
    except paramiko.AuthenticationException as e:
        return f"refused: {type(e).__name__}: {e}"
    finally:
        client.close()


def _run(client: paramiko.SSHClient, cmd: str) -> str:
    _, out, _ = client.exec_command(cmd, timeout=20)
    return out.read().decode().strip()


def test_apply_turns_passwords_off_keeps_key_and_live_session(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    h.ssh(f"echo '{h.user}:{PASSWORD}' | sudo -n chpasswd")
    assert _password_login(h) == "ok", "precondition: password login must work before the role runs"
    live = h.session()  # held open across the apply and its reload
    before_pid = _run(live, "cat /run/sshd.pid")

    inv = write_inventory([h], tmp_path / "inventory.py")
    res = _dlrig("apply", str(inv), "--roles", "ssh", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr

    assert _run(live, "echo still-here") == "still-here", "the session that ran the apply died"
    live.close()
    assert h.ssh("echo key-ok").stdout.strip() == "key-ok"
    assert _password_login(h).startswith("refused"), "password login still accepted"
    log = h.log_path.read_text()
    assert "Received SIGHUP; restarting." in log, "sshd was not reloaded"
    assert h.ssh("cat /run/sshd.pid").stdout.strip() == before_pid == "1", "sshd was restarted, not reloaded"
    text = (h.root / DROPIN).read_text()
    assert "PasswordAuthentication no" in text and "PermitRootLogin no" in text and "Port 22" in text
    assert "passwordauthentication no" in h.ssh("sudo -n sshd -T").stdout

    plan = _dlrig("plan", str(inv), "--roles", "ssh", "--json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["changes"] == []

    ok = run_checks(h, tmp_path, ["ssh"], ssh_password_authentication=False)
    assert ok.returncode == 0, ok.stdout[-3000:]
    bad = run_checks(h, tmp_path, ["ssh"], ssh_permit_root_login="prohibit-password")
    assert bad.returncode != 0 and "ssh_permit_root_login is 'prohibit-password'" in bad.stdout
    assert "HINT" in bad.stdout and "dlrig apply INVENTORY --roles ssh" in bad.stdout


def test_invalid_setting_fails_with_sshds_message_and_keeps_old_config(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    inv = write_inventory([h], tmp_path / "inventory.py")
    assert _dlrig("apply", str(inv), "--roles", "ssh", "--yes", "--json").returncode == 0
    old_dropin = (h.root / DROPIN).read_bytes()
    old_main = (h.root / "etc/ssh/sshd_config").read_bytes()

    bad = write_inventory([h], tmp_path / "bad.py",
                          data={"ssh_extra_config": ["MaxAuthTries many"]})
    res = _dlrig("apply", str(bad), "--roles", "ssh", "--yes")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "sshd -t rejected the new config" in out, out
    assert "/etc/ssh/sshd_config.d/00-dlrig.conf line" in out and "MaxAuthTries" in out, out
    assert (h.root / DROPIN).read_bytes() == old_dropin
    assert (h.root / "etc/ssh/sshd_config").read_bytes() == old_main
    assert "Received SIGHUP" not in h.log_path.read_text().split("Received SIGHUP; restarting.", 1)[-1]
    assert h.ssh("echo alive").stdout.strip() == "alive"


def test_refuses_to_disable_passwords_for_owner_without_key(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    h.ssh("sudo -n useradd -m -s /bin/bash alice")
    inv = write_inventory([h], tmp_path / "inventory.py",
                          data={"workstation_user": "alice", "ssh_password_authentication": False})
    res = _dlrig("apply", str(inv), "--roles", "ssh", "--yes")
    assert res.returncode != 0
    assert "refusing to turn password login off: alice has no authorized key" in res.stdout + res.stderr
    assert not (h.root / DROPIN).exists(), "the role changed sshd before refusing"
    assert not (h.root / "var/lib/dlrig/ssh").exists()


def test_preflight_refuses_password_off_when_controller_logs_in_by_password(make_hosts, tmp_path):
    """Controller side: exit 2 before connecting (the host is never touched)."""
    (h,) = make_hosts(1)
    name, data = h.inventory_entry()
    data.pop("ssh_key")
    data.update(ssh_password=PASSWORD, ssh_password_authentication=False)
    inv = tmp_path / "inventory.py"
    inv.write_text(f"hosts = [({name!r}, {data!r})]\n")
    res = _dlrig("apply", str(inv), "--roles", "ssh", "--yes")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "would lock you out" in res.stderr
    assert not (h.root / DROPIN).exists()
    assert "Accepted password" not in h.log_path.read_text()
