"""TCP_NODELAY on every SSH connection dlrig makes, read back from the live socket (getsockopt).

Against a real test host (Debian 12, real sshd): pyinfra through the ``@dlrig-ssh`` connector
(API and the ``pyinfra`` command, as ``dlrig plan/apply`` run it), and testinfra's paramiko
backend under dlrig's verify plugin. Each has a control without dlrig's part that reads 0, so the
assertions can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlrig.engine.tcp import nodelay_is_set
from dlrig.testing import write_inventory

pytestmark = pytest.mark.hosts


def _connected_host(h, name: str):
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all

    _, data = h.inventory_entry()
    inventory = Inventory(([(name, data)], {}))
    state = State(inventory, Config())
    connect_all(state)
    return state, inventory.get_host(h.name if name.startswith("@dlrig-ssh/") else name)


def test_pyinfra_connector_sets_nodelay_and_plain_ssh_does_not(make_hosts):
    from pyinfra.api.connect import disconnect_all

    (h,) = make_hosts(1)
    state, host = _connected_host(h, f"@dlrig-ssh/{h.name}")
    try:
        assert host.name == h.name  # the connector keeps the plain name
        assert host.connector.client is not None
        assert nodelay_is_set(host.connector.client)
        ok, out = host.run_shell_command("echo still-works")
        assert ok and out.stdout == "still-works"
    finally:
        disconnect_all(state)

    state, host = _connected_host(h, h.name)  # control: pyinfra's own ssh connector
    try:
        assert not nodelay_is_set(host.connector.client)
    finally:
        disconnect_all(state)


DEPLOY = """
import json
from pyinfra import host
from dlrig.engine.tcp import nodelay_is_set
with open({out!r}, "a") as f:
    f.write(json.dumps({{"host": host.name, "nodelay": nodelay_is_set(host.connector.client)}}) + "\\n")
"""


def test_pyinfra_command_uses_the_connector_from_the_entry_point(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    out = tmp_path / "seen.jsonl"
    deploy = tmp_path / "probe_deploy.py"
    deploy.write_text(DEPLOY.format(out=str(out)))
    inv = write_inventory([h], tmp_path / "inventory.py")
    assert "@dlrig-ssh/" in inv.read_text()
    r = subprocess.run([sys.executable, "-m", "pyinfra", str(inv), str(deploy), "--dry"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{"host": h.name, "nodelay": True}]


CHECK = """
import socket

def test_nodelay(host):
    sock = host.backend.client.get_transport().sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
"""


@pytest.mark.parametrize("plugin", [True, False], ids=["verify-plugin", "control-without"])
def test_testinfra_paramiko_backend_under_the_verify_plugin(make_hosts, tmp_path, plugin):
    (h,) = make_hosts(1)
    (tmp_path / "test_probe.py").write_text(CHECK)
    cmd = [sys.executable, "-m", "pytest", str(tmp_path / "test_probe.py"), "-q", "-p", "no:cacheprovider",
           "--rootdir", str(tmp_path), "-c", "/dev/null", f"--hosts={h._testinfra_spec()}"]
    if plugin:
        cmd[4:4] = ["-p", "dlrig.verify.plugin"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert (r.returncode == 0) is plugin, r.stdout[-2000:] + r.stderr[-1000:]
