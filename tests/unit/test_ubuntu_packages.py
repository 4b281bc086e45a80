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
from tests import nvidia_sources as nv
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
    major, minor = j["cuda"]["version"].split(".")
    assert j["cuda"]["packages"] == [nv.name("cuda", "toolkit", major=major, minor=minor)]
    assert j["cudnn"]["packages"] == nv.cudnn(9, int(major))
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


# ------------------------------------------ every source and part, without a subprocess (fast)

def _res(os_name, source, branch=580, flavor="open", cuda=("12.8", "nvidia"), cudnn=("libcudnn9-cuda-12",)):
    from dlrig.gpu import resolver as r

    return r.Resolution(os=os_name, gpus=(), driver=r.Driver(branch, flavor, source, source != "ubuntu"),
                        cuda=r.Cuda(*cuda) if cuda else None,
                        cudnn=r.Cudnn("9", tuple(cudnn), None) if cudnn is not None else None,
                        torch=r.Torch("2.9", "cu128", "https://download.pytorch.org/whl/cu128"))


_OPEN, _PIN = (lambda b: nv.name("driver", "open")), (lambda b: nv.name("driver", "pinning", branch=b))
_PROP = lambda b: nv.name("driver", "proprietary-branch", branch=b)  # noqa: E731


@pytest.mark.parametrize("branch, open_, want", [
    (580, True, lambda: [_OPEN(580), _PIN(580)]), (590, True, lambda: [_OPEN(590), _PIN(590)]),
    (575, True, lambda: [_OPEN(575)]), (579, True, lambda: [_OPEN(579)]),
    (580, False, lambda: [_PROP(580)]), (535, False, lambda: [_PROP(535)]),
    # from the branch the Driver Installation Guide names, proprietary is the unversioned cuda-drivers
    (nv.unversioned_from(), False, lambda: [nv.name("driver", "proprietary-unversioned"), _PIN(nv.unversioned_from())]),
    (595, False, lambda: [nv.name("driver", "proprietary-unversioned"), _PIN(595)])])
def test_nvidia_repository_driver_names(branch, open_, want):
    want = want()
    assert packages.nvidia_driver(branch, open_) == want
    assert packages.driver(_res("ubuntu-24.04", "nvidia", branch, "open" if open_ else "proprietary")) == want


def test_debian_driver_names():
    assert packages.debian_driver() == ["nvidia-driver", "nvidia-smi", "nvidia-persistenced"]
    assert packages.debian_driver(persistence=False) == ["nvidia-driver", "nvidia-smi"]
    deb = _res("debian-12", "debian", 535, "proprietary")
    assert packages.driver(deb, persistence=False) == ["nvidia-driver", "nvidia-smi"]
    assert packages.driver(deb) == ["nvidia-driver", "nvidia-smi", "nvidia-persistenced"]


def test_driver_passes_every_ubuntu_option_through():
    ub = _res("ubuntu-24.04", "ubuntu", 570, "open")
    assert packages.driver(ub) == ["nvidia-driver-570-open", "linux-modules-nvidia-570-open-generic"]
    assert packages.driver(ub, server=True, headless=True, kernel_flavour="generic-hwe-24.04") == [
        "nvidia-headless-no-dkms-570-server-open", "nvidia-utils-570-server",
        "linux-modules-nvidia-570-server-open-generic-hwe-24.04"]
    assert packages.driver(_res("ubuntu-22.04", "ubuntu", 570, "proprietary")) == [
        "nvidia-driver-570", "linux-modules-nvidia-570-generic"]


def test_cuda_and_cudnn_names():
    assert packages.cuda("12.8", "nvidia") == [nv.name("cuda", "toolkit", major=12, minor=8)]
    assert packages.cuda("13.0", "nvidia") == [nv.name("cuda", "toolkit", major=13, minor=0)]
    assert packages.cuda("11.8", "distro") == ["nvidia-cuda-toolkit"]
    eight, nine = nv.cudnn(8), nv.cudnn(9, 13)
    assert packages.cudnn(eight) == eight and packages.cudnn(eight, dev=False) == eight[:1]
    assert packages.cudnn(nine) == nine and packages.cudnn(nine, dev=False) == nine[:1]  # libcudnn9-dev-cuda-13 too


