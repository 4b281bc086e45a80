"""The dlrig process imports only what a command needs: ``--help``, ``check`` and ``resolve`` never
load pyinfra's API, paramiko, gevent or a role (the pyinfra child of plan/apply is the one that
imports pyinfra). Each runs in a fresh interpreter; its sys.modules is read at exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import atexit, json, sys
OUT = sys.argv[1]
def report():
    with open(OUT, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(report)
sys.argv = ["dlrig", *sys.argv[2:]]
from dlrig.cli import main
main()
"""

HEAVY = ("pyinfra.api", "pyinfra_cli", "paramiko", "gevent")
ROLES = ("base", "nvidia_driver", "cuda", "cudnn", "conda", "pytorch", "jupyter", "ssh", "firewall", "power",
         "dualboot", "unattended_upgrades")


@pytest.mark.parametrize("args", [
    ["--help"],
    ["check", "inventories/example.py"],
    ["check", "inventories/example.py", "--roles", "base,ssh", "--data", "cpu_only=True"],
    ["resolve", "--gpu", "10de:1e84", "--os", "ubuntu-24.04"],
    ["resolve", "--cpu-only", "--json"],
], ids=["help", "check", "check-roles-data", "resolve", "resolve-cpu-json"])
def test_light_commands_do_not_import_pyinfra_paramiko_or_roles(args, tmp_path):
    out = tmp_path / "modules.json"
    r = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    modules = json.loads(out.read_text())
    heavy = [m for m in modules if m.startswith(HEAVY)]
    roles = [m for m in modules if m.removeprefix("dlrig.roles.") in ROLES]
    assert heavy == [] and roles == [], f"dlrig {' '.join(args)} imported {heavy[:5]} {roles}"
    assert "dlrig.cli" in modules  # the probe ran the CLI


def test_the_probe_sees_pyinfra_when_a_command_loads_it(tmp_path):
    """Control: the same probe reports pyinfra's API once a role is imported."""
    out = tmp_path / "modules.json"
    probe = PROBE.replace("from dlrig.cli import main", "import dlrig.roles.base\nfrom dlrig.cli import main")
    subprocess.run([sys.executable, "-c", probe, str(out), "--help"], cwd=ROOT, capture_output=True, text=True)
    assert "pyinfra.api" in json.loads(out.read_text())


# What the command modules use only when their command runs (issue 13: `dlrig --help` <= 0.1 s): the
# engine (inventory -> settings, passwords -> hashlib, runner, applylock, noop), the GPU tables
# (resolver, table, packages: gpus.json), the deploys and roles, verify and the test hosts, and the
# stdlib modules only a running command needs (subprocess, getpass -> termios, hashlib).
HELP_UNUSED = ("dlrig.engine", "dlrig.gpu", "dlrig.deploys", "dlrig.roles", "dlrig.verify", "dlrig.testing",
               "subprocess", "getpass", "termios", "hashlib")


def _modules_of(args: list[str], tmp_path: Path) -> list[str]:
    out = tmp_path / "modules.json"
    r = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def _named(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == n or m.startswith(n + ".") for n in names)]


def test_help_imports_only_the_cli_and_click(tmp_path):
    """`dlrig --help` lists every command with its docstring's first line, loading none of the
    modules a command imports when it runs."""
    modules = _modules_of(["--help"], tmp_path)
    assert "dlrig.cli.run" in modules and "click" in modules
    assert _named(modules, HELP_UNUSED) == []


def test_the_probe_sees_what_a_running_command_imports(tmp_path):
    """Control: the same list catches the lazy imports once a command runs (`resolve` loads the
    resolver and its tables, `check` the inventory reader and settings)."""
    assert {"dlrig.gpu.resolver", "dlrig.gpu.table"} <= set(_named(_modules_of(["resolve", "--cpu-only"], tmp_path),
                                                                   HELP_UNUSED))
    assert {"dlrig.engine.inventory", "dlrig.engine.settings"} <= set(
        _named(_modules_of(["check", "inventories/example.py"], tmp_path), HELP_UNUSED))
