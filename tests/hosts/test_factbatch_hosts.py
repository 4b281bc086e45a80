"""@dlrig-ssh reads a run's facts in one SSH command (dlrig.engine.factbatch), over real SSH to a
Debian 12 test host: the second run of the same deploy sends one command instead of one per fact,
gets the same answers, and answers read afresh (a change on the host between runs is seen). The
control: pyinfra's own ssh connector on the same host sends one command per read."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from dlrig.testing import write_inventory

pytestmark = pytest.mark.hosts

DEPLOY = """
import json
from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command, LinuxDistribution
from dlrig.engine.facts import LoginUser

seen = [host.get_fact(Command, "cat /tmp/fb-probe 2>/dev/null || echo none"),
        host.get_fact(Command, "cat /tmp/fb-probe 2>/dev/null || echo none"),
        host.get_fact(File, path="/tmp/fb-probe") is not None,
        host.get_fact(LinuxDistribution)["name"],
        host.get_fact(LoginUser, _sudo=False),
        host.get_fact(Command, "printf 'two\\\\nlines'", _sudo=True)]
print("SEEN " + json.dumps(seen))
"""


def _run(inv, deploy, env) -> tuple[list, int]:
    r = subprocess.run([sys.executable, "-m", "pyinfra", str(inv), str(deploy), "--dry", "--debug"],
                       capture_output=True, text=True, timeout=180, env=env, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = [json.loads(line[5:]) for line in (r.stdout + r.stderr).splitlines() if line.startswith("SEEN ")]
    assert len(seen) == 1, r.stdout[-2000:]
    return seen[0], len(re.findall(r"Running command on ", r.stderr))


def test_second_run_reads_every_fact_in_one_command_and_sees_changes(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    deploy = tmp_path / "facts_deploy.py"
    deploy.write_text(DEPLOY)
    inv = write_inventory([h], tmp_path / "inventory.py")

    first, n_first = _run(inv, deploy, env)
    assert first == ["none", "none", False, "Debian", h.user, "two\nlines"]
    assert n_first == 5  # one per distinct read: the second identical read came from the first
    assert list((tmp_path / "cache" / "dlrig" / "fact-batch").glob("*.json"))

    second, n_second = _run(inv, deploy, env)
    assert second == first and n_second == 1

    h.ssh("echo changed > /tmp/fb-probe")
    third, n_third = _run(inv, deploy, env)
    assert third == ["changed", "changed", True, "Debian", h.user, "two\nlines"] and n_third == 1

    # Control: pyinfra's own ssh connector, same host, same deploy: one command per read.
    stock = tmp_path / "stock.py"
    stock.write_text(inv.read_text().replace("'@dlrig-ssh/", "'"))
    control, n_control = _run(stock, deploy, env)
    assert control == third and n_control == 6
