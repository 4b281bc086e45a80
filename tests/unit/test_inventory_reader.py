"""dlrig reads inventory files without pyinfra (``dlrig check`` stays light): the hosts, data and
groups it finds equal pyinfra's own loader's on every shape it accepts, and it hands every other
shape to pyinfra."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlrig.engine.inventory import _pyinfra_inventory, load_inventory, read_inventory_file

ROOT = Path(__file__).resolve().parents[2]

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
    assert mine == _pyinfra_inventory(str(inv), override)


@pytest.mark.parametrize("name", ["example.py", "local.py"])
def test_shipped_inventories_read_as_pyinfra_reads_them(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = f"inventories/{name}"
    mine = read_inventory_file(spec, {"cpu_only": True})
    assert mine is not None and mine == _pyinfra_inventory(spec, {"cpu_only": True})


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
    assert [h.name for h in load_inventory("@local")] == ["@local"]
