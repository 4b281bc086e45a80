"""The wheel: `pip install .` (not only -e) carries roles, deploys, templates and checks under
the dlrig namespace, and its console script works from a fresh virtual environment."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.wheel import build_wheel, venv_with

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("clone"))


def test_wheel_carries_everything_under_the_dlrig_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("dlrig-")}
    assert tops == {"dlrig"}, f"top-level modules besides dlrig: {tops - {'dlrig'}}"
    for path in ROOT.joinpath("roles").glob("*.py"):
        assert f"dlrig/roles/{path.name}" in names
    for path in ROOT.joinpath("roles", "settings").glob("*.py"):
        assert f"dlrig/roles/settings/{path.name}" in names
    for path in ROOT.joinpath("deploys").glob("*.py"):
        assert f"dlrig/deploys/{path.name}" in names
    for path in ROOT.joinpath("templates").glob("*.j2"):
        assert f"dlrig/templates/{path.name}" in names
    for path in ROOT.joinpath("dlrig", "verify", "checks").glob("*.py"):
        assert f"dlrig/verify/checks/{path.name}" in names
    for path in ROOT.joinpath("dlrig", "gpu", "data").glob("*.json"):
        assert f"dlrig/gpu/data/{path.name}" in names


def test_installed_wheel_runs_from_a_fresh_venv(wheel, tmp_path):
    """A new venv (reusing this interpreter's installed dependencies, no network) with only the
    wheel: the console script lists its commands and plans against @local with the shipped files."""
    env_dir = tmp_path / "venv"
    py = venv_with(wheel, env_dir) / "python"
    out = subprocess.run([str(env_dir / "bin" / "dlrig"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0
    for command in ("plan", "apply", "check", "settings", "demo", "resolve", "doctor", "verify", "bench"):
        assert f"  {command} " in out.stdout
    where = subprocess.run([str(py), "-c", "import dlrig.roles, dlrig.deploys; print(dlrig.roles.TEMPLATES, dlrig.deploys.deploy_file())"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout.split()
    assert all(str(env_dir) in w for w in where), where
    assert Path(where[0], "apt-dlrig.conf.j2").is_file() and Path(where[1]).is_file()
    plan = subprocess.run([str(env_dir / "bin" / "dlrig"), "plan", "@local", "--roles", "base", "--json"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert '"changes"' in plan.stdout


def test_installed_dlrig_and_its_children_ignore_a_dlrig_folder_in_the_working_directory(wheel, tmp_path):
    """Run from a folder holding a decoy ``dlrig/`` (a clone's root is such a folder): the command,
    pyinfra (plan) and pytest (verify) it starts all import the installed package."""
    bin_dir = venv_with(wheel, tmp_path / "venv")
    cwd = tmp_path / "clone"
    (cwd / "dlrig").mkdir(parents=True)
    (cwd / "dlrig" / "__init__.py").write_text("raise ImportError('the decoy dlrig/ in the working directory')\n")
    dlrig = str(bin_dir / "dlrig")
    plan = subprocess.run([dlrig, "plan", "@local", "--roles", "base", "--json"], capture_output=True, text=True,
                          cwd=cwd)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "decoy" not in plan.stdout + plan.stderr
    assert '"changes"' in plan.stdout
    check = subprocess.run([dlrig, "verify", "--local", "--roles", "base", "--json"], capture_output=True,
                           text=True, cwd=cwd)
    assert "decoy" not in check.stdout + check.stderr
    assert json.loads(check.stdout)["results"], check.stderr[-2000:]


def test_a_checkout_is_a_complete_dlrig():
    """``python -m dlrig`` and the tests inside a clone import the clone's roles and deploys (not
    another installed or editable copy): the checkout maps them like pyproject's package-dir."""
    out = subprocess.run([sys.executable, "-c", "import dlrig.roles, dlrig.deploys, dlrig.roles.ssh as s; "
                          "print(dlrig.roles.__file__, dlrig.deploys.__file__, s.__file__)"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    assert out == [str(ROOT / "roles/__init__.py"), str(ROOT / "deploys/__init__.py"), str(ROOT / "roles/ssh.py")]
