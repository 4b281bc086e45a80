"""Plans of nvidia_driver, cuda, cudnn on @fake hosts (FAKES: canned facts, no host exists).

This tier is where the Ubuntu paths are proven (which packages, pins, repository lines); the
Debian paths also run on real test hosts (tests/hosts/test_gpu_stack_hosts.py).
"""

from __future__ import annotations

import json

import pytest
from dlrig.cli.resolve import _print_doctor
from dlrig.deploys import deploy_file, report_name

from tests import nvidia_sources as nv
from tests.plans.harness import commands, fake_host, plan, run_deploy_file
from tests.ubuntu_sources import exists, ubuntu_drivers_install

ROLES = ["nvidia_driver", "cuda", "cudnn"]
LSPCI = {
    "2070s": ["0a:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [GeForce RTX 2070 SUPER] [10de:1e84] (rev a1)"],
    "2x4090": ["01:00.0 VGA compatible controller [0300]: NVIDIA Corporation AD102 [GeForce RTX 4090] [10de:2684] (rev a1)",
               "41:00.0 VGA compatible controller [0300]: NVIDIA Corporation AD102 [GeForce RTX 4090] [10de:2684] (rev a1)"],
    "1080": ["01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)"],
    "5090": ["01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GB202 [GeForce RTX 5090] [10de:2b85] (rev a1)"],
    "mixed": ["01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)",
              "02:00.0 VGA compatible controller [0300]: NVIDIA Corporation GB202 [GeForce RTX 5090] [10de:2b85] (rev a1)"],
}


def _ops(os, gpus="2070s", facts=None, **data):
    f = {"lspci": LSPCI[gpus], **(facts or {})}
    return plan([fake_host("h", os, facts=f, **data)], roles=ROLES)["h"]


def _names(ops, role=None):
    return [o["operation"] for o in ops if role is None or o["role"] == role]


def test_ubuntu_2204_default_is_canonical_signed_modules_no_dkms():
    ops = _ops("ubuntu-22.04")
    drv = commands(ops, "nvidia_driver")
    # the canned 22.04 host runs an HWE kernel (uname -r 6.8): ubuntu-drivers picks generic-hwe-22.04
    want = ubuntu_drivers_install(580, open_=True, server=False, headless=False, kernel_flavour="generic-hwe-22.04")
    assert want == ["nvidia-driver-580-open", "linux-modules-nvidia-580-open-generic-hwe-22.04"]
    assert all(exists("ubuntu-22.04", n) for n in want)
    assert f"install {' '.join(want)}" in drv
    assert f"apt-mark hold {' '.join(want)}" in drv
    assert "dkms" not in drv.replace("no-dkms", "") and "linux-headers" not in drv
    assert "blacklist nouveau" in drv and "systemctl enable nvidia-persistenced.service" in drv
    assert "dlrig-nvidia-cuda.list" not in drv  # driver from Ubuntu: no NVIDIA repo for the driver
    cuda = commands(ops, "cuda")
    assert ("deb [signed-by=/etc/apt/keyrings/dlrig-nvidia-cuda.asc,EB693B3035CD5710E231E123A4B469963BF863CC] "
            "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64 /") in cuda
    assert "repos/ubuntu2204/x86_64/3bf863cc.pub" in cuda
    assert f"install --no-install-recommends {nv.name('cuda', 'toolkit', major=13, minor=0)}" in cuda
    assert 'export PATH="/usr/local/cuda-13.0/bin:$PATH"' in cuda
    assert f"install --no-install-recommends {' '.join(nv.cudnn(9, 13))}" in commands(ops, "cudnn")


def test_ubuntu_2404_ga_kernel_headless_server():
    ops = _ops("ubuntu-24.04", driver_headless=True, driver_server=True, driver_branch=570)
    drv = commands(ops, "nvidia_driver")
    want = ubuntu_drivers_install(570, open_=True, server=True, headless=True, kernel_flavour="generic")
    assert want == ["nvidia-headless-no-dkms-570-server-open", "nvidia-utils-570-server",
                    "linux-modules-nvidia-570-server-open-generic"]
    assert all(exists("ubuntu-24.04", n) for n in want)
    assert f"install {' '.join(want)}" in drv
    assert "xserver-xorg-video-nvidia" not in drv and "nvidia-driver-570" not in drv
    # torch 2.14's builds: cu126 (GA driver 560) fits 570, cu130 (580) does not: toolkit follows torch
    assert nv.name("cuda", "toolkit", major=12, minor=6) in commands(ops, "cuda")


