"""The OS-reinstall round trip (issue 12) on real Debian 12 test hosts: provision with cache_dir,
lock + backup, destroy the host, a fresh one at the same address with the same data disk, every
network source dead, ``apply --locked --restore``: the same packages, the same environment, the same
host key, and nothing left to plan. The steps: tests/fixtures/roundtrip.py (shared with
benchmarks/reprovision.py); what is real and what is a stand-in is said there."""

from __future__ import annotations

import json

import pytest

from dlrig.testing import pool as POOL
from tests.fixtures import roundtrip as RT

pytestmark = [pytest.mark.hosts]


@pytest.mark.slow
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


@pytest.mark.slow
def test_locked_apt_puts_purged_packages_back_from_a_cache_dir_with_spaces(make_hosts, tmp_path):
    """Locked apt on a real Debian 12 test host, cache_dir with spaces in its path: after `dlrig lock`
    the owner purges two locked packages (tmux, one of base's, the unattended_upgrades role's own) and every
    apt source is made unreachable; `apply --locked --roles unattended_upgrades` puts both back, at
    their locked versions, from the .debs in that cache_dir (the role's locked transaction; the
    purged base package rides along), and `plan --locked` shows no apt difference."""
    (h,) = make_hosts(1)
    cache = "/srv/dlrig cache/of the rig"
    data = {"extra_ca_certificates": RT.common_cas(), "cache_dir": cache}
    inv = POOL.write_inventory([h], tmp_path / "inv.py", data=data)
    r, _ = RT.dlrig("apply", str(inv), "--roles", "base,unattended_upgrades", "--yes")
    RT.must(r, "first apply")
    lock = tmp_path / "dlrig.lock"
    RT.must(RT.dlrig("lock", str(inv), "-o", str(lock))[0], "dlrig lock")
    locked = json.loads(lock.read_text())["hosts"][h.name]["apt"]
    gone = ("tmux", "unattended-upgrades")
    assert all(locked.get(p) for p in gone), {p: locked.get(p) for p in gone}
    assert all(list((h.root / cache.lstrip("/") / "apt").glob(f"{p}_*.deb")) for p in gone)

    h.ssh("sudo DEBIAN_FRONTEND=noninteractive apt-get -y purge " + " ".join(gone))
    assert "ii" not in h.ssh("dpkg-query -W -f '${db:Status-Abbrev}' tmux", check=False).stdout
    dead = f"http://127.0.0.1:{RT.dead_port()}"
    h.ssh(f"echo 'deb {dead}/debian bookworm main' | sudo tee /etc/apt/sources.list >/dev/null; "
          "sudo rm -f /etc/apt/sources.list.d/*; sudo apt-get update -qq || true")

    r, _ = RT.dlrig("apply", str(inv), "--roles", "unattended_upgrades", "--yes", "--locked", str(lock))
    RT.must(r, "apply --locked (offline)")
    have = h.ssh("dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(gone)).stdout.split("\n")
    assert sorted(line for line in have if line) == sorted(f"{p} {locked[p]}" for p in gone), have
    r, _ = RT.dlrig("plan", str(inv), "--locked", str(lock), "--json")
    RT.must(r, "plan --locked")
    diffs = json.loads(r.stdout)["differences"][h.name]
    assert not [d for d in diffs if d.startswith("apt ")], diffs
    r, _ = RT.dlrig("cache", "status", str(inv), "--json")
    sizes = json.loads(RT.must(r, "cache status").stdout)[h.name]["bytes"]
    assert sizes["apt"] > 0, sizes
