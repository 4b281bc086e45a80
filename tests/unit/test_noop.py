"""The verified no-op (dlrig.engine.noop, dlrig.engine.noopread): records, digests and the replay.

The replay runs its batch in a real local ``sh`` through :class:`LocalShellClient`, a FAKE standing
in for the SSH connection only (the host tests run it over real SSH); files, locks (real ``flock``)
and the child's audit hook are real."""

from __future__ import annotations

import re

import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dlrig.engine import factbatch, noop
from dlrig.engine.inventory import HostSpec

ROOT = Path(__file__).resolve().parents[2]


class _Stdout:
    def __init__(self, data: bytes, rc: int):
        self.data, self.rc, self.channel = data, rc, self

    def read(self) -> bytes:
        return self.data

    def shutdown_write(self) -> None:
        pass

    def recv_exit_status(self) -> int:
        return self.rc


class LocalShellClient:
    """FAKE paramiko SSHClient: runs the command line in a real local ``sh`` (no SSH)."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def exec_command(self, command: str, timeout=None):
        self.commands.append(command)
        r = subprocess.run(["sh", "-c", command], capture_output=True, timeout=60)
        return None, _Stdout(r.stdout, r.returncode), None

    def close(self) -> None:
        pass


def _record(commands: list[str], answers: list[list[str]], report=7, files=None) -> dict:
    return {"v": noop.VERSION, "commands": commands, "outputs": noop.reads_digest(list(zip(commands, answers))),
            "files": files or {}, "report": report}


def test_replay_hits_only_while_every_read_answers_as_recorded(tmp_path):
    probe = tmp_path / "probe"
    probe.write_text("one\ntwo\n")
    commands = [f"cat {probe}", "printf 'a\\nb'", "echo same"]
    record = _record(commands, [["one", "two"], ["a", "b"], ["same"]])
    client = LocalShellClient()
    hit = noop.check_one(HostSpec("h1"), record, hold_lock=False, connect=lambda h: client)
    assert hit == noop.Hit("h1", 7, 3)
    assert len(client.commands) == 1  # every read in one command

    probe.write_text("one\nTWO\n")  # drift on the "host"
    assert noop.check_one(HostSpec("h1"), record, hold_lock=False, connect=lambda h: client) is None

    failing = _record(["echo a", "false"], [["a"], []])  # a failed read is never a hit, even with no output
    assert noop.check_one(HostSpec("h1"), failing, hold_lock=False, connect=lambda h: client) is None
    cut = _record(["echo a", "kill -9 $$"], [["a"], []])  # the batch stopped short
    assert noop.check_one(HostSpec("h1"), cut, hold_lock=False, connect=lambda h: client) is None


def test_apply_replay_misses_while_another_apply_holds_the_lock(tmp_path):
    lock = tmp_path / "apply.lock"
    lock.touch()
    record = _record(["echo x"], [["x"]])
    client = LocalShellClient()
    with open(lock) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        assert noop.check_one(HostSpec("h1"), record, hold_lock=True, connect=lambda h: client,
                              lock_file=str(lock)) is None
    assert noop.check_one(HostSpec("h1"), record, hold_lock=True, connect=lambda h: client,
                          lock_file=str(lock)) is not None


def test_inputs_digest_follows_every_input():
    base = dict(code="c", name="h1", data={"ssh_port": 22, "base_packages": ["jq"]},
                pyinfra_data={"dlrig_roles": ["base"]}, mode="plan")
    d0 = noop.inputs_digest(**base)
    assert d0 == noop.inputs_digest(**dict(base, data={"base_packages": ["jq"], "ssh_port": 22}))
    for change in ({"code": "c2"}, {"name": "h2"}, {"data": {"ssh_port": 22, "base_packages": ["jq", "git"]}},
                   {"pyinfra_data": {"dlrig_roles": ["base", "ssh"]}}, {"mode": "apply"}):
        assert noop.inputs_digest(**dict(base, **change)) != d0, change


def test_the_same_host_in_two_inventory_files_has_one_digest(tmp_path):
    """pyinfra adds a group named after the inventory file: it must not make the same host with the
    same data a different input (a record written from one.py is hit from four.py)."""
    from dlrig.engine.inventory import load_inventory

    entry = '("@dlrig-ssh/h1", {"ssh_hostname": "127.0.9.1", "ssh_user": "root", "base_packages": ["jq"]})'
    (tmp_path / "one.py").write_text(f"hosts = [{entry}]\n")
    (tmp_path / "four.py").write_text(f'hosts = [{entry}, ("@dlrig-ssh/h2", {{"ssh_hostname": "127.0.9.2"}})]\n')
    one, four = (load_inventory(str(tmp_path / f), {})[0] for f in ("one.py", "four.py"))
    assert one.groups != four.groups  # pyinfra's file-name group
    assert (noop.inputs_digest("c", one.name, one.data, {}, "plan")
            == noop.inputs_digest("c", four.name, four.data, {}, "plan"))


def test_no_role_or_deploy_reads_host_groups():
    """Why the inputs digest may leave the groups out (noop.inputs_digest): nothing plans by them."""
    readers = [str(p.relative_to(ROOT)) for d in ("roles", "deploys", "dlrig/engine", "dlrig/gpu")
               for p in (ROOT / d).rglob("*.py") if re.search(r"\bhost\.groups\b(?!``)", p.read_text())]
    assert readers == [], readers


def _copy_checkout(dest: Path) -> Path:
    for name in ("dlrig", "roles", "deploys", "templates"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _code_digest(checkout: Path) -> str:
    code = "import sys; sys.path.insert(0, sys.argv[1]); from dlrig.engine import noop; print(noop.code_digest())"
    return subprocess.run([sys.executable, "-c", code, str(checkout)], capture_output=True, text=True,
                          check=True, cwd=checkout).stdout.strip()


def test_code_digest_changes_with_a_role_or_template(tmp_path):
    checkout = _copy_checkout(tmp_path / "clone")
    first = _code_digest(checkout)
    assert first == _code_digest(checkout)
    role = checkout / "roles" / "base.py"
    role.write_text(role.read_text() + "\n# a change\n")
    second = _code_digest(checkout)
    assert second != first
    tpl = next((checkout / "templates").iterdir())
    tpl.write_text(tpl.read_text() + "\n")
    assert _code_digest(checkout) != second


CHILD = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from dlrig.engine import noopread
assert noopread.start_collecting()
a, b = sys.argv[2], sys.argv[3]
open(a).read()                      # an input (a CA certificate to upload)
open(b, "w").write("scratch")       # written by the run itself: not an input
open(b).read()
c = noopread.Collector()
c.read("cat /etc/x", ["x"])
c.read("cat /etc/x", ["x"])
if len(sys.argv) > 4:
    open(a, "a").write("changed while the run read it")
c.write("h1")
"""


