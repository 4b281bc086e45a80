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