def test_ubuntu_2404_nvidia_source_two_4090s_pins_branch():
    ops = _ops("ubuntu-24.04", gpus="2x4090", driver_source="nvidia")
    drv = commands(ops, "nvidia_driver")
    assert ("deb [signed-by=/etc/apt/keyrings/dlrig-nvidia-cuda.asc,EB693B3035CD5710E231E123A4B469963BF863CC] "
            "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64 /") in drv
    assert "UPLOAD /etc/apt/preferences.d/dlrig-nvidia-driver" in drv
    assert "Pin: version /^(1:)?580\\./" in drv and "Pin-Priority: 1000" in drv
    want = f"{nv.name('driver', 'open')} {nv.name('driver', 'pinning', branch=580)}"
    # one transaction: the driver and the running kernel's headers (DKMS needs them)
    assert f"install {want} linux-headers-6.8.0-49-generic" in drv
    assert f"apt-mark hold {want}" in drv
    # repository added once (by the first role needing it), the toolkit from it
    assert _names(ops).count("NVIDIA CUDA repository (signed-by)") == 1
    assert nv.name("cuda", "toolkit", major=13, minor=0) in commands(ops, "cuda")


def test_ubuntu_2204_pascal_stays_proprietary_580_cuda12_cudnn_910():
    ops = _ops("ubuntu-22.04", gpus="1080", driver_source="nvidia")
    drv = commands(ops, "nvidia_driver")
    assert f"install {nv.name('driver', 'proprietary-branch', branch=580)}" in drv and "nvidia-open" not in drv
    assert nv.name("cuda", "toolkit", major=12, minor=6) in commands(ops, "cuda")
    cudnn = commands(ops, "cudnn")
    assert "Pin: version 9.10.*" in cudnn and " ".join(nv.cudnn(9, 12)) in cudnn


def test_mirror_url_is_used_everywhere():
    ops = _ops("ubuntu-22.04", driver_source="nvidia", nvidia_repo_url="https://mirror.lab.example/cuda/repos/")
    text = commands(ops)
    assert "https://mirror.lab.example/cuda/repos/ubuntu2204/x86_64 /" in text
    assert "https://mirror.lab.example/cuda/repos/ubuntu2204/x86_64/3bf863cc.pub" in text
    assert "developer.download.nvidia.com" not in text


def test_only_nvidias_key_is_trusted_by_fingerprint_unless_told_otherwise():
    text = commands(_ops("ubuntu-22.04", driver_source="nvidia"), "nvidia_driver")
    assert ("deb [signed-by=/etc/apt/keyrings/dlrig-nvidia-cuda.asc,EB693B3035CD5710E231E123A4B469963BF863CC] "
            "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64 /") in text
    text = commands(_ops("ubuntu-22.04", driver_source="nvidia", nvidia_repo_key_fingerprint=None), "nvidia_driver")
    assert "deb [signed-by=/etc/apt/keyrings/dlrig-nvidia-cuda.asc] https://" in text


def test_custom_key_url_and_checksum():
    ops = _ops("ubuntu-22.04", driver_source="nvidia", nvidia_repo_key_url="https://keys.example/nv.asc",
               nvidia_repo_key_sha256="ab" * 32)
    text = commands(ops, "nvidia_driver")
    assert "https://keys.example/nv.asc" in text and "ab" * 32 in text


def test_secure_boot_with_dkms_refuses_and_ubuntu_source_does_not():
    with pytest.raises(Exception) as e:
        _ops("ubuntu-22.04", facts={"--sb-state": ["SecureBoot enabled"]}, driver_source="nvidia")
    assert "Secure Boot is on and driver_source='nvidia'" in str(e.value)
    assert "driver_source='ubuntu'" in str(e.value) and "driver_mok_password" in str(e.value)
    ops = _ops("ubuntu-22.04", facts={"--sb-state": ["SecureBoot enabled"]})  # signed modules: fine
    assert "linux-modules-nvidia-580-open" in commands(ops, "nvidia_driver")


