"""Ubuntu's driver package names: the table is generated from the recorded sources, every name the
code produces exists in them, and ``dlrig resolve --json`` lists them (expectations read from
tools/sources/ubuntu/, never from the code under test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlrig.gpu import packages
from tests.ubuntu_sources import binaries, exists, ubuntu_drivers_install

ROOT = Path(__file__).resolve().parents[2]
RELEASES = ("ubuntu-22.04", "ubuntu-24.04")


def test_generated_table_is_fresh():
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_ubuntu_packages.py"), "--check"])
    assert res.returncode == 0, "run python3 tools/gen_ubuntu_packages.py"


def _recorded_branches(release):
    return sorted({int(n.split("-")[2]) for n in binaries(release) if n.startswith("nvidia-driver-")})


@pytest.mark.parametrize("release", RELEASES)
def test_every_recorded_branch_and_flavour_gives_names_ubuntu_has(release):
    seen = 0
    for branch in _recorded_branches(release):
        for server in (False, True):
            for open_ in (False, True):
                for headless in (False, True):
                    want = ubuntu_drivers_install(branch, open_, server, headless, "generic")
                    if not all(exists(release, n) for n in want[:-1]):
                        with pytest.raises(packages.UnavailablePackages):
                            packages.ubuntu_driver(release, branch, open_, server, headless)
                        continue
                    assert packages.ubuntu_driver(release, branch, open_, server, headless) == want
                    seen += 1
    assert seen > 40  # 535..595, desktop and server, open and proprietary


def test_userspace_names_never_carry_open_in_ubuntu():
    for release in RELEASES:
        names = binaries(release)
        assert "nvidia-utils-580" in names and "nvidia-utils-580-open" not in names
        assert "libnvidia-gl-580" in names and "libnvidia-gl-580-open" not in names
        assert "nvidia-driver-580-open" in names and "nvidia-headless-no-dkms-580-open" in names


def test_a_branch_ubuntu_never_packaged_is_refused_with_the_fix():
    assert not exists("ubuntu-24.04", "nvidia-driver-545")  # recorded: 545 only for jammy
    with pytest.raises(packages.UnavailablePackages) as e:
        packages.ubuntu_driver("ubuntu-24.04", 545, open_modules=True)
    msg = str(e.value)
    assert "ubuntu-24.04 has no nvidia-driver-545-open" in msg and "driver_branch" in msg and "\n" not in msg
    assert "580" in msg and "545" not in msg.split(":", 1)[1].split(";")[0]


@pytest.mark.parametrize("release, kernel, flavour", [
    ("ubuntu-22.04", "5.15.0-125-generic", "generic"), ("ubuntu-22.04", "6.8.0-49-generic", "generic-hwe-22.04"),
    ("ubuntu-24.04", "6.8.0-49-generic", "generic"), ("ubuntu-24.04", "6.14.0-37-generic", "generic-hwe-24.04"),
    ("ubuntu-24.04", "6.8.0-49-lowlatency", "lowlatency"), ("ubuntu-24.04", "", "generic")])
def test_kernel_flavour_of_uname(release, kernel, flavour):
    assert packages.ubuntu_kernel_flavour(release, kernel) == flavour


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("gpu, open_", [("RTX 4090", True), ("GTX 1080", False)])
def test_resolve_json_lists_only_packages_ubuntu_has(release, gpu, open_):
    out = subprocess.run([sys.executable, "-m", "dlrig", "resolve", "--gpu", gpu, "--os", release, "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    j = json.loads(out.stdout)
    d = j["driver"]
    assert d["packages"] == ubuntu_drivers_install(d["branch"], open_, False, False, "generic")
    assert [n for n in d["packages"] if not exists(release, n)] == []
    assert j["cuda"]["packages"] == [f"cuda-toolkit-{j['cuda']['version'].replace('.', '-')}"]
    assert j["cudnn"]["packages"] and all(p.startswith("cudnn9-cuda-") for p in j["cudnn"]["packages"])
    human = subprocess.run([sys.executable, "-m", "dlrig", "resolve", "--gpu", gpu, "--os", release],
                           capture_output=True, text=True, cwd=ROOT).stdout
    assert all(n in human for n in d["packages"] + j["cuda"]["packages"] + j["cudnn"]["packages"])


def test_resolve_json_debian_and_nvidia_sources_list_their_packages():
    run = lambda *a: json.loads(subprocess.run([sys.executable, "-m", "dlrig", "resolve", "--json", *a],
                                               capture_output=True, text=True, cwd=ROOT, check=True).stdout)
    deb = run("--gpu", "RTX 4090", "--os", "debian-12")
    assert deb["driver"]["packages"] == ["nvidia-driver", "nvidia-smi", "nvidia-persistenced"]
    assert deb["cuda"]["packages"] == ["nvidia-cuda-toolkit"]
    nv = run("--gpu", "RTX 4090", "--os", "ubuntu-24.04", "--source", "nvidia")
    assert nv["driver"]["packages"][0] == "nvidia-open"
    assert run("--cpu-only", "--os", "ubuntu-24.04")["driver"] is None
