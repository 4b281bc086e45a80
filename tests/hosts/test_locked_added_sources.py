"""Issue 12: ``apply --locked`` refuses, naming what moved, a locked version that is in none of
cache_dir, the apt sources configured now, and the sources the run itself adds — before ANY
operation of the run changes the host. Real apt/dpkg on a Debian 12 test host over real SSH, through
the real CLI, with base's locked transaction ahead of the NVIDIA repository in the run.

FAKES: the NVIDIA repository (tests/hosts/test_gpu_stack_hosts.py's: .debs built here with NVIDIA's
package names and versions, a Release signed with a throwaway gpg key, served on 127.0.0.1; nothing
of NVIDIA's) and ``dlrig-fake-base-tool``, a .deb built here and put in the host's apt archives so
base's locked transaction has something to install without any source. The test host has no GPU:
``driver_gpus`` names the card to plan for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dlrig.testing import pool as POOL
from tests.fixtures import roundtrip as RT
from tests.hosts.test_gpu_stack_hosts import FAKE_PACKAGES, FAST, _fingerprint, fake_nvidia_repo  # noqa: F401

pytestmark = pytest.mark.hosts

ROLES = "base,nvidia_driver,cuda,cudnn"
REFUSAL = "locked apt versions are not available from cache_dir or any apt source: "
BASE_TOOL = ("dlrig-fake-base-tool", "1.0-1")
#: the FAKE repository's 580 driver, CUDA 13.0 and cuDNN packages (not the 590 decoy)
GPU_LOCKED = {name: ver for name, ver, _, _ in FAKE_PACKAGES if not ver.startswith("590")}
#: what the host's apt/dpkg state is, for "untouched": dpkg's database, apt's sources, keys, pins,
#: configuration and lists, the archives, the module blacklists the driver role writes
WATCHED = ("var/lib/dpkg/status", "etc/apt", "var/lib/apt/lists", "var/lib/apt/extended_states",
           "var/lib/apt/periodic", "var/cache/apt/archives", "etc/modprobe.d", "etc/profile.d",
           "usr/local/share/ca-certificates")


def _fake_deb(tmp_path: Path, name: str, version: str) -> Path:
    pkg = tmp_path / "build" / name
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: dlrig tests <fake@dlrig.invalid>\n"
        f"Description: FAKE package for dlrig tests (base's locked transaction)\n")
    (pkg / "usr/share/doc" / name).mkdir(parents=True)
    (pkg / "usr/share/doc" / name / "FAKE").write_text("a dlrig test package\n")
    deb = tmp_path / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(pkg), str(deb)], check=True,
                   capture_output=True)
    return deb


def _state(h) -> dict[str, str]:
    """Every watched file and folder of the host with a digest of its content (and its mtime), plus
    ``dpkg-query -W`` (status and version of every package)."""
    out = {}
    for rel in WATCHED:
        top = h.root / rel
        for p in sorted([top, *top.rglob("*")] if top.is_dir() else [top]):
            if p.is_symlink():
                out[str(p.relative_to(h.root))] = "-> " + str(p.readlink())
            elif p.is_file():
                out[str(p.relative_to(h.root))] = f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_mtime_ns}"
            elif p.is_dir():
                out[str(p.relative_to(h.root)) + "/"] = str(p.stat().st_mtime_ns)
    out["dpkg-query -W"] = h.ssh("dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package} ${Version}\\n'").stdout
    return out


def _tmp_dirs(h) -> set[str]:
    """mktemp's files and folders in the host's /tmp (the temporary apt state is one)."""
    return {n for n in h.ssh("sudo ls -A /tmp").stdout.split() if n.startswith("tmp.")}


def _versions(h, *names: str) -> dict[str, str]:
    out = h.ssh("dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\\n' " + " ".join(names)
                + " 2>/dev/null || true").stdout
    # installed ("ii", or "hi": the driver's packages are held)
    return {f[1]: f[2] for f in (line.split() for line in out.splitlines()) if len(f) == 3 and f[0][1:] == "i"}


def _lock_with(tmp_path: Path, name: str, entry: dict, host: str, apt: dict) -> Path:
    e = json.loads(json.dumps(entry))
    e["apt"].update(apt)
    path = tmp_path / name
    path.write_text(json.dumps({"dlrig_lock": 1, "hosts": {host: e}}))
    return path


def test_a_version_the_added_repository_lacks_is_refused_before_any_change(make_hosts, tmp_path, fake_nvidia_repo):
    (h,) = make_hosts(1)
    data = {**FAST, "driver_source": "nvidia", "nvidia_repo_url": fake_nvidia_repo,
            "nvidia_repo_key_fingerprint": _fingerprint(fake_nvidia_repo), "extra_ca_certificates": RT.common_cas()}
    inv = POOL.write_inventory([h], tmp_path / "inv.py", data=data)
    deb = _fake_deb(tmp_path, *BASE_TOOL)
    archives = h.root / "var/cache/apt/archives"
    archives.mkdir(parents=True, exist_ok=True)
    shutil.copy2(deb, archives / deb.name)

    # the lock: what this host has (dlrig lock), plus base's FAKE tool and the NVIDIA packages
    r, _ = RT.dlrig("lock", str(inv), "-o", str(tmp_path / "host.lock"), timeout=600)
    RT.must(r, "dlrig lock")
    entry = json.loads((tmp_path / "host.lock").read_text())["hosts"][h.name]
    moved = _lock_with(tmp_path, "moved.lock", entry, h.name,
                       {"dlrig-fake-base-tool": BASE_TOOL[1], **GPU_LOCKED, "nvidia-open": "580.99.99-1"})

    before, tmp_before = _state(h), _tmp_dirs(h)
    assert not (h.root / "etc/apt/sources.list.d/dlrig-nvidia-cuda.list").exists()

    # 1. the locked driver is in no source, the NVIDIA repository this run adds included: refused
    #    while planning (base's transaction and the repository never happen)
    r, took = RT.dlrig("apply", str(inv), "--roles", ROLES, "--yes", "--locked", str(moved), timeout=900)
    text = r.stdout + r.stderr
    print(f"refused apply --locked: {took:.1f} s")
    assert r.returncode != 0, text[-3000:]
    line = next((x for x in text.splitlines() if REFUSAL in x), None)
    assert line is not None, text[-3000:]
    assert "nvidia-open: locked 580.99.99-1, available: " in line and "580.95.05-1" in line, line
    assert "dlrig-fake-base-tool" not in line and "cuda-toolkit" not in line, line  # only what moved
    assert _state(h) == before
    assert not (h.root / "etc/apt/sources.list.d/dlrig-nvidia-cuda.list").exists()
    assert _tmp_dirs(h) == tmp_before, "the temporary apt state was left on the host"

    # 2. the repository's key cannot be fetched while planning: the refusal says so
    dead_key = f"http://127.0.0.1:{RT.dead_port()}/3bf863cc.pub"
    r, _ = RT.dlrig("apply", str(inv), "--roles", ROLES, "--yes", "--locked", str(moved),
                    "--data", f"nvidia_repo_key_url={dead_key}", timeout=900)
    text = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"NVIDIA CUDA repository: its key {dead_key} could not be fetched" in text, text[-3000:]
    assert _state(h) == before and _tmp_dirs(h) == tmp_before

    # 3. the versions are in the repository the run adds: base's transaction, the repository, the
    #    GPU roles' locked installs all run and converge
    present = _lock_with(tmp_path, "present.lock", entry, h.name, {"dlrig-fake-base-tool": BASE_TOOL[1], **GPU_LOCKED})
    r, took = RT.dlrig("apply", str(inv), "--roles", ROLES, "--yes", "--locked", str(present), timeout=1200)
    RT.must(r, "apply --locked (versions in the added repository)")
    print(f"converging apply --locked: {took:.1f} s")
    assert _versions(h, BASE_TOOL[0], *GPU_LOCKED) == {BASE_TOOL[0]: BASE_TOOL[1], **GPU_LOCKED}
    assert {"nvidia-open", "nvidia-driver-pinning-580"} <= set(h.ssh("apt-mark showhold").stdout.split())
    assert (h.root / "etc/apt/sources.list.d/dlrig-nvidia-cuda.list").exists()
    assert _tmp_dirs(h) == tmp_before
    r, _ = RT.dlrig("plan", str(inv), "--locked", str(present), "--json", timeout=600)
    diffs = json.loads(RT.must(r, "plan --locked").stdout.strip().splitlines()[-1])["differences"][h.name]
    assert not [d for d in diffs if d.startswith("apt ")], diffs
