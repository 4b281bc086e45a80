"""apt across roles (dlrig.engine.aptget) on @fake hosts (FAKES: canned facts, no host exists).

- one ``apt-get install`` per role, one ``apt-get update`` per run before the first install (plus
  one after a repository the run adds), no operation for what is installed;
- ``apply --locked``: the GPU roles install the lock's versions (``pkg=ver``), keep their pins and
  holds, and refuse, naming what moved, when a locked version is in no source. Where a version is
  (cache_dir / apt's lists / nowhere) is the canned output of the LockedDebs fact, what the sources
  the run adds offer the canned output of the AddedSourceDebs fact (a temporary apt state); the real
  things run in tests/hosts/test_gpu_stack_hosts.py and tests/hosts/test_locked_added_sources.py.
"""

from __future__ import annotations

import json
import re

import pytest

from tests import nvidia_sources as nv
from tests.plans.harness import commands, fake_host, plan

GPU = "10de:1e84"
ROLES = ["base", "firewall", "unattended_upgrades", "dualboot", "nvidia_driver", "cuda", "cudnn"]
WHERE = "while read -r tag pkg ver glob"  # the LockedDebs fact's command (dlrig.engine.lockfacts.where_script)
ADDED = 'Dir::Etc::SourceList="$d/sources.list"'  # the AddedSourceDebs fact's (lockfacts.added_sources_script)


def _installs(ops):
    return [o for o in ops if any(re.search(r"\bapt-get .*\binstall\b", c) for c in o["commands"])]


def _updates(ops):
    return [o for o in ops if o["operation"].startswith("apt-get update")]


def test_one_install_per_role_and_one_update_per_run():
    ops = plan([fake_host("h", "ubuntu-24.04", driver_gpus=[GPU], driver_source="nvidia",
                          dualboot_disks=[])], roles=ROLES)["h"]
    installs = _installs(ops)
    per_role = {}
    for o in installs:
        per_role.setdefault(o["role"], []).append(o["operation"])
    assert all(len(v) == 1 for v in per_role.values()), per_role
    # the canned host lacks git, ufw, unattended-upgrades and every GPU package: each role installs
    assert {"base", "firewall", "unattended_upgrades", "nvidia_driver", "cuda", "cudnn"} <= set(per_role)
    # curl is there: no separate curl step for the NVIDIA key (apt's own downloader fetches it)
    assert not any("curl" in o["operation"] for o in ops)
    assert "apt-helper download-file https://developer.download.nvidia.com/" in commands(ops, "nvidia_driver")
    # the driver and the DKMS kernel headers: one transaction
    (drv,) = [o for o in installs if o["role"] == "nvidia_driver"]
    assert re.search(r"install nvidia-open nvidia-driver-pinning-580 linux-headers-\S+", drv["commands"][0])
    # one update before the first install (apt_cache_time respected), one after the run's new repository
    updates = _updates(ops)
    plain = [o for o in updates if "repository changed" not in o["operation"]]
    assert len(plain) == 1 and len(updates) == 2, [o["operation"] for o in updates]
    assert ops.index(plain[0]) < ops.index(installs[0])
    first_nvidia = min(ops.index(o) for o in installs if o["role"] == "nvidia_driver")
    assert ops.index(updates[1]) < first_nvidia


def test_installed_packages_need_no_operation():
    installed = ["ii  ufw 0.36.2-6 all firewall", "ii  unattended-upgrades 2.9.1 all upgrades",
                 "ii  git 1:2.43.0-1ubuntu7 amd64 vcs"] + [
        f"ii  {p} 1.0 amd64 x" for p in ("build-essential", "ca-certificates", "gnupg", "htop", "pciutils",
                                         "rsync", "tmux", "vim", "unzip", "jq", "curl", "software-properties-common")]
    ops = plan([fake_host("h", "ubuntu-24.04", facts={"dpkg -l": installed},
                          base_packages=["git", "curl", "jq"])], roles=["base", "firewall", "unattended_upgrades"])["h"]
    assert _installs(ops) == [] and _updates(ops) == [], [o["operation"] for o in ops]


# --- apply --locked ------------------------------------------------------------------------------

LOCKED = {"nvidia-open": "580.95.05-1", "nvidia-kernel-open-dkms": "580.95.05-1",
          "nvidia-driver-pinning-580": "580.95.05-1", "cuda-toolkit-13-0": "13.0.2-1",
          **{p: "9.17.0.29-1" for p in nv.cudnn(9, 13)}, "curl": "8.5.0-2ubuntu10.6", "libc6:amd64": "2.39-0ubuntu8.4"}


def _lock(tmp_path, apt=None):
    path = tmp_path / "dlrig.lock"
    path.write_text(json.dumps({"dlrig_lock": 1, "hosts": {"@fake/h": {"stack": {}, "apt": apt or LOCKED}}}))
    return str(path)