def _child(tmp_path, *extra: str) -> dict:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    a, b = tmp_path / "input.pem", tmp_path / "scratch"
    a.write_text("pem")
    subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(a), str(b), *extra], check=True,
                   env=dict(os.environ, **{noop.ENV: str(out)}))
    (got,) = out.iterdir()
    return json.loads(got.read_text())


def test_child_notes_files_read_and_reads_made(tmp_path):
    got = _child(tmp_path)
    assert got["ok"] is True and got["commands"] == ["cat /etc/x"]
    assert got["files"] == {str(tmp_path / "input.pem"): noop.file_digest(str(tmp_path / "input.pem"))}
    assert got["outputs"] == noop.reads_digest([("cat /etc/x", ["x"])])


def test_child_spoils_the_record_when_an_input_changed_during_the_run(tmp_path):
    assert _child(tmp_path, "change")["ok"] is False


def test_collector_spoils_on_a_read_answered_two_ways():
    from dlrig.engine.noopread import Collector

    c = Collector()
    c.read("cat /etc/x", ["x"])
    c.read("cat /etc/x", ["y"])
    assert c.ok is False


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def test_recording_then_check_hits_and_misses_on_inputs_and_local_files(tmp_path, state):
    probe, pem = tmp_path / "probe", tmp_path / "ca.pem"
    probe.write_text("v1")
    pem.write_text("pem")
    host = HostSpec("h1", {"ssh_hostname": "127.0.0.1", "extra_ca_certificates": [str(pem)]})
    other = HostSpec("h2", {"ssh_hostname": "127.0.0.2"})
    data = {"dlrig_roles": ["base"]}
    with noop.recording([host, other], "apply", data) as converged:
        out = os.environ[noop.ENV]
        child = {"v": noop.VERSION, "ok": True, "commands": [f"cat {probe}"],
                 "outputs": noop.reads_digest([(f"cat {probe}", ["v1"])]),
                 "files": {str(pem): noop.file_digest(str(pem))}}
        for name in ("h1", "h2"):
            Path(out, noop._sha(name.encode())[:32] + ".json").write_text(json.dumps(child))
        converged["h1"] = 12  # h2 changed something: no record
    assert noop.ENV not in os.environ
    path = noop.record_path("h1", host.data, "apply")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not noop.record_path("h2", other.data, "apply").exists()

    local = LocalShellClient()
    assert noop.check([host, other], "apply", data, connect=lambda h: local) == {"h1": noop.Hit("h1", 12, 1)}
    assert noop.check([host], "plan", data, connect=lambda h: local) == {}  # no plan record
    assert noop.check([host], "apply", {"dlrig_roles": ["base", "ssh"]}, connect=lambda h: local) == {}
    pem.write_text("another CA")  # the local file the run uploads changed
    assert noop.check([host], "apply", data, connect=lambda h: local) == {}
    pem.write_text("pem")
    probe.write_text("v2")  # the host changed
    assert noop.check([host], "apply", data, connect=lambda h: local) == {}


def test_records_only_for_ssh_hosts():
    assert noop.ssh_host("rig") and noop.ssh_host("@ssh/rig") and noop.ssh_host("@dlrig-ssh/rig")
    assert not noop.ssh_host("@local") and not noop.ssh_host("@chroot/x") and not noop.ssh_host("@docker/x")