def test_recorded_nvidia_names_are_in_their_sources_and_the_table_is_fresh():
    """Every example name of tools/sources/nvidia-repo/packages.tsv is written in its excerpt, and
    dlrig/gpu/data/nvidia_repo_packages.json is what tools/gen_nvidia_packages.py makes of them."""
    for part, key, template, example, source in nv.rows():
        if source != "-":
            assert example in (nv.SOURCES / source).read_text(), (part, key, example, source)
    gen = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_nvidia_packages.py"), "--check"], cwd=ROOT)
    assert gen.returncode == 0, "run python3 tools/gen_nvidia_packages.py"
    assert packages.nvidia_cudnn(9, "12.8") == tuple(nv.cudnn(9, 12))
    assert packages.nvidia_cudnn(8, "11.8") == tuple(nv.cudnn(8))


def test_for_resolution_lists_each_part():
    res = _res("ubuntu-24.04", "ubuntu", 580, "open", cudnn=tuple(nv.cudnn(9, 12)))
    assert packages.for_resolution(res) == {
        "driver": ["nvidia-driver-580-open", "linux-modules-nvidia-580-open-generic"],
        "cuda": [nv.name("cuda", "toolkit", major=12, minor=8)], "cudnn": nv.cudnn(9, 12)}
    assert packages.for_resolution(res, cudnn_dev=False)["cudnn"] == nv.cudnn(9, 12)[:1]
    assert packages.for_resolution(res, headless=True)["driver"][0] == "nvidia-headless-no-dkms-580-open"
    bare = _res("ubuntu-24.04", "ubuntu", cuda=None, cudnn=None)
    assert packages.for_resolution(bare)["cuda"] == [] and packages.for_resolution(bare)["cudnn"] == []
    from dataclasses import replace

    assert packages.for_resolution(replace(bare, driver=None)) == {"driver": [], "cuda": [], "cudnn": []}


@pytest.mark.parametrize("server", [False, True])
def test_the_refusal_offers_the_recorded_branches_of_that_kind(server):
    kind = "-server" if server else ""
    import re

    want = sorted({int(m.group(1)) for n in binaries("ubuntu-24.04") if (m := re.fullmatch(rf"nvidia-driver-(\d{{3}}){kind}", n))})
    assert 580 in want and 545 not in want
    with pytest.raises(packages.UnavailablePackages) as e:
        packages.ubuntu_driver("ubuntu-24.04", 545, True, server=server)
    assert f"driver_branch {', '.join(map(str, want))}{' (server)' if server else ''} there" in str(e.value)
    with pytest.raises(packages.UnavailablePackages) as e:
        packages.ubuntu_driver("ubuntu-20.04", 580, True, server=server)
    assert "driver_branch none" in str(e.value)


def test_sources_compared_by_value_not_identity():
    """Sources and flavours arrive from settings and JSON: equal strings, not the same objects."""
    fresh = lambda s: "".join(list(s))  # noqa: E731
    from dataclasses import replace

    for source, flavor, first in (("ubuntu", "open", "nvidia-driver-580-open"), ("nvidia", "open", nv.name("driver", "open")),
                                  ("nvidia", "proprietary", _PROP(580)), ("debian", "proprietary", "nvidia-driver")):
        res = _res("ubuntu-24.04", "ubuntu")
        res = replace(res, driver=replace(res.driver, source=fresh(source), flavor=fresh(flavor)))
        assert packages.driver(res)[0] == first
    assert packages.cuda("11.8", fresh("distro")) == ["nvidia-cuda-toolkit"]


def test_the_toolkit_package_takes_major_and_minor_of_a_full_version():
    """A patch level ("12.8.1", as nvcc reports it) names the same cuda-toolkit-12-8 as "12.8"."""
    assert packages.cuda("12.8.1", "nvidia") == packages.cuda("12.8", "nvidia") == ["cuda-toolkit-12-8"]


def test_the_json_carries_each_parts_packages():
    """with_packages (the JSON of `dlrig resolve` and doctor) puts for_resolution's names under each part."""
    from dlrig.gpu.resolver import resolve
    from dlrig.gpu.table import lookup

    res = resolve([lookup("RTX 4090")], "ubuntu-24.04")
    j, names = packages.with_packages(res), packages.for_resolution(res)
    assert [j[p]["packages"] for p in ("driver", "cuda", "cudnn")] == [names[p] for p in ("driver", "cuda", "cudnn")]
    assert all(names[p] for p in ("driver", "cuda", "cudnn"))