def _locked_ops(tmp_path, where, roles=("nvidia_driver", "cuda", "cudnn"), apt=None, added=(), **data):
    data = {"driver_gpus": [GPU], "driver_source": "nvidia", "dlrig_lock_file": _lock(tmp_path, apt),
            "dlrig_roles": list(roles), **data}
    facts = {WHERE: where, ADDED: list(added)}
    return plan([fake_host("h", "ubuntu-24.04", facts=facts, **data)], roles=list(roles))["h"]


def test_locked_gpu_roles_install_the_locked_versions_and_keep_pins_and_holds(tmp_path):
    where = ["- repo nvidia-open 580.95.05-1", "- repo nvidia-kernel-open-dkms 580.95.05-1",
             "- missing nvidia-driver-pinning-580 580.95.05-1 ",
             "- cached cuda-toolkit-13-0 13.0.2-1 /var/cache/apt/archives/cuda-toolkit-13-0_13.0.2-1_amd64.deb",
             *(f"- repo {p} 9.17.0.29-1" for p in nv.cudnn(9, 13))]
    ops = _locked_ops(tmp_path, where, added=["have nvidia-driver-pinning-580 580.95.05-1,"])
    drv = commands(ops, "nvidia_driver")
    (install,) = [c for o in _installs(ops) if o["role"] == "nvidia_driver" for c in o["commands"]]
    # the role's packages must be at their locked versions; the rest of the lock not yet there may be
    for line in ("must nvidia-open 580.95.05-1 nvidia-open_580.95.05-1_*.deb",
                 "must nvidia-driver-pinning-580 580.95.05-1", "may nvidia-kernel-open-dkms 580.95.05-1",
                 "may cuda-toolkit-13-0 13.0.2-1"):
        assert line in install, install
    assert "--allow-downgrades --allow-change-held-packages" in install
    assert re.search(r"set -- '?linux-headers-\S+-generic", install)  # the kernel's headers: not locked
    assert "locked apt versions are not available from cache_dir or any apt source: " in install
    # pins and holds as without a lock
    assert "Pin: version /^(1:)?580\\./" in drv and "apt-mark hold nvidia-open nvidia-driver-pinning-580" in drv
    # the NVIDIA repository is new in this run: lists are updated before the locked install
    names = [o["operation"] for o in ops]
    assert names.index("apt-get update (NVIDIA driver)") < names.index("driver packages")
    # the driver's transaction took every open locked package: cuda and cudnn have nothing left
    assert [o["role"] for o in _installs(ops)] == ["nvidia_driver"]


def test_locked_base_installs_what_it_can_and_leaves_the_rest_to_the_gpu_roles(tmp_path):
    where = ["- cached curl 8.5.0-2ubuntu10.6 /var/cache/apt/archives/curl_8.5.0-2ubuntu10.6_amd64.deb",
             "- repo libc6:amd64 2.39-0ubuntu8.4", "- missing nvidia-open 580.95.05-1 "]
    ops = _locked_ops(tmp_path, where, roles=("base", "nvidia_driver", "cuda", "cudnn"),
                      added=["have nvidia-open 590.44.01-1,580.95.05-1,"])
    by_role = {o["role"]: o for o in _installs(ops)}
    base = by_role["base"]["commands"][0]
    assert by_role["base"]["operation"] == "locked apt packages (1 from cache_dir, 1 from apt)"
    assert "/var/cache/apt/archives/curl_8.5.0-2ubuntu10.6_amd64.deb libc6:amd64=2.39-0ubuntu8.4" in base
    assert "nvidia-open" not in base
    drv = by_role["nvidia_driver"]["commands"][0]
    assert "must nvidia-open 580.95.05-1" in drv and "curl" not in drv  # base has it
    # base installs without apt-get update (works offline); the driver's new repository gets one
    names = [o["operation"] for o in ops]
    assert names.index("locked apt packages (1 from cache_dir, 1 from apt)") < names.index("apt-get update (NVIDIA driver)")
    # without a GPU role in the run, base refuses what no source has, before any change
    with pytest.raises(Exception) as e:
        _locked_ops(tmp_path, where, roles=("base",))
    assert "nvidia-open: locked 580.95.05-1, available: none" in str(e.value)


