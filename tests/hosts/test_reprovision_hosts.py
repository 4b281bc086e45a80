"""The OS-reinstall round trip (issue 12) on real Debian 12 test hosts: provision with cache_dir,
lock + backup, destroy the host, a fresh one at the same address with the same data disk, every
network source dead, ``apply --locked --restore``: the same packages, the same environment, the same
host key, and nothing left to plan. The steps: tests/fixtures/roundtrip.py (shared with
benchmarks/reprovision.py); what is real and what is a stand-in is said there."""

from __future__ import annotations

import json

import pytest

from tests.fixtures import roundtrip as RT

pytestmark = [pytest.mark.hosts, pytest.mark.slow]


def test_reinstall_round_trip_from_the_cache_alone(golden_image, tmp_path, record_property):
    index = RT.torch_index()
    rt = RT.round_trip(golden_image, index, tmp_path)
    measured = RT.measures(rt, index)
    record_property("reprovision", measured)
    print("\nreprovision: " + json.dumps(measured))

    # the lock: exact versions with hashes, and nothing private in it or in any output
    entry = json.loads(rt.lock_text)["hosts"]["rig"]
    assert entry["pip"]["torch"]["version"] == f"{RT.TORCH}+cpu" and len(entry["pip"]["torch"]["sha256"]) == 64
    assert entry["pip"]["fastai"]["version"] and entry["jupyterlab"] and entry["python"].startswith("3.11")
    assert entry["apt"]["curl"] and entry["miniforge"]["sha256"] == rt.installer_sha256
    assert any("/python-3.11" in line for line in entry["conda"]["explicit"])
    for secret in (rt.private_key_line, rt.password_hash, "PRIVATE KEY"):
        assert secret not in rt.lock_text and secret not in rt.outputs
    assert rt.backup.stat().st_mode & 0o777 == 0o600

    # the reinstalled host: new host keys at first, then the same rig as before
    assert rt.first_gone
    assert rt.fresh_keys and rt.fresh_keys != rt.before["ssh host keys"]
    for what, before in rt.before.items():
        assert before, f"{what}: empty on the first host"
        assert rt.after[what] == before, f"{what} differs after the round trip"
    assert rt.plan.returncode == 0, rt.plan.stderr[-3000:]
    assert json.loads(rt.plan.stdout)["changes"] == []
    assert rt.plan_locked.returncode == 0, rt.plan_locked.stderr[-3000:]
    assert json.loads(rt.plan_locked.stdout)["differences"] == {"rig": []}

    # converged from the cache alone: no package, wheel or installer was added to it
    for kind in ("apt", "wheels", "miniforge"):
        assert rt.cache_after_second[kind] == rt.cache_after_lock[kind], kind
    sizes = json.loads(rt.cache_status.stdout)["rig"]["bytes"]
    assert sizes["apt"] > 0 and sizes["wheels"] > 0 and sizes["miniforge"] > 0, sizes
