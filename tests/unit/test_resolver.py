"""dlrig.gpu.resolver over a table of cases (answers and refusals) and `dlrig resolve` end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dlrig.cli.resolve import resolve as resolve_cli
from dlrig.cli.afterapply import driver_changed_hosts
from dlrig.gpu.resolver import CUDA_MIN_DRIVER, TORCH, ResolveError, resolve
from dlrig.gpu.table import lookup


def R(gpus, os="ubuntu-22.04", **kw):
    return resolve([lookup(g) for g in gpus], os, **kw)


# (gpus, os, wishes) -> (branch, flavor, source, cuda, cudnn, torch variant)
CASES = [
    (["10de:1e84"], "ubuntu-22.04", {}, (580, "open", "ubuntu", "13.0", "9", "cu130")),
    (["10de:1e84"], "ubuntu-24.04", {}, (580, "open", "ubuntu", "13.0", "9", "cu130")),
    (["10de:1e84"], "debian-12", {}, (535, "proprietary", "debian", "11.8", "distro", "cu126")),
    (["10de:1e84"], "ubuntu-22.04", {"driver_source": "nvidia"}, (580, "open", "nvidia", "13.0", "9", "cu130")),
    (["10de:1e84"], "ubuntu-22.04", {"driver_branch": 535}, (535, "proprietary", "ubuntu", "12.2", "9", "cu126")),
    (["10de:1e84"], "ubuntu-22.04", {"torch": "2.5"}, (580, "open", "ubuntu", "12.4", "9", "cu124")),
    (["10de:1e84"], "ubuntu-22.04", {"cuda": "12.8", "torch": "2.8"}, (580, "open", "ubuntu", "12.8", "9", "cu128")),
    (["10de:1e84"], "ubuntu-22.04", {"torch": "2.0"}, (580, "open", "ubuntu", "11.8", "8.9", "cu118")),
    (["GTX 1080"], "ubuntu-22.04", {}, (580, "proprietary", "ubuntu", "12.6", "9.10", "cu126")),
    (["GTX 1080"], "debian-12", {}, (535, "proprietary", "debian", "11.8", "distro", "cu126")),
    (["V100 PCIe 16GB"], "ubuntu-24.04", {"torch": "2.9"}, (580, "proprietary", "ubuntu", "12.8", "9.10", "cu128")),
    (["GTX 1660 Ti"], "ubuntu-24.04", {}, (580, "open", "ubuntu", "13.0", "9", "cu130")),
    (["RTX 3090", "RTX 3090"], "ubuntu-22.04", {}, (580, "open", "ubuntu", "13.0", "9", "cu130")),
    (["RTX 4090", "RTX A6000"], "ubuntu-24.04", {}, (580, "open", "ubuntu", "13.0", "9", "cu130")),
    (["RTX 5090"], "ubuntu-24.04", {}, (580, "open", "ubuntu", "13.0", "9", "cu130")),
    (["RTX 5090"], "debian-12", {}, (580, "open", "nvidia", "13.0", "9", "cu130")),
    (["RTX 5090"], "ubuntu-24.04", {"torch": "2.7"}, (580, "open", "ubuntu", "12.8", "9", "cu128")),
    (["A100 SXM4 80GB"], "ubuntu-22.04", {}, (580, "open", "ubuntu", "13.0", "9", "cu130")),
    (["H100 PCIe"], "ubuntu-22.04", {"cuda": "13.1"}, (590, "open", "nvidia", "13.1", "9", "cu130")),
    (["H200"], "ubuntu-24.04", {}, (580, "open", "ubuntu", "13.0", "9", "cu130")),
    (["B200"], "ubuntu-24.04", {}, (580, "open", "ubuntu", "13.0", "9", "cu130")),
    (["L40S", "L4"], "ubuntu-22.04", {}, (580, "open", "ubuntu", "13.0", "9", "cu130")),
    (["T4"], "debian-13", {}, (550, "proprietary", "debian", "12.4", "distro", "cu126")),
]


@pytest.mark.parametrize("gpus,os,wishes,expected", CASES)
def test_resolution_table(gpus, os, wishes, expected):
    r = R(gpus, os, **wishes)
    got = (r.driver.branch, r.driver.flavor, r.driver.source, r.cuda.version, r.cudnn.version, r.torch.variant)
    assert got == expected
    assert r.torch.index_url == f"https://download.pytorch.org/whl/{r.torch.variant}"


REFUSALS = [
    (["Tesla K80"], "ubuntu-22.04", {}, "the last driver branch for it is 470 (NVIDIA's README lists it under the 470.xx"),
    (["GTX 1080", "RTX 5090"], "ubuntu-24.04", {}, "needs the open kernel modules but GeForce GTX 1080 needs the proprietary"),
    (["GTX 1080"], "ubuntu-22.04", {"driver_branch": 590}, "last branch for them: 580); use driver_branch 580 or lower"),
    (["GTX 1080"], "ubuntu-22.04", {"cuda": "13.0"}, "CUDA 13.0 has no sm_61 support"),
    (["RTX 5090"], "ubuntu-22.04", {"torch": "2.5"}, "torch 2.5 has no build for sm_120"),
    (["RTX 5090"], "ubuntu-22.04", {"driver_branch": 550}, "use driver_branch 570 or newer"),
    (["10de:1e84"], "ubuntu-22.04", {"cuda": "12.7"}, "CUDA 12.7 does not exist"),
    (["10de:1e84"], "ubuntu-22.04", {"cuda": "13.0", "driver_branch": 570}, "driver 570 is too old: CUDA 13.0 needs >= 580.65.06"),
    (["10de:1e84"], "ubuntu-22.04", {"torch": "2.5", "cuda": "13.0"}, "torch 2.5 has no CUDA 13 build"),
    (["10de:1e84"], "ubuntu-22.04", {"torch": "1.13"}, "torch 1.13 is not in dlrig's table"),
    (["10de:1e84"], "ubuntu-22.04", {"torch": "2.13", "python": "3.9"}, "torch 2.13 supports Python 3.10-3.15, not 3.9"),
    (["10de:1e84"], "ubuntu-20.04", {}, "OS 'ubuntu-20.04' is not supported"),
    (["10de:1e84"], "debian-12", {"driver_source": "ubuntu"}, "driver_source 'ubuntu' is not available on debian-12"),
    (["10de:1e84"], "debian-12", {"driver_source": "debian", "driver_branch": 580}, "use driver_source 'nvidia'"),
    (["10de:1e84"], "debian-12", {"cuda": "12.8", "cuda_source": "distro"}, "use cuda_source 'nvidia' for CUDA 12.8"),
    ([], "ubuntu-22.04", {}, "set cpu_only=True"),
]


@pytest.mark.parametrize("gpus,os,wishes,words", REFUSALS)
def test_refusals_are_one_line_with_a_way_out(gpus, os, wishes, words):
    with pytest.raises(ResolveError) as e:
        R(gpus, os, **wishes)
    msg = str(e.value)
    assert words in msg, msg
    assert "\n" not in msg
    assert any(w in msg for w in ("use ", "set ", "put ", "split")), msg


def test_cpu_only():
    r = R([], "debian-12", cpu_only=True)
    assert (r.driver, r.cuda, r.cudnn, r.torch.variant) == (None, None, None, "cpu")
    assert r.torch.index_url == "https://download.pytorch.org/whl/cpu"
    assert r.as_json()["driver"] is None


def test_every_answer_satisfies_the_tables():
    """Property over all cards x OSes: the driver serves the toolkit at GA level and torch's CUDA
    family, and the wheel carries every card's architecture."""
    from dlrig.gpu.resolver import CUDA_FAMILY_FLOOR, torch_arches
    from dlrig.gpu.table import table

    for g in table().values():
        for os in ("ubuntu-22.04", "ubuntu-24.04", "debian-12"):
            try:
                r = resolve([g], os)
            except ResolveError:
                assert g.arch == "kepler"
                continue
            if r.cuda.source == "nvidia":
                assert int(CUDA_MIN_DRIVER[r.cuda.version].split(".")[0]) <= r.driver.branch
            fam = int(r.torch.variant[2:4])
            assert int(CUDA_FAMILY_FLOOR[fam].split(".")[0]) <= r.driver.branch
            arches = torch_arches(r.torch.version, r.torch.variant)
            assert any(a // 10 == g.sm // 10 and a <= g.sm for a in arches), (g.name, r.torch)
            if g.arch in ("maxwell", "pascal", "volta"):
                assert r.driver.flavor == "proprietary" and r.driver.branch <= 580
            if g.arch == "blackwell":
                assert r.driver.flavor == "open"


def test_issue_json_shape():
    j = R(["10de:1e84"]).as_json()
    assert set(j) == {"os", "gpus", "driver", "cuda", "cudnn", "torch", "notes"}
    assert set(j["driver"]) == {"branch", "flavor", "source"} and isinstance(j["driver"]["branch"], int)
    assert {"version", "variant", "index_url"} <= set(j["torch"])
    assert "version" in j["cuda"] and "version" in j["cudnn"]
    assert list(TORCH)[-1] == j["torch"]["version"]


def test_cli_json_and_refusal_exit_2():
    runner = CliRunner()
    res = runner.invoke(resolve_cli, ["--gpu", "10de:1e84", "--os", "ubuntu-22.04", "--json"])
    assert res.exit_code == 0, res.output
    j = json.loads(res.output)
    assert j["driver"] == {"branch": 580, "flavor": "open", "source": "ubuntu",
                           "packages": ["nvidia-driver-580-open", "linux-modules-nvidia-580-open-generic"]}
    assert (j["cuda"]["version"], j["torch"]["variant"]) == ("13.0", "cu130")

    for args in (["--gpu", "GTX 1080", "--cuda", "13.0"], ["--gpu", "1002:73bf"], ["--gpu", "10de:1e84", "--os", "arch"],
                 ["--gpu", "RTX 5090", "--gpu", "GTX 1080"], ["--gpu", "Tesla K80"]):
        res = subprocess.run([sys.executable, "-m", "dlrig", "resolve", *args], capture_output=True, text=True)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith("dlrig: error: ")


def test_driver_changed_hosts_reads_apply_results():
    results = {"operations": [
        {"names": ["nvidia_driver | driver packages"], "success": ["a"], "no_change": ["b"], "error": []},
        {"names": ["nvidia_driver | remove conflicting driver packages"], "success": ["c"], "no_change": [], "error": []},
        {"names": ["cuda | CUDA toolkit 13.0 (nvidia)"], "success": ["d"], "no_change": [], "error": []},
    ]}
    assert driver_changed_hosts(results) == ["a", "c"]
    assert driver_changed_hosts(None) == []


@pytest.mark.parametrize("os_name, torch, note", [
    ("debian-13", "2.5", False),  # nvcc 12.4, torch cu124: the same CUDA
    ("debian-13", "2.7", True),   # nvcc 12.4 newer than torch's cu118
    ("ubuntu-22.04", None, True),  # nvcc 11.5 older than torch's CUDA
])
def test_distro_toolkit_notes_only_a_cuda_mismatch_with_torch(os_name, torch, note):
    res = resolve([lookup("RTX 2070 Super")], os_name, cuda_source="distro", torch=torch)
    cuda = res.torch.variant[2:4] + "." + res.torch.variant[4:]
    assert (res.cuda.source, (cuda != res.cuda.version)) == ("distro", note)
    assert any(n.startswith(f"nvcc is CUDA {res.cuda.version} ") for n in res.notes) is note
    # the driver serves the distro toolkit at GA level (22.04's 11.5 on 580, 13's 12.4 on 550): no limits note
    assert not any("wants driver" in n for n in res.notes)


def test_flavor_switches_to_open_at_the_cards_open_floor():
    """Open from the first branch NVIDIA's open list names the card, and never before R560 (NVIDIA's
    switch of the default to the open modules)."""
    import dataclasses

    from dlrig.gpu.resolver import flavor_for

    g = dataclasses.replace(lookup("RTX 2070 Super"), open_floor=570)
    assert [flavor_for([g], b) for b in (565, 570, 580)] == ["proprietary", "open", "open"]
    early = dataclasses.replace(g, open_floor=515)
    assert flavor_for([early], 555) == "proprietary" and flavor_for([early], 560) == "open"


def test_cpu_only_is_a_property_of_the_resolution():
    assert resolve([lookup("RTX 4090")], "ubuntu-24.04").cpu_only is False
    assert resolve([], "ubuntu-24.04", cpu_only=True).cpu_only is True


def test_python_refusal_points_at_the_newest_torch_for_that_python():
    """Python 3.8 is the lowest Python of torch 2.0-2.4 (pytorch RELEASE.md, dlrig's TORCH table)."""
    newest_38 = max((t for t, (lo, hi, _) in TORCH.items() if lo == "3.8"), key=lambda t: tuple(map(int, t.split("."))))
    with pytest.raises(ResolveError, match=rf"not 3\.8; use Python 3\.10-3\.15 or torch {re.escape(newest_38)}$"):
        resolve([lookup("RTX 4090")], "ubuntu-24.04", torch="2.14", python="3.8")


@pytest.mark.parametrize("release", ["ubuntu-22.04", "ubuntu-24.04"])
def test_ubuntu_source_offers_only_branches_ubuntu_packages(release):
    """Every branch the resolver takes from Ubuntu has its nvidia-driver-B in the recorded package lists."""
    from dlrig.gpu.resolver import SOURCE_BRANCHES

    from tests.ubuntu_sources import binaries

    names = binaries(release)
    assert [b for b in SOURCE_BRANCHES["ubuntu"][release] if f"nvidia-driver-{b}" not in names] == []


@pytest.mark.parametrize("others", [["GTX 980"], ["RTX 3090"]])
def test_kepler_refusal_names_only_the_kepler_cards(others):
    with pytest.raises(ResolveError) as e:
        resolve([lookup("GTX 780")] + [lookup(n) for n in others], "ubuntu-24.04")
    assert str(e.value).startswith("GeForce GTX 780 (Kepler, sm_35): the last driver branch for it is 470")


def test_a_card_takes_its_last_branch_itself():
    """580 is the GTX 1080's last branch: asking for exactly it is fine, 590 is refused."""
    assert resolve([lookup("GTX 1080")], "ubuntu-24.04", driver_branch=580).driver.branch == 580
    with pytest.raises(ResolveError, match="use driver_branch 580 or lower"):
        resolve([lookup("GTX 1080")], "ubuntu-24.04", driver_branch=590)


def test_python_at_the_top_of_a_torch_range_is_accepted():
    hi = TORCH["2.14"][1]
    assert resolve([lookup("RTX 4090")], "ubuntu-24.04", torch="2.14", python=hi).torch.version == "2.14"


def test_minor_version_note_only_when_the_driver_is_below_the_toolkits_ga_driver():
    """Debian 12's 535 runs torch's cu126 through minor-version compatibility (CUDA 12.6 GA wants 560):
    noted; Ubuntu's 580 serves cu130 at GA level: not noted."""
    deb = resolve([lookup("RTX 2070 Super")], "debian-12")
    assert f"torch {deb.torch.variant} runs on driver 535 through CUDA minor-version compatibility" in " ".join(deb.notes)
    ub = resolve([lookup("RTX 2070 Super")], "ubuntu-24.04")
    assert not any("minor-version compatibility" in n for n in ub.notes)


def test_no_open_modules_note_below_the_open_default_branch():
    """A Turing card on branch 550 gets the proprietary modules by default (before R560): no note."""
    res = resolve([lookup("RTX 2070 Super")], "ubuntu-24.04", driver_branch=550)
    assert res.driver.flavor == "proprietary"
    assert not any(n.startswith("proprietary kernel modules") for n in res.notes)


def test_torch_refusal_names_the_lowest_driver_its_cuda_family_needs():
    """torch 2.14's builds are CUDA 12/13; driver 470 serves neither family: the way out is the CUDA 12
    family floor (CUDA_FAMILY_FLOOR, from NVIDIA's minor-version compatibility table)."""
    from dlrig.gpu.resolver import CUDA_FAMILY_FLOOR

    floor12 = CUDA_FAMILY_FLOOR[12].split(".")[0]
    with pytest.raises(ResolveError, match=rf"need a newer driver than 470; use driver_branch >= {floor12} or an older torch"):
        resolve([lookup("RTX 2070 Super")], "ubuntu-24.04", driver_branch=470, torch="2.14")


def test_source_refusals_say_which_branch_is_needed_and_why():
    with pytest.raises(ResolveError, match=r"offers branches 470, 535, 550, 570, 580, these cards and wishes need "
                                           r"branch 555; use driver_source 'nvidia'$"):
        resolve([lookup("RTX 2070 Super")], "ubuntu-24.04", driver_source="ubuntu", driver_branch=555)
    # Debian 12's own driver (535) predates the RTX 5090: the refusal says which list names the card from when
    with pytest.raises(ResolveError, match=r"that supports the cards \(NVIDIA's open kernel modules lists GeForce RTX 5090 "
                                           r"\(10de:2b85\) from branch 570 on\); use driver_source 'nvidia'$"):
        resolve([lookup("RTX 5090")], "debian-12", driver_source="debian")


@pytest.mark.parametrize("card", ["GTX 980", "GTX 1080", "TITAN V"])
def test_maxwell_pascal_volta_end_at_branch_580(card):
    """NVIDIA's Unix driver deprecation notice: 580 is the last branch for Maxwell, Pascal and Volta
    (shared/reference/compat-facts.md; the per-device lists name no later branch for these cards)."""
    with pytest.raises(ResolveError, match=r"\(last branch for them: 580\); use driver_branch 580 or lower$"):
        resolve([lookup(card)], "ubuntu-24.04", driver_branch=590)


def test_falling_back_to_nvidias_repository_says_why_the_os_driver_does_not_fit():
    res = resolve([lookup("RTX 5090")], "debian-12")
    assert res.driver.source == "nvidia"
    assert ("debian-12's own nvidia-driver 535.261.03 offers no fitting branch: NVIDIA's open kernel modules lists "
            "GeForce RTX 5090 (10de:2b85) from branch 570 on; using NVIDIA's repository") in res.notes


def test_a_driver_branch_below_the_cudas_ga_driver_is_refused_with_the_cudas_need():
    with pytest.raises(ResolveError, match=r"^driver 550 is too old: CUDA 12\.8 needs >= "
                                           + re.escape(CUDA_MIN_DRIVER["12.8"]) + r"; use driver_branch 570 or newer$"):
        resolve([lookup("RTX 2070 Super")], "ubuntu-24.04", cuda="12.8", driver_branch=550)


SOURCES = __import__("pathlib").Path(__file__).resolve().parents[2] / "tools" / "sources"


def _wheel_arch_rows():
    rows = []
    for line in (SOURCES / "pytorch" / "wheel-cuda-arch-lists.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            kind, repo, where, commit, cuda, arches, torch = line.split("\t")
            rows.append((commit if kind == "script" else None, cuda, tuple(map(int, arches.split())),
                         torch.split() if torch != "-" else []))
    return rows


def test_torch_arches_are_the_recorded_wheel_build_lists():
    """Each torch release a recorded wheel build script or released wheel is for (tools/sources/pytorch/)
    gets exactly that recorded architecture list for the variant; a script's match to a release holds
    (every variant of the release is a case of the script)."""
    from dlrig.gpu.resolver import torch_arches

    rows = _wheel_arch_rows()
    checked = 0
    for commit, cuda, arches, releases in rows:
        for t in releases:
            if commit:  # a build script at a commit: it builds every variant of the releases matched to it
                cases = {f"cu{c.replace('.', '')}" for (k, c, _, _) in rows if k == commit}
                assert set(TORCH[t][2]) <= cases, (t, commit)
            variant = f"cu{cuda.replace('.', '')}"
            if variant in TORCH[t][2]:
                assert torch_arches(t, variant) == arches, (t, variant, commit)
                checked += 1
    assert checked >= 13  # 2.8, 2.9, 2.10 x 3 variants from scripts; 2.10 and 2.11 from released wheels


def test_nvidia_source_offers_only_branches_nvidia_released():
    """Every branch taken from NVIDIA's repository has a recorded NVIDIA release of that branch
    (tools/sources/open-gpu-kernel-modules/<tag>.md, one file per branch's newest tag)."""
    from dlrig.gpu.resolver import OSES, SOURCE_BRANCHES

    released = {int(p.name.split(".")[0]) for p in (SOURCES / "open-gpu-kernel-modules").glob("*.md")}
    assert set(SOURCE_BRANCHES["nvidia"]) == set(OSES)
    for os, branches in SOURCE_BRANCHES["nvidia"].items():
        assert [b for b in branches if b not in released] == [], os
        assert list(branches) == sorted(set(branches)), os


def test_a_torch_without_a_build_for_the_card_names_it_and_the_first_torch_that_has_one():
    """torch 2.6's builds (cu118, cu124, cu126) carry no sm_120; every torch from 2.7 (cu128) does."""
    with pytest.raises(ResolveError) as e:
        R(["RTX 5090"], "ubuntu-24.04", torch="2.6")
    assert str(e.value) == ("torch 2.6 has no build for sm_120 (GeForce RTX 5090): its builds are cu118, cu124, "
                            "cu126; use torch >= 2.7")
    with pytest.raises(ResolveError) as e:  # the RTX 3090 (sm_86, in cu126's sm_80 family) is not named
        R(["RTX 5090", "RTX 3090"], "ubuntu-24.04", torch="2.6")
    assert str(e.value).startswith("torch 2.6 has no build for sm_120 (GeForce RTX 5090): ")


def test_cuda_12_2_on_a_turing_or_newer_card_gets_the_current_cudnn_9():
    """cuDNN 9.10 (pinned) is only for Maxwell/Pascal/Volta; an sm_86 card on CUDA 12.2 takes cuDNN 9 unpinned."""
    r = R(["RTX 3090"], "ubuntu-24.04", cuda="12.2")
    assert (r.cudnn.version, r.cudnn.pin) == ("9", None)
    # names as tools/sources/nvidia-repo/packages.tsv records them (libcudnn9-cuda-{cuda_major}, ...-dev-...)
    assert r.cudnn.packages == ("libcudnn9-cuda-12", "libcudnn9-dev-cuda-12")
    r13 = R(["RTX 3090"], "ubuntu-24.04")  # CUDA 13.0: the packages.tsv examples themselves
    assert (r13.cuda.version, r13.cudnn.version, r13.cudnn.packages) == ("13.0", "9", ("libcudnn9-cuda-13",
                                                                                       "libcudnn9-dev-cuda-13"))
    assert (R(["GTX 1080"], "ubuntu-24.04", cuda="12.2").cudnn.version) == "9.10"


def test_a_driver_above_a_toolkits_minimum_serves_it_at_ga_level():
    """Driver 590 serves CUDA 13.0 (>= 580.65.06) at GA level but not 13.2 (>= 595.45.04): torch's
    cu130 build, with no minor-version-compatibility note."""
    r = R(["RTX 4090"], "ubuntu-24.04", driver_branch=590)
    assert (r.driver.branch, r.driver.source, r.torch.variant) == (590, "nvidia", "cu130")
    assert not any("minor-version compatibility" in n for n in r.notes)


def test_a_pinned_branch_another_source_offers_is_pointed_at():
    with pytest.raises(ResolveError) as e:
        R(["RTX 4090"], "ubuntu-24.04", driver_branch=590, driver_source="ubuntu")
    assert str(e.value) == ("driver_source 'ubuntu' on ubuntu-24.04 offers branches 470, 535, 550, 570, 580, "
                            "these cards and wishes need branch 590; use driver_source 'nvidia'")
    # the pinned branch is the only one of NVIDIA's that serves the card (570 is the RTX 5090's first)
    with pytest.raises(ResolveError) as e:
        R(["RTX 5090"], "debian-12", driver_branch=570, driver_source="debian")
    assert str(e.value) == ("driver_source 'debian' on debian-12 offers branches 535, these cards and wishes need "
                            "branch 570; use driver_source 'nvidia'")


def test_python_alone_picks_the_newest_torch_for_it():
    """Python 3.9 is in torch 2.5-2.8's range (lowest 3.9), not in 2.9+'s (3.10 up): torch 2.8."""
    v = lambda x: tuple(map(int, x.split(".")))  # noqa: E731
    newest_39 = max((t for t, (lo, hi, _) in TORCH.items() if v(lo) <= (3, 9) <= v(hi)), key=v)
    assert R(["RTX 4090"], "ubuntu-24.04", python="3.9").torch.version == newest_39 == "2.8"


def test_python_outside_a_pinned_torch_points_at_a_torch_that_has_it():
    """Python 3.13 is above torch 2.0's range and no torch's lowest: the newest torch whose range holds it."""
    with pytest.raises(ResolveError) as e:
        R(["RTX 4090"], "ubuntu-24.04", torch="2.0", python="3.13")
    assert str(e.value) == "torch 2.0 supports Python 3.8-3.11, not 3.13; use Python 3.8-3.11 or torch 2.14"


def test_cuda_13_refusal_names_only_the_cards_it_dropped():
    with pytest.raises(ResolveError) as e:
        R(["GTX 1080", "RTX 4090"], "ubuntu-24.04", cuda="13.0")
    assert str(e.value) == "CUDA 13.0 has no sm_61 support (GeForce GTX 1080); use CUDA <= 12.9 for these cards"


def test_a_maxwell_card_on_driver_535_gets_the_newest_cuda_12_toolkit_535_serves():
    """CUDA 12 still builds sm_50 (CUDA_MIN_SM[12] == 50): 12.2 (>= 535.54.03), not 11.8."""
    r = R(["GTX 750 Ti"], "ubuntu-24.04", driver_branch=535)
    assert (r.cuda.version, r.cudnn.version, r.torch.variant) == ("12.2", "9.10", "cu126")


def test_no_source_at_all_says_which_card_no_list_names():
    """T4G is in no recorded open-modules list and DRIVE P2021 needs the open modules: nothing fits."""
    with pytest.raises(ResolveError) as e:
        R(["T4G", "DRIVE P2021"], "ubuntu-24.04")
    assert str(e.value) == ("no driver source on ubuntu-24.04 offers a branch that supports these cards (no recorded "
                            "NVIDIA list names T4G (10de:1eb4) for the open kernel modules); check driver_branch and "
                            "cuda_version")


def test_the_proprietary_note_names_only_the_cards_the_open_lists_lack_at_that_branch():
    """H200 NVL is in the open list from 565 (its first), T4G in none: at 565 only T4G forces proprietary."""
    r = R(["H200 NVL", "T4G"], "ubuntu-24.04", driver_branch=565, driver_source="nvidia")
    assert (r.driver.branch, r.driver.flavor) == (565, "proprietary")
    assert ("proprietary kernel modules: NVIDIA's open-gpu-kernel-modules lists T4G only from a later branch "
            "or not at all") in r.notes


def test_a_pinned_last_branch_points_at_the_source_that_offers_it():
    """580 is the GTX 1080's last branch and Debian 12 offers only 535: NVIDIA's repository has 580."""
    with pytest.raises(ResolveError) as e:
        R(["GTX 1080"], "debian-12", driver_branch=580, driver_source="debian")
    assert str(e.value) == ("driver_source 'debian' on debian-12 offers branches 535, these cards and wishes need "
                            "branch 580; use driver_source 'nvidia'")


def test_a_python_no_torch_supports_is_refused_with_the_default_torchs_range():
    """Python 3.16 is above every torch's range (the ranges have an upper end, not only a lower one)."""
    lo, hi, _ = TORCH["2.14"]
    with pytest.raises(ResolveError) as e:
        R(["RTX 4090"], "ubuntu-24.04", python="3.16")
    assert str(e.value) == f"no torch release in dlrig's table supports Python 3.16; use Python {lo}-{hi} (torch 2.14)"
    assert (lo, hi) == ("3.10", "3.15")


@pytest.mark.parametrize("gpus, wishes, want", [
    (["RTX 5090"], {}, "a branch that supports the cards (NVIDIA's open kernel modules lists GeForce RTX 5090 "
                       "(10de:2b85) from branch 570 on)"),   # no bound at either end
    (["GTX 1080"], {"cuda": "12.8"}, "a branch in 570-580"),  # CUDA 12.8's minimum, Pascal's last
    (["RTX 4090"], {"cuda": "12.8"}, "a branch >= 570"),  # CUDA 12.8's minimum, no last branch
    (["GTX 1080"], {"driver_branch": 580}, "branch 580"),
])
def test_the_source_refusal_says_which_branches_would_do(gpus, wishes, want):
    with pytest.raises(ResolveError) as e:
        R(gpus, "debian-12", driver_source="debian", **wishes)
    assert str(e.value) == (f"driver_source 'debian' on debian-12 offers branches 535, these cards and wishes need "
                            f"{want}; use driver_source 'nvidia'")


def test_an_off_table_ada_card_has_the_first_branch_a_recorded_list_names_ada_in():
    """An Ada id no recorded list names falls back to the first recorded proprietary README that
    lists an Ada card (the RTX 4090): driver 470 is refused with that branch."""
    from dlrig.gpu.table import parse_lspci

    first = min(int(p.name.split(".")[0]) for p in (SOURCES / "nvidia-readme").glob("*.txt")
                if "GeForce RTX 4090" in p.read_text())
    (g,) = parse_lspci(["01:00.0 VGA compatible controller [0300]: NVIDIA Corporation AD102 [GeForce RTX 4090 X] [10de:26ff]"])
    assert not g.in_table and g.arch == "ada"
    with pytest.raises(ResolveError) as e:
        resolve([g], "ubuntu-24.04", driver_branch=470)
    assert str(e.value).endswith(f"from branch {first} on; use driver_branch {first} or newer")