def test_locked_refuses_what_moved_when_no_source_of_this_run_can_bring_it(tmp_path):
    """driver_source ubuntu: no repository added by the run, so a missing locked version is refused
    while planning, naming the version and what apt has instead."""
    apt = {"nvidia-driver-580-open": "580.95.05-0ubuntu1",
           "linux-modules-nvidia-580-open-generic": "6.8.0-49.49+1"}
    where = ["- missing nvidia-driver-580-open 580.95.05-0ubuntu1 580.105.08-0ubuntu1,",
             "- repo linux-modules-nvidia-580-open-generic 6.8.0-49.49+1"]
    with pytest.raises(Exception) as e:
        _locked_ops(tmp_path, where, roles=("nvidia_driver",), apt=apt, driver_source="ubuntu")
    msg = str(e.value)
    assert ("nvidia-driver-580-open: locked 580.95.05-0ubuntu1, available: 580.105.08-0ubuntu1" in msg), msg
    assert "linux-modules" not in msg and "lock again" in msg


def test_locked_refuses_a_package_the_lock_does_not_have(tmp_path):
    """The settings now ask for another driver than the one locked (Ubuntu's packages, the lock
    has NVIDIA's): refused while planning, naming what the lock lacks."""
    with pytest.raises(Exception) as e:
        _locked_ops(tmp_path, [], roles=("nvidia_driver",), driver_source="ubuntu")
    assert "needs nvidia-driver-580-open, linux-modules-nvidia-580-open-generic, which the lock does not have" \
        in str(e.value), str(e.value)


def test_locked_and_converged_is_a_no_op(tmp_path):
    ops = _locked_ops(tmp_path, [], driver_kernel_headers=False)
    assert _installs(ops) == [], [o["operation"] for o in ops]


def test_locked_packages_a_purge_of_this_run_removes_are_put_back(tmp_path):
    """A conflicting driver (another branch) is purged in this run while the locked driver is at its
    version: apt's purge may take locked packages with it, so the locked transaction, checked when it
    runs (after the purge), gets the role's packages as musts and the rest of the lock as mays."""
    installed = [f"ii  {p} {v} amd64 x" for p, v in LOCKED.items() if ":" not in p] + [
        "ii  nvidia-utils-550 550.163.01-0ubuntu1 amd64 x"]
    ops = plan(
        [fake_host("h", "ubuntu-24.04", facts={WHERE: [], "dpkg -l": installed}, driver_gpus=[GPU],
                   driver_source="nvidia", driver_kernel_headers=False, dlrig_lock_file=_lock(tmp_path),
                   dlrig_roles=["nvidia_driver"])], roles=["nvidia_driver"])["h"]
    names = [o["operation"] for o in ops]
    purge = next(i for i, o in enumerate(ops) if "apt-get -y purge nvidia-utils-550" in " ".join(o["commands"]))
    (install,) = [o for o in _installs(ops) if o["role"] == "nvidia_driver"]
    assert purge < ops.index(install), names
    cmd = install["commands"][0]
    for line in ("must nvidia-open 580.95.05-1", "must nvidia-driver-pinning-580 580.95.05-1",
                 "may cuda-toolkit-13-0 13.0.2-1", "may curl 8.5.0-2ubuntu10.6"):
        assert line in cmd, cmd


# --- apply --locked: the sources the run adds, read before any change ----------------------------

NVIDIA_URL = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64"
KEY_SHA = "d" * 64


def test_locked_version_missing_from_the_sources_the_run_adds_is_refused_before_any_change(tmp_path):
    """A locked driver version in no configured source, and the NVIDIA repository the run adds
    (read into a temporary apt state: the canned AddedSourceDebs output) has other versions only:
    refused while planning, by base (the first role) before its own transaction, naming what moved."""
    where = ["- cached curl 8.5.0-2ubuntu10.6 /var/cache/apt/archives/curl_8.5.0-2ubuntu10.6_amd64.deb",
             "- missing nvidia-open 580.95.05-1 "]
    with pytest.raises(Exception) as e:
        _locked_ops(tmp_path, where, roles=("base", "nvidia_driver", "cuda", "cudnn"),
                    added=["have nvidia-open 590.44.01-1,580.105.08-1,"])
    msg = str(e.value)
    assert "locked apt versions are not available from cache_dir or any apt source: " in msg
    assert "nvidia-open: locked 580.95.05-1, available: 590.44.01-1,580.105.08-1." in msg, msg
    assert "curl" not in msg
    # without base: the driver role refuses its own package while planning, as before any operation
    with pytest.raises(Exception) as e:
        _locked_ops(tmp_path, where, added=["have nvidia-open 590.44.01-1,"])
    assert "@fake/h: locked apt versions are not available" in str(e.value)
    assert "nvidia-open: locked 580.95.05-1, available: 590.44.01-1." in str(e.value)


