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


def test_apply_writes_its_full_log_and_prints_the_path_also_on_failure(inventory, tmp_path):
    inv, port = inventory
    only_dead = tmp_path / "dead.py"
    only_dead.write_text(inv.read_text().replace('("@local", {}), ', ""))
    state = tmp_path / "state"
    r = subprocess.run([sys.executable, "-m", "dlrig", "apply", str(only_dead), "--roles", "base", "--yes"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**__import__("os").environ, "XDG_STATE_HOME": str(state)})
    assert r.returncode == 1
    (log,) = (state / "dlrig" / "logs").glob("apply-*.log")
    assert r.stderr.strip().splitlines()[-1] == f"log: {log}"
    assert log.stat().st_mode & 0o777 == 0o600
    text = log.read_text()
    assert "--> Connecting to hosts..." in text  # pyinfra's own output, in full
    assert f"Unable to connect to port {port} on 127.0.0.1" in text
    assert "dead" in r.stdout and "unreachable" in r.stdout


def test_role_progress_prints_one_line_per_role_with_count_and_elapsed_time(tmp_path, capsys):
    """Real pyinfra output (a harmless deploy of `true` commands on @local) read by RoleProgress."""
    from dlrig.cli.progress import RoleProgress
    from dlrig.engine.runner import pyinfra_command, run_pyinfra

    deploy = tmp_path / "deploy.py"
    deploy.write_text(
        "from pyinfra.api import deploy\nfrom pyinfra.operations import server\n"
        "@deploy('alpha')\ndef a():\n    server.shell(name='one', commands=['true'])\n"
        "    server.shell(name='two', commands=['true'])\n"
        "@deploy('beta')\ndef b():\n    server.shell(name='three', commands=['true'])\n"
        "a()\nb()\n")
    log = (tmp_path / "log").open("w")
    result = run_pyinfra(pyinfra_command("@local", str(deploy), dry=False),
                         show_progress=RoleProgress(["alpha", "beta"], log=log))
    log.close()
    assert result.returncode == 0
    lines = capsys.readouterr().err.splitlines()
    roles = [line for line in lines if line.startswith("[")]
    assert [line.split(" (")[0] for line in roles] == ["[1/2] alpha", "[2/2] beta"]
    assert all(line.endswith(" elapsed)") for line in roles)
    assert "Starting operation: beta | three" in (tmp_path / "log").read_text()


def test_plan_without_a_jupyter_hash_reports_that_apply_needs_one():
    """Planning the jupyter role needs no hash: plan says apply will need one (here the jupyter
    role's own refusal of a missing pytorch environment is what fails; never the hash)."""
    r = dlrig("plan", "@local", "--roles", "jupyter", "--data", "cpu_only=true", "--json")
    out = json.loads(r.stdout)
    assert out["notes"] == ["@local: jupyter_password_hash is not set: apply needs one unless the host already "
                            "holds one (~/.jupyter/jupyter_server_config.py); set it with `dlrig init` or "
                            "`dlrig apply --jupyter-password-prompt`"]
    assert "jupyter_password_hash is not set and" not in out.get("error", "")


def test_owner_without_user_in_the_environment_is_the_login_user():
    """$USER unset (cron, env -i): the owner is `id -un`'s answer, never '' (which gave /home//)."""
    import getpass
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME")}
    r = subprocess.run([sys.executable, "-m", "dlrig", "plan", "@local", "--roles", "jupyter", "--data",
                        "cpu_only=true", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    errors = " ".join(json.loads(r.stdout)["errors"]["@local"])
    me = getpass.getuser()
    home = "/root" if me == "root" else f"/home/{me}"
    assert "/home//" not in errors
    assert f"no environment at {home}/miniforge3/envs/dl" in errors
