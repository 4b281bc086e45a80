"""The wheel: `pip install .` (not only -e) carries roles, deploys, templates and checks under
the dlrig namespace, and its console script works from a fresh virtual environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of what git would clone (tracked and untracked-not-ignored files), so a
    stale build/ folder or an ignored file in this checkout cannot leak into the wheel."""
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(src)], check=True)
    (whl,) = out.glob("dlrig-*.whl")
    return whl


def test_wheel_carries_everything_under_the_dlrig_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("dlrig-")}
    assert tops == {"dlrig"}, f"top-level modules besides dlrig: {tops - {'dlrig'}}"
    for path in ROOT.joinpath("roles").glob("*.py"):
        assert f"dlrig/roles/{path.name}" in names
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
    venv.create(env_dir, with_pip=True, system_site_packages=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], check=True)
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
