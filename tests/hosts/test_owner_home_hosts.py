"""The owner's home comes from the host's passwd (``getent passwd``), not from ``/home/USER``: role
conda on a Debian 12 test host whose owner ``alice`` lives in /srv/alice, then the shipped checks.

The Miniforge installer is the stand-in of test_ml_hosts.py (conda-forge is unreachable here);
sshd, sudo, pyinfra and the role are real."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dlrig.testing import write_inventory
from tests.hosts.test_ml_hosts import served  # noqa: F401 (the fixture)
from tests.hosts.test_remote_ssh import run_checks

pytestmark = pytest.mark.hosts

HOME = "/srv/alice"


def test_conda_goes_to_the_home_passwd_names(make_hosts, served, tmp_path):  # noqa: F811
    (h,) = make_hosts(1)
    h.ssh(f"sudo -n useradd -m -d {HOME} -s /bin/bash alice")
    assert h.ssh("getent passwd alice | cut -d: -f6").stdout.strip() == HOME
    data = {"workstation_user": "alice", "conda_installer_url": served["installer_url"],
            "conda_installer_sha256": served["installer_sha256"]}
    inv = write_inventory([h], tmp_path / "inv.py", data=data)
    r = subprocess.run([sys.executable, "-m", "dlrig", "apply", str(inv), "--roles", "conda", "--yes"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert h.ssh(f"stat -c %U {HOME}/miniforge3/bin/conda").stdout.strip() == "alice"
    assert "dlrig conda initialize" in h.ssh(f"sudo -n cat {HOME}/.bashrc").stdout
    assert h.ssh("test -e /home/alice && echo there || echo none").stdout.strip() == "none"
    assert h.ssh("sudo -n -u alice -i bash -ic 'type conda' 2>/dev/null | head -1").stdout.strip() == \
        "conda is a function"
    checks = run_checks(h, tmp_path, ["conda"], **data)
    assert checks.returncode == 0, checks.stdout[-3000:]
