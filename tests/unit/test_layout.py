"""The newcomer's files: inventories, the Vagrantfile, the README's two commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dlrig.engine.settings import BEGIN_MARK, END_MARK, commented_defaults

ROOT = Path(__file__).resolve().parents[2]


def test_example_inventory_shows_every_setting_with_its_default():
    text = (ROOT / "inventories/example.py").read_text()
    block = text[text.index(BEGIN_MARK) + len(BEGIN_MARK):text.index(END_MARK)]
    assert block.strip() == commented_defaults().strip(), (
        "inventories/example.py is stale: run `dlrig settings --python --write inventories/example.py`"
    )


@pytest.mark.parametrize("name, hosts", [("local.py", "@local"), ("example.py", "rig")])
def test_shipped_inventories_load_and_validate(name, hosts):
    """`dlrig check` validates without connecting (example.py's host is a documentation address)."""
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", "check", f"inventories/{name}"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"1 host(s): settings valid ({hosts})"


def test_check_refuses_a_bad_override_of_a_shipped_inventory():
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", "check", "inventories/example.py", "--data",
                        "jupyter_prot=8888"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "dlrig: error: rig: unknown setting 'jupyter_prot'; did you mean 'jupyter_port'?"


def test_vagrant_inventory_without_running_vms_is_one_clear_line():
    """pyinfra's @vagrant connector asks vagrant for running VMs; with none up that is an error."""
    if not shutil.which("vagrant"):
        pytest.skip("vagrant not installed")
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", "plan", "inventories/vagrant.py"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "dlrig: error: inventory inventories/vagrant.py: cannot be loaded: InventoryError: "
        "No running Vagrant instances matching `jammy` found!"
    ]


def test_vagrantfile_validates():
    if not shutil.which("vagrant"):
        if os.environ.get("CI"):
            pytest.fail("vagrant missing in CI: .ci/run installs Debian's vagrant package")
        pytest.skip("vagrant not installed (apt-get install vagrant)")
    r = subprocess.run(["vagrant", "validate"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    text = (ROOT / "Vagrantfile").read_text()
    assert "ubuntu2204" in text and "ubuntu2404" in text
    assert ":libvirt" in text and ":virtualbox" in text


def test_readme_starts_with_the_two_newcomer_commands():
    lines = [l for l in (ROOT / "README.md").read_text().splitlines() if l.strip()]
    assert lines[1] == "```sh" and lines[4] == "```"
    assert lines[2].endswith("pipx install . && ~/.local/bin/dlrig demo")
    assert lines[3].startswith("bash .ci/run")
    ci = (ROOT / ".ci/run").read_text()
    # every tier: the VM tier (marker vm) in the background beside the rest, both exit codes checked
    assert '\npython3 -m pytest -m "not vm" || rc=$?\n' in ci and '\npython3 -m pytest -m "vm and not vm_full" tests/vm ' in ci
    assert "python3 -m pytest" in lines[3]


def test_plain_pyinfra_runs_the_workstation_deploy_file():
    """`pyinfra INVENTORY deploys/workstation.py` works without dlrig's CLI (a dry run on @local)."""
    r = subprocess.run([sys.executable, "-m", "pyinfra", "@local", "deploys/workstation.py", "--dry",
                        "--data", "dlrig_roles=base"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "base | apt waits for the dpkg lock" in r.stdout + r.stderr


def test_readme_undo_block_names_only_what_the_roles_write():
    """Every dlrig-named path and marker in the README's undo block is in a role's source (or the
    env layout): renaming a file in a role without updating the README fails here."""
    import re

    text = (ROOT / "README.md").read_text()
    block = text[text.index("<!-- undo: begin -->"):text.index("<!-- undo: end -->")]
    sources = "\n".join(p.read_text() for p in [*(ROOT / "roles").glob("*.py"), ROOT / "dlrig/engine/pyenv.py"])
    names = set(re.findall(r"/etc/[\w./-]*dlrig[\w.-]*", block)) | set(re.findall(r"dlrig-[\w.-]+\.service", block))
    assert len(names) >= 8, names
    for name in sorted(names):
        base = name.rsplit("/", 1)[-1]
        assert base in sources, f"README undo block names {name}, which no role writes"
    assert "dlrig conda initialize" in sources