def test_locked_refusal_says_when_an_added_source_cannot_be_read(tmp_path):
    """The NVIDIA repository's key (or lists) cannot be fetched while planning: no silent pass; the
    refusal names the source and apt's reason."""
    why = ("NVIDIA CUDA repository: its key https://x/3bf863cc.pub could not be fetched: "
           "E: Failed to fetch https://x/3bf863cc.pub  Could not connect to x")
    with pytest.raises(Exception) as e:
        _locked_ops(tmp_path, ["- missing nvidia-open 580.95.05-1 "], roles=("base", "nvidia_driver"),
                    added=[f"error {why}", "have nvidia-open 580.95.05-1,"])
    assert f"nvidia-open: locked 580.95.05-1, available: 580.95.05-1 ({why})" in str(e.value), str(e.value)


def test_the_temporary_apt_state_holds_the_roles_own_source_line_and_key(tmp_path):
    """The fact is asked with the NVIDIA repository exactly as the driver role writes it, its key
    fetched as the role fetches it (apt-helper, sha256-checked when set) into the temporary folder:
    the canned answer is keyed on that exact command text, so any other command gets no answer
    (and the plan refuses)."""
    fpr = "EB693B3035CD5710E231E123A4B469963BF863CC"
    line = (f"printf '%s\\n' '# Managed by dlrig (role nvidia_driver): NVIDIA'\"'\"'s CUDA repository, trusted only "
            f"through its own key.\ndeb [signed-by='\"$d/key0\"',{fpr}] {NVIDIA_URL} /")
    key = (f"/usr/lib/apt/apt-helper download-file {NVIDIA_URL}/3bf863cc.pub \"$d/key0\" SHA256:{KEY_SHA} ")
    exact = re.compile(re.escape(key) + ".*" + re.escape(line) + ".*" + re.escape(ADDED), re.S)
    data = {"driver_gpus": [GPU], "driver_source": "nvidia", "dlrig_lock_file": _lock(tmp_path),
            "dlrig_roles": ["nvidia_driver"], "nvidia_repo_key_sha256": KEY_SHA.upper(),
            "nvidia_repo_key_fingerprint": fpr}
    facts = {WHERE: ["- missing nvidia-open 580.95.05-1 "], exact: ["have nvidia-open 580.95.05-1,"]}
    ops = plan([fake_host("h", "ubuntu-24.04", facts=facts, **data)], roles=["nvidia_driver"])["h"]
    # not refused: the run's source has it; the role's install checks again once the source is in
    (install,) = [o for o in _installs(ops) if o["role"] == "nvidia_driver"]
    assert "must nvidia-open 580.95.05-1" in install["commands"][0]
    # the list the role writes is the same text the temporary state read (the real key path there)
    drv = commands(ops, "nvidia_driver")
    assert f"deb [signed-by=/etc/apt/keyrings/dlrig-nvidia-cuda.asc,{fpr}] {NVIDIA_URL} /" in drv


def test_debian_non_free_the_run_adds_is_read_with_the_hosts_own_keys(tmp_path):
    """driver_source debian on a main-only Debian 12 host (FAKE sources fact): the run adds the
    non-free list, so a locked driver in no configured source is looked up there first, with the
    list exactly as the role writes it and no key to fetch (Debian's archive key is the host's)."""
    main_only = ["##PYINFRA_FILE /etc/apt/sources.list", "deb http://deb.debian.org/debian bookworm main"]
    line = ("printf '%s\\n' '# Managed by dlrig (role nvidia_driver)\n"
            "deb http://deb.debian.org/debian bookworm contrib non-free non-free-firmware\n'")
    # that list, and no key fetched (Debian's archive key is the host's): else no canned answer
    exact = re.compile(r"\A(?!.*apt-helper)(?=.*" + re.escape(line) + ").*" + re.escape(ADDED), re.S)
    apt = {"nvidia-driver": "535.216.01-1~deb12u1", "nvidia-smi": "535.216.01-1~deb12u1",
           "nvidia-persistenced": "535.171.04-1"}
    where = ["- missing nvidia-driver 535.216.01-1~deb12u1 ", "- repo nvidia-smi 535.216.01-1~deb12u1",
             "- repo nvidia-persistenced 535.171.04-1"]
    data = {"driver_gpus": [GPU], "driver_source": "debian", "driver_kernel_headers": False,
            "dlrig_lock_file": _lock(tmp_path, apt), "dlrig_roles": ["base", "nvidia_driver"]}

    def run(offer):
        facts = {WHERE: where, "##PYINFRA_FILE": main_only, exact: offer}
        return plan([fake_host("h", "debian-12", facts=facts, **data)], roles=["base", "nvidia_driver"])["h"]

    ops = run(["have nvidia-driver 535.216.01-1~deb12u1,"])
    assert "must nvidia-driver 535.216.01-1~deb12u1" in commands(ops, "nvidia_driver")
    with pytest.raises(Exception) as e:
        run(["have nvidia-driver 535.247.01-1~deb12u1,"])
    assert "nvidia-driver: locked 535.216.01-1~deb12u1, available: 535.247.01-1~deb12u1." in str(e.value)
