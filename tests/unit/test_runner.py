"""Reading pyinfra's plan and results, including runs where every host failed (no JSON then)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from dlrig.engine.runner import RunResult, parse_progress, pyinfra_command, run_pyinfra

DEPLOY = textwrap.dedent("""\
    from pyinfra import host
    from pyinfra.api import deploy
    from pyinfra.operations import server

    @deploy("demo")
    def demo():
        server.shell(name="works", commands=["true"])
        server.shell(name="fails on @local", commands=["echo broken-thing >&2; test " + repr(host.name) + " != @local"])
        server.shell(name="after", commands=["true"])

    demo()
""")


def _run(tmp_path, inventory, dry=False):
    deploy = tmp_path / "deploy.py"
    deploy.write_text(DEPLOY)
    return run_pyinfra(pyinfra_command(inventory, str(deploy), dry=dry), show_progress=False)


def test_every_host_failing_is_summarised_from_progress_lines(tmp_path):
    """Real pyinfra on @local: the only host fails, pyinfra prints no JSON at all."""
    result = _run(tmp_path, "@local")
    assert result.returncode != 0 and result.results is None
    s = result.summary(["@local"])["@local"]
    assert (s.changed, s.failed, s.reachable, s.ok) == (1, 1, True, False)
    assert any("broken-thing" in e for e in s.errors)


def test_one_host_failing_among_several_uses_the_json_results(tmp_path):
    """@local (real) and @fake/x (pyinfra's fake connector: a stand-in host where every command succeeds)."""
    result = _run(tmp_path, "@local,@fake/x")
    assert result.results is not None
    summary = result.summary(["@local", "@fake/x"])
    assert summary["@fake/x"].ok and summary["@fake/x"].changed == 3
    assert not summary["@local"].ok and summary["@local"].failed >= 1
    assert any("broken-thing" in e for e in summary["@local"].errors)


def test_plan_changes_carry_the_role_from_the_deploy_name(tmp_path):
    result = _run(tmp_path, "@local", dry=True)
    assert [c.as_json() for c in result.changes()] == [
        {"host": "@local", "role": "demo", "operation": op} for op in ("works", "fails on @local", "after")
    ]


def test_unreachable_host():
    stderr = "--> Connecting to hosts...\n    [rig] Could not connect (Timed out)\n"
    s = parse_progress(stderr, ["rig"])["rig"]
    assert not s.reachable and not s.ok and s.errors == ["Could not connect (Timed out)"]
    assert RunResult(1, stderr=stderr).summary(["rig"])["rig"].reachable is False


def test_a_role_refusing_while_pyinfra_prepares_fails_the_host(tmp_path):
    """A DeployError at prepare time: pyinfra prints no JSON and no per-host result lines."""
    deploy = tmp_path / "deploy.py"
    deploy.write_text("from pyinfra.api import DeployError\nraise DeployError('no combination fits this card')\n")
    result = run_pyinfra(pyinfra_command("@local", str(deploy), dry=False), show_progress=False)
    s = result.summary(["@local"])["@local"]
    assert not s.ok and s.failed == 1
    assert any("no combination fits this card" in e for e in s.errors)


def test_data_values_reach_pyinfra_with_their_types():
    """What `--data` sends is what pyinfra's own parser gives the deploy (lists, None, look-alike strings).
    Parsed in a child process: importing pyinfra_cli gevent-patches the importing process."""
    data = {"extra_packages": ["timm", "pandas>=2.2"], "driver_branch": 590, "torch_version": None,
            "env_name": "true", "python_version": "3.11", "cpu_only": True, "dlrig_roles": ["base", "ssh"]}
    cmd = pyinfra_command("@local", "deploy.py", dry=True, data=data)
    sent = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--data")
    parsed = subprocess.run(
        [sys.executable, "-c", "import json, sys; from pyinfra_cli.util import parse_cli_arg; "
         "print(json.dumps({k: parse_cli_arg(v) for k, v in json.loads(sys.argv[1]).items()}))", json.dumps(sent)],
        capture_output=True, text=True, check=True).stdout
    assert json.loads(parsed) == data