def test_secure_boot_mok_enrolment_when_opted_in():
    ops = _ops("ubuntu-22.04", facts={"--sb-state": ["SecureBoot enabled"], "MOK.der": ["not-enrolled"]},
               driver_source="nvidia", driver_mok_password="s3cret-once")
    text = commands(ops, "nvidia_driver")
    assert "mokutil --import /var/lib/shim-signed/mok/MOK.der" in text
    assert "update-secureboot-policy --new-key" in text
    shell = [c for op in ops if op["role"] == "nvidia_driver" for c in op["commands"] if not c.startswith("UPLOAD ")]
    assert not any("s3cret-once" in c for c in shell), "the MOK password reached a command line"
    uploads = [c for op in ops for c in op["commands"] if c.startswith("UPLOAD /var/lib/dlrig/mok-password")]
    assert uploads == ["UPLOAD /var/lib/dlrig/mok-password\ns3cret-once\ns3cret-once\n"]  # a file, not argv
    enrolled = _ops("ubuntu-22.04", facts={"--sb-state": ["SecureBoot enabled"], "MOK.der": ["enrolled"]},
                    driver_source="nvidia", driver_mok_password="s3cret-once")
    assert "mokutil --import" not in commands(enrolled, "nvidia_driver")


def test_conflicting_preinstalled_driver_is_unheld_and_purged():
    dpkg = {"dpkg -l": [
        "Desired=Unknown/Install/Remove/Purge/Hold", "||/ Name Version Architecture Description", "+++-=-=-=-=",
        "hi  nvidia-driver-535 535.183.01-0ubuntu0.22.04.1 amd64 NVIDIA driver metapackage",
        "ii  nvidia-dkms-535 535.183.01-0ubuntu0.22.04.1 amd64 NVIDIA DKMS package",
        "ii  nvidia-utils-580-open 580.95.05-0ubuntu0.22.04.1 amd64 NVIDIA driver support binaries",
        "ii  python3 3.10.6-1~22.04.1 amd64 interactive high-level object-oriented language",
    ]}
    ops = _ops("ubuntu-22.04", facts=dpkg)
    text = commands(ops, "nvidia_driver")
    assert "apt-mark unhold nvidia-dkms-535 nvidia-driver-535" in text
    assert "apt-get -y purge nvidia-dkms-535 nvidia-driver-535" in text
    assert "nvidia-utils-580-open" not in text.split("purge")[1].splitlines()[0]  # ours stays
    assert _names(ops, "nvidia_driver")[0] == "remove conflicting driver packages"


def test_debian_adds_nonfree_and_uses_distro_toolkit():
    # the captured Debian 12 host already has contrib non-free: nothing to add
    assert "dlrig-debian-nonfree" not in commands(_ops("debian-12"), "nvidia_driver")
    main_only = {"##PYINFRA_FILE": ["##PYINFRA_FILE /etc/apt/sources.list",
                                    "deb http://deb.debian.org/debian bookworm main"]}  # FAKE: a main-only host
    ops = _ops("debian-12", facts=main_only)
    drv = commands(ops, "nvidia_driver")
    assert "deb http://deb.debian.org/debian bookworm contrib non-free non-free-firmware" in drv
    assert "install nvidia-driver nvidia-smi nvidia-persistenced" in drv
    assert "linux-headers-6.1.0-27-amd64" in drv
    assert "install nvidia-cuda-toolkit" in commands(ops, "cuda")
    assert "nvidia-cudnn" in commands(ops, "cudnn")


def test_debian_13_deb822_host_gets_its_own_driver_and_toolkit():
    # the captured Debian 13 host lists contrib non-free in deb822 debian.sources: nothing to add
    ops = _ops("debian-13")
    drv = commands(ops, "nvidia_driver")
    assert "dlrig-debian-nonfree" not in drv
    assert "install nvidia-driver nvidia-smi nvidia-persistenced" in drv
    assert "linux-headers-6.12.118+deb13-amd64" in drv
    assert "install nvidia-cuda-toolkit" in commands(ops, "cuda")
    main_only = {"##PYINFRA_FILE": ["##PYINFRA_FILE /etc/apt/sources.list.d/debian.sources", "Types: deb",
                                    "URIs: http://deb.debian.org/debian", "Suites: trixie",
                                    "Components: main"]}  # FAKE: a main-only deb822 host
    added = commands(_ops("debian-13", facts=main_only), "nvidia_driver")
    assert "deb http://deb.debian.org/debian trixie contrib non-free non-free-firmware" in added


