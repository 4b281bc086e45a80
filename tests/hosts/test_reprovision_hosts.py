"""The OS-reinstall round trip (issue 12) on Debian 12 test hosts, over real SSH, through the real CLI.

provision (base, conda, pytorch, jupyter, ssh; cpu_only) with ``cache_dir`` on a folder of this
machine bind-mounted into the host -> ``dlrig lock`` + ``dlrig backup`` -> the host is destroyed
-> a fresh host from the golden image at the SAME address with the same folder mounted -> every
network source made unreachable (the local index and installer server is shut down and its URLs
point at a dead 127.0.0.1 port; the host's apt sources and pip.conf too) -> ``dlrig apply
--locked --restore`` converges from the cache alone -> ``dpkg-query -W``, ``pip freeze``, ``conda
list --explicit`` and the SSH host key equal the first host's -> ``plan`` plans no change.

The environment chosen for speed (CI runs on 2 cores): the CPU build of torch 2.13.0 from this
machine's /opt/wheels, served with torchvision 0.28.0 and its closure as a local PEP 503 index
(the stand-in for download.pytorch.org/whl/cpu, tests/fixtures/pyindex.py), not the ~6 GB CUDA
build ml_rig uses: the lock, the wheelhouse and the hash-checked offline install are the same
code either way. fastai, ipykernel and JupyterLab are real, from PyPI (the pytorch role always
installs them). STAND-IN: the Miniforge installer and its conda (tests/fixtures/miniforge_standin.py):
its explicit spec holds only python and pip records, so ``conda list --explicit`` equality proves
the locked spec is replayed, not conda's package cache.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlrig.engine import passwords
from dlrig.testing import image as IMAGE
from dlrig.testing import pool as POOL
from dlrig.testing import write_inventory
from tests.fixtures import pyindex
from tests.fixtures.miniforge_standin import build_installer

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))
TORCH = "2.13.0"
TORCHVISION = "0.28.0"
ROLES = "base,conda,pytorch,jupyter,ssh"
CACHE = "/srv/dlrig-cache"
PREFIX = f"/home/{IMAGE.USER}/miniforge3"
ENV = f"{PREFIX}/envs/dl"


def dlrig(*args: str, timeout: int = 3600) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", *args], capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - start


def dead_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state(host) -> dict[str, str]:
    """What must be identical after the round trip."""
    return {
        "dpkg": host.ssh("dpkg-query -W").stdout,
        "pip freeze": host.ssh(f"{ENV}/bin/python -m pip freeze").stdout,
        "conda explicit": host.ssh(f"{PREFIX}/bin/conda list --explicit --md5 -p {ENV}").stdout,
        "host keys": "".join(sorted(subprocess.run(["ssh-keyscan", "-T", "5", host.address], capture_output=True,
                                                   text=True).stdout.splitlines(True))),
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def torch_index() -> Path:
    return pyindex.build_index(IMAGE.default_cache_dir() / f"torch-index-{TORCH}-cpu",
                               [f"torch=={TORCH}+cpu", f"torchvision=={TORCHVISION}"])


def test_reinstall_round_trip_from_the_cache_alone(golden_image, torch_index, tmp_path, record_property):
    disk = tmp_path / "data-disk"  # outlives both hosts, like a data disk outlives an OS reinstall
    disk.mkdir()
    served = tmp_path / "served"
    installer = build_installer(served / "miniforge")
    os.symlink(torch_index, served / "torch")
    lock, backup = tmp_path / "dlrig.lock", tmp_path / "dlrig.backup"
    timings: dict[str, float] = {}
    common = {
        "extra_ca_certificates": MACHINE_CAS,
        "cpu_only": True,
        "cache_dir": CACHE,
        "conda_installer_sha256": sha256(installer),
        "torch_version": TORCH,
        "jupyter_password_hash": passwords.hash_password("correct horse"),
    }

    with POOL.HostPool(tmp_path / "first", golden_image, binds={disk: CACHE}) as pool:
        first = pool.start("rig")
        data = {**common, "jupyter_ip": first.address}
        with pyindex.serve(served) as url:
            inv = write_inventory([first], tmp_path / "inv.py", data={
                **data, "conda_installer_url": f"{url}/miniforge/{installer.name}",
                "pip_index_url": f"{url}/torch/simple"})
            r, timings["first apply"] = dlrig("apply", str(inv), "--roles", ROLES, "--yes")
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
            r, timings["lock"] = dlrig("lock", str(inv), "-o", str(lock))
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        r, _ = dlrig("backup", str(inv), "-o", str(backup))
        assert r.returncode == 0, r.stderr[-3000:]
        before = state(first)
        address = first.address
        # nothing private in the lock or in any output; the backup is 0600
        text = lock.read_text()
        key = first.ssh("sudo cat /etc/ssh/ssh_host_ed25519_key").stdout.splitlines()[1]
        assert key not in text and key not in r.stdout + r.stderr and "PRIVATE KEY" not in r.stdout + text
        assert common["jupyter_password_hash"] not in text + r.stdout + r.stderr  # nor the Jupyter password hash
        assert backup.stat().st_mode & 0o777 == 0o600
        entry = json.loads(text)["hosts"]["rig"]
        assert entry["pip"]["torch"]["version"] == f"{TORCH}+cpu" and len(entry["pip"]["torch"]["sha256"]) == 64
        assert entry["apt"]["curl"] and entry["miniforge"]["sha256"] == sha256(installer)
        assert entry["jupyterlab"] and entry["python"].startswith("3.11")
    assert not (tmp_path / "first" / "rig").exists()  # the first host is gone, its data disk is not

    dead = f"http://127.0.0.1:{dead_port()}"
    with POOL.HostPool(tmp_path / "second", golden_image, binds={disk: CACHE}) as pool:
        second = pool.start("rig", address=address)
        assert state(second)["host keys"] != before["host keys"]  # a reinstalled OS: new host keys
        # every network source points at a dead port: apt's sources, pip's index, the installer
        second.ssh(f"echo 'deb {dead}/debian bookworm main' | sudo tee /etc/apt/sources.list >/dev/null; "
                   f"printf '[global]\\nindex-url = {dead}/simple\\n' | sudo tee /etc/pip.conf >/dev/null")
        offline = write_inventory([second], tmp_path / "offline.py", data={
            **common, "jupyter_ip": second.address,
            "conda_installer_url": f"{dead}/miniforge/{installer.name}", "pip_index_url": f"{dead}/torch/simple"})
        r, timings["locked apply"] = dlrig("apply", str(offline), "--roles", ROLES, "--yes",
                                           "--locked", str(lock), "--restore", str(backup))
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-5000:]
        after = state(second)
        for what in before:
            assert after[what] == before[what], f"{what} differs after the round trip"
        r, _ = dlrig("plan", str(offline), "--roles", ROLES, "--json")
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads(r.stdout)["changes"] == []
        r, _ = dlrig("plan", str(offline), "--locked", str(lock), "--json")
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads(r.stdout)["differences"] == {"rig": []}
        r, _ = dlrig("cache", "status", str(offline), "--json")
        sizes = json.loads(r.stdout)["rig"]["bytes"]
        assert sizes["apt"] > 0 and sizes["wheels"] > 0 and sizes["miniforge"] > 0, sizes
    record_property("timings", {k: round(v, 1) for k, v in timings.items()})
    print("\nreprovision timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
