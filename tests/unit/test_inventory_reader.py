"""dlrig reads inventory files without pyinfra (``dlrig check`` stays light): the hosts, data and
groups it finds equal pyinfra's own loader's on every shape it accepts, and it hands every other
shape to pyinfra."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlrig.engine.inventory import read_inventory_file

ROOT = Path(__file__).resolve().parents[2]

# pyinfra's own loader runs in a child process: importing pyinfra_cli gevent-patches the importing
# process, and in a pytest process that already has threads (the host tier's servers) that import
# can deadlock on an import lock. The child imports this checkout's dlrig (PYTHONPATH).
_LOADER = """
import dataclasses, json, sys
from dlrig.engine.inventory import load_inventory, _pyinfra_inventory
spec, override, through_load = json.loads(sys.argv[1])
hosts = (load_inventory if through_load else _pyinfra_inventory)(spec, override)
print(json.dumps([dataclasses.asdict(h) for h in hosts]))
"""


def _pyinfra_reads(spec: str, override: dict | None, *, through_load: bool = False) -> list[dict]:
    r = subprocess.run([sys.executable, "-c", _LOADER, json.dumps([spec, override, through_load])],
                       capture_output=True, text=True, timeout=120, cwd=os.getcwd(),
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.splitlines()[-1])


def _as_json(hosts) -> list[dict]:
    return json.loads(json.dumps([dataclasses.asdict(h) for h in hosts]))

SHAPES = {
    "one host": 'hosts = [("@dlrig-ssh/rig", {"ssh_hostname": "192.0.2.1", "ssh_port": 2222})]\n',
    "groups and data": (
        'web = ["@dlrig-ssh/a", ("b", {"x": 1, "y": 1})]\n'
        'db = (["b", "@ssh/c"], {"y": 2, "g": "db"})\n'
        'gpu = ([("@dlrig-ssh/a", {"x": 5}), "d"], {"g": "gpu"})\n'
        '_private = ["not-a-host"]\n'
        'NOT_A_GROUP = "text"\n'
    ),
    "explicit all": 'all = (["h1", "@local"], {"cpu_only": True})\nlab = ["h1"]\n',
    "computed": 'hosts = [(f"@dlrig-ssh/n{i}", {"ssh_port": 2200 + i}) for i in range(3)]\n',
}
GROUP_DATA = {
    "all.py": 'import os\nfrom pathlib import Path\ncpu_only = True\nz = len(os.sep)\n',
    "web.py": '__all__ = ["w"]\nw = 4\nhidden = 1\n',
    "db.py": 'y = 3\n',
}


@pytest.mark.parametrize("override", [None, {"y": 9, "cpu_only": False}], ids=["plain", "override"])
@pytest.mark.parametrize("with_group_data", [False, True], ids=["no-group-data", "group-data"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_same_hosts_data_and_groups_as_pyinfra(tmp_path, monkeypatch, shape, with_group_data, override):
    monkeypatch.chdir(tmp_path)
    inv = tmp_path / "inv.py"
    inv.write_text(SHAPES[shape])
    if with_group_data:
        (tmp_path / "group_data").mkdir()
        for name, text in GROUP_DATA.items():
            (tmp_path / "group_data" / name).write_text(text)
    mine = read_inventory_file(str(inv), override)
    assert mine is not None
    assert _as_json(mine) == _pyinfra_reads(str(inv), override)


@pytest.mark.parametrize("name", ["example.py", "local.py"])
def test_shipped_inventories_read_as_pyinfra_reads_them(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = f"inventories/{name}"
    mine = read_inventory_file(spec, {"cpu_only": True})
    assert mine is not None and _as_json(mine) == _pyinfra_reads(spec, {"cpu_only": True})


@pytest.mark.parametrize("text", [
    'hosts = ["@docker/ubuntu:24.04"]\n',  # a connector that makes its own names
    'from pyinfra import local\nhosts = ["a"]\n',  # code that needs pyinfra's context
    'hosts = [("a", "not a dict")]\n',
    'hosts = ["@dlrig-ssh/a", "a"]\n',  # two names for one host: pyinfra merges them
], ids=["other-connector", "imports-pyinfra", "odd-entry", "twins"])
def test_other_shapes_go_to_pyinfra(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inv.py").write_text(text)
    assert read_inventory_file(str(tmp_path / "inv.py")) is None


def test_a_non_file_spec_goes_to_pyinfra():
    assert read_inventory_file("@local") is None
    assert [h["name"] for h in _pyinfra_reads("@local", None, through_load=True)] == ["@local"]