def test_cpu_only_does_nothing_gpu_related():
    assert _ops("ubuntu-22.04", cpu_only=True) == []


def test_refusal_stops_the_plan_with_one_line():
    with pytest.raises(Exception) as e:
        _ops("ubuntu-24.04", gpus="mixed")
    assert "needs the open kernel modules" in str(e.value)
    with pytest.raises(Exception) as e:
        _ops("ubuntu-22.04", facts={"lspci": []})
    assert "lspci shows no NVIDIA GPU" in str(e.value)


def test_driver_gpus_overrides_lspci():
    ops = _ops("ubuntu-22.04", gpus="2070s", driver_gpus=["GTX 1080"])
    want = ubuntu_drivers_install(580, open_=False, server=False, headless=False, kernel_flavour="generic-hwe-22.04")
    assert f"install {' '.join(want)}" in commands(ops, "nvidia_driver")


@pytest.mark.parametrize("os_name, kernel, flavour", [
    ("ubuntu-22.04", "5.15.0-125-generic", "generic"), ("ubuntu-22.04", "6.8.0-49-generic", "generic-hwe-22.04"),
    ("ubuntu-24.04", "6.8.0-49-generic", "generic"), ("ubuntu-24.04", "6.14.0-37-generic", "generic-hwe-24.04")])
@pytest.mark.parametrize("server", [False, True])
@pytest.mark.parametrize("headless", [False, True])
@pytest.mark.parametrize("gpus, open_", [("2x4090", True), ("1080", False)])
def test_ubuntu_source_installs_what_ubuntu_drivers_would(os_name, kernel, flavour, server, headless, gpus, open_):
    """Every release x kernel x server x headless x flavour: the names Ubuntu publishes (recorded sources)."""
    ops = _ops(os_name, gpus=gpus, facts={"uname -r": [kernel]}, driver_server=server, driver_headless=headless)
    want = ubuntu_drivers_install(580, open_=open_, server=server, headless=headless, kernel_flavour=flavour)
    assert [n for n in want if not exists(os_name, n)] == []
    drv = commands(ops, "nvidia_driver")
    line = [ln for ln in drv.splitlines() if "apt-get" in ln and " install " in ln and "nvidia" in ln][-1]
    assert line.split(" install ")[1].split() == want
    assert not any(n.endswith("-open") for n in line.split() if n.startswith(("nvidia-utils", "libnvidia", "xserver")))



def test_doctor_plan_lists_the_packages_this_hosts_settings_install(tmp_path, capsys):
    """dlrig doctor's plan names the apt packages of driver, cuda and cudnn as this host would get them
    (headless, no cuDNN headers, its 6.8 GA kernel), and its text output shows them."""
    run_deploy_file(fake_host("h", "ubuntu-24.04", facts={"lspci": LSPCI["2070s"]}, dlrig_doctor_out=str(tmp_path),
                              driver_headless=True, cudnn_dev=False), deploy_file("doctor"))
    report = json.loads((tmp_path / report_name("@fake/h")).read_text())
    plan_ = report["resolution"]
    want = ubuntu_drivers_install(580, open_=True, server=False, headless=True, kernel_flavour="generic")
    assert all(exists("ubuntu-24.04", n) for n in want)
    assert plan_["driver"]["packages"] == want
    assert plan_["cuda"]["packages"] == [f"cuda-toolkit-{plan_['cuda']['version'].replace('.', '-')}"]
    assert plan_["cudnn"]["packages"] and not any(p.endswith("-dev") for p in plan_["cudnn"]["packages"])
    _print_doctor("h", report)
    out = capsys.readouterr().out
    assert f"plan driver  580 open from ubuntu ({', '.join(want)})" in out
    assert f"plan cuda    {plan_['cuda']['version']} (nvidia: {plan_['cuda']['packages'][0]})" in out
    assert f"plan cudnn   {plan_['cudnn']['version']} ({', '.join(plan_['cudnn']['packages'])})" in out
