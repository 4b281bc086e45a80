"""`dlrig verify` against Debian 12 test hosts over real SSH (real CLI, real testinfra, real apt).

The host gets the real non-free ``nvidia-smi`` package from Debian but has no GPU (this machine
has none): the GPU checks must fail with nvidia-smi's own words and a hint, the rest pass, and a
``cpu_only`` profile must pass cleanly. Torch on the host is the real CPU wheel from /opt/wheels
(and its dependencies), installed into a venv from a wheelhouse copied onto the host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlrig.testing import image as IMAGE
from dlrig.testing import pool as POOL

# Small base package list: the base role's full essentials (build-essential...) cost minutes
# and prove nothing here; pciutils gives the GPU hints their lspci evidence.
BASE_DATA = {"base_packages": ["ca-certificates", "pciutils", "kmod"]}
SMI_FAILED = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"
TORCH_PY = "/opt/torchenv/bin/python"


def _dlrig(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlrig", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def _results(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    payload = json.loads(proc.stdout)
    return {r["check"]: r for r in payload["results"]}


@pytest.fixture(scope="session")
def torch_wheelhouse() -> Path:
    """torch 2.13 CPU and its dependencies as wheels (downloaded once, cached)."""
    house = IMAGE.default_cache_dir() / "wheelhouse-torch-cpu"
    if not list(house.glob("torch-2.13.0*.whl")):
        house.mkdir(parents=True, exist_ok=True)
        res = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "torch==2.13.0", "-d", str(house),
                              "--only-binary=:all:", "--python-version", "3.11",
                              "--platform", "manylinux_2_28_x86_64"],
                             capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            pytest.skip(f"cannot download the torch CPU wheelhouse: {res.stderr.strip()[-300:]}")
    return house


@pytest.fixture(scope="module")
def gpu_less_host(golden_image, tmp_path_factory):
    """One Debian 12 host for this module (apply + apt cost ~1 min): `dlrig apply --roles base`,
    then the real nvidia-smi package (and python3-venv for the torch env)."""
    workdir = tmp_path_factory.mktemp("verify-hosts")
    with POOL.HostPool(workdir / "pool", golden_image) as pool:
        (h,) = pool.start_many(1, ["nogpu"])
        inv = POOL.write_inventory([h], workdir / "inventory.py", data=BASE_DATA)
        t0 = time.monotonic()
        res = _dlrig("apply", str(inv), "--roles", "base", "--yes", "--json", cwd=workdir)
        assert res.returncode == 0, res.stdout + res.stderr
        h.ssh("sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
              "nvidia-smi python3-venv", timeout=600)
        print(f"apply base + apt install nvidia-smi: {time.monotonic() - t0:.1f} s")
        yield h, inv


@pytest.mark.hosts
@pytest.mark.slow
def test_verify_without_gpu_fails_gpu_checks_with_reason_and_hint(gpu_less_host, tmp_path):
    h, inv = gpu_less_host
    rc9 = h.ssh("nvidia-smi", check=False)
    assert rc9.returncode == 9 and SMI_FAILED in rc9.stdout  # the real package, really failing

    t0 = time.monotonic()
    junit = tmp_path / "verify.xml"
    res = _dlrig("verify", str(inv), "--roles", "base,gpu", "--json", "--junit", str(junit), cwd=tmp_path)
    print(f"dlrig verify (base,gpu): {time.monotonic() - t0:.1f} s")
    assert res.returncode == 1, res.stdout + res.stderr
    results = _results(res)
    smi = results["gpu::nvidia_smi_lists_gpus"]
    assert smi["result"] == "failed"
    assert smi["reason"] == f"nvidia-smi exit 9: {SMI_FAILED}."
    # no NVIDIA device on this machine's PCI bus: the hint says so instead of "reboot"
    assert "no NVIDIA GPU on the PCI bus" in smi["hint"] and "cpu_only=True" in smi["hint"]
    # the rest passes (or is skipped with its reason); nothing crashed
    for name, r in results.items():
        if name == "gpu::nvidia_smi_lists_gpus":
            continue
        assert r["result"] in ("passed", "skipped"), r
    for name in ("base::essential_packages_installed", "base::apt_waits_for_dpkg_lock",
                 "base::dpkg_audit_clean", "gpu::nouveau_not_loaded"):
        assert results[name]["result"] == "passed", results[name]
    assert results["gpu::driver_is_resolved_branch"]["reason"].startswith("needs a working nvidia-smi")
    xml = junit.read_text()
    assert 'name="gpu::nvidia_smi_lists_gpus"' in xml and "<failure" in xml

    # the human table: the row, the reason and the hint
    table = _dlrig("verify", str(inv), "--roles", "base,gpu", cwd=tmp_path)
    print(table.stdout)
    assert table.returncode == 1
    row = next(line for line in table.stdout.splitlines() if line.startswith("gpu::nvidia_smi_lists_gpus"))
    assert " FAIL " in row and "no NVIDIA GPU on the PCI bus" in row
    assert "why: nvidia-smi exit 9: NVIDIA-SMI has failed" in table.stdout
    assert "nogpu: 4 passed, 1 failed" in table.stdout


@pytest.mark.hosts
@pytest.mark.slow
def test_verify_reboot_hint_when_driver_is_newer_than_boot(gpu_less_host, tmp_path):
    """FAKES (named): an `lspci` wrapper that reports an RTX 2070 SUPER and a `modinfo` wrapper that
    reports an nvidia module, both in /usr/local/sbin on the host. nvidia-smi, its exit 9 and the
    package install time (after this machine booted) are real: the hint must say reboot."""
    h, inv = gpu_less_host
    h.ssh("printf '%s\\n' '#!/bin/sh' "
          "'echo \"0a:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 "
          "[GeForce RTX 2070 SUPER] [10de:1e84] (rev a1)\"' | sudo -n tee /usr/local/sbin/lspci >/dev/null && "
          "printf '%s\\n' '#!/bin/sh' 'case \"$*\" in *version*) echo 535.216.01;; *filename*) "
          "echo /lib/modules/x/updates/dkms/nvidia.ko;; *) echo;; esac' | sudo -n tee /usr/local/sbin/modinfo "
          ">/dev/null && sudo -n chmod 755 /usr/local/sbin/lspci /usr/local/sbin/modinfo")
    try:
        res = _dlrig("verify", str(inv), "--roles", "gpu", "--json", cwd=tmp_path)
    finally:
        h.ssh("sudo -n rm -f /usr/local/sbin/lspci /usr/local/sbin/modinfo")
    assert res.returncode == 1, res.stdout + res.stderr
    smi = _results(res)["gpu::nvidia_smi_lists_gpus"]
    assert smi["reason"] == f"nvidia-smi exit 9: {SMI_FAILED}."
    assert smi["hint"].startswith("reboot: the driver was installed or changed after the last boot"), smi


@pytest.mark.hosts
@pytest.mark.slow
def test_cpu_only_profile_passes_and_torch_runs_on_cpu(gpu_less_host, torch_wheelhouse, tmp_path):
    h, inv = gpu_less_host
    t0 = time.monotonic()
    dest = h.root / "opt/wheelhouse"
    shutil.copytree(torch_wheelhouse, dest, dirs_exist_ok=True)
    h.ssh(f"sudo -n python3 -m venv /opt/torchenv && sudo -n {TORCH_PY} -m pip install -q --no-index "
          "--find-links /opt/wheelhouse torch==2.13.0", timeout=900)
    print(f"torch CPU env on the host: {time.monotonic() - t0:.1f} s")

    # cpu_only: GPU checks skipped with the reason, torch checked on the CPU, exit 0
    t0 = time.monotonic()
    res = _dlrig("verify", str(inv), "--roles", "base,gpu", "--data", "cpu_only=True", "--python", TORCH_PY,
                 "--json", cwd=tmp_path)
    print(f"dlrig verify cpu_only: {time.monotonic() - t0:.1f} s")
    assert res.returncode == 0, res.stdout + res.stderr
    results = _results(res)
    assert results["gpu::torch_imports"]["result"] == "passed"
    assert "torch 2.13.0+cpu" in results["gpu::torch_imports"]["info"]
    assert results["gpu::nvidia_smi_lists_gpus"]["result"] == "skipped"
    assert "cpu_only=True" in results["gpu::nvidia_smi_lists_gpus"]["reason"]
    assert all(r["result"] in ("passed", "skipped") for r in results.values())

    # the same env on the GPU profile: a CPU build of torch on a GPU host says which index to use
    res = _dlrig("verify", str(inv), "--roles", "gpu", "--python", TORCH_PY, "--json", cwd=tmp_path)
    assert res.returncode == 1
    cuda = _results(res)["gpu::torch_cuda_available"]
    assert cuda["result"] == "failed"
    assert "torch 2.13.0+cpu is a CPU build" in cuda["reason"]
    assert "download.pytorch.org/whl/" in cuda["hint"]
