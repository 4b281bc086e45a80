"""Plan tests for role base on @fake Ubuntu 22.04/24.04 and Debian 12 hosts (canned facts: fakes)."""

from __future__ import annotations

import re

import pytest

from tests.plans.harness import commands, fake_host, plan

UNIVERSE = "add-apt-repository --yes --no-update universe"


def _ops(os, **kw):
    return plan([fake_host("rig", os, **kw)], ["base"])["rig"]


@pytest.mark.parametrize("os", ["ubuntu-22.04", "ubuntu-24.04", "debian-12", "debian-13"])
def test_apt_waits_for_the_lock_before_any_apt_command(os):
    ops = _ops(os)
    names = [o["operation"] for o in ops]
    assert names[0] == "apt waits for the dpkg lock"
    (upload,) = [c for c in ops[0]["commands"] if c.startswith("UPLOAD ")]
    assert 'DPkg::Lock::Timeout "600";' in upload
    assert "/etc/apt/apt.conf.d/90dlrig" in upload
    assert "chown root:root /etc/apt/apt.conf.d/90dlrig" in ops[0]["commands"]  # ownership drift is repaired
    text = commands(ops)
    assert "install --no-install-recommends build-essential" in text


def test_universe_enabled_on_jammy_where_it_is_missing_and_only_there():
    jammy = commands(_ops("ubuntu-22.04"))
    noble = commands(_ops("ubuntu-24.04"))  # deb822 ubuntu.sources already lists universe
    bookworm = commands(_ops("debian-12"))
    assert UNIVERSE in jammy
    # software-properties-common is not in the recorded 22.04 package list: fresh lists, then it, then universe
    assert jammy.index("apt-get update") < jammy.index("install software-properties-common") < jammy.index(UNIVERSE)
    assert jammy.index(UNIVERSE) < jammy.rindex("apt-get update") < jammy.index("install --no-install-recommends")
    assert UNIVERSE not in noble and UNIVERSE not in bookworm
    assert UNIVERSE not in commands(_ops("ubuntu-22.04", ubuntu_enable_universe=False))


def test_interrupted_dpkg_is_repaired_first_with_a_lock_aware_loop():
    ops = _ops("ubuntu-22.04", facts={"dpkg --audit": [
        "The following packages are only half configured, probably due to problems",
        " nvidia-dkms-535      NVIDIA DKMS package",
    ]})
    names = [o["operation"] for o in ops]
    repair = names.index("repair interrupted dpkg (dpkg --configure -a)")
    assert repair < names.index("essential packages")
    cmd = ops[repair]["commands"][0]
    assert "dpkg --configure -a" in cmd and "*lock*" in cmd
    assert "repair interrupted dpkg" not in " ".join(o["operation"] for o in _ops("ubuntu-22.04"))


def test_installed_essentials_mean_no_update_and_no_install():
    installed = [f"ii  {p:20} 1.0 amd64 x" for p in [
        "build-essential", "ca-certificates", "curl", "git", "gnupg", "htop", "pciutils", "rsync",
        "tmux", "unzip", "wget", "software-properties-common"]]
    ops = _ops("ubuntu-24.04", facts={"dpkg -l": installed, re.compile(r"cat .*90dlrig"): []})
    names = [o["operation"] for o in ops]
    assert "apt-get update" not in names and "essential packages" not in names


def test_extra_ca_certificates_are_uploaded_then_trusted(tmp_path):
    pem = tmp_path / "corp-proxy.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    ops = _ops("ubuntu-22.04", extra_ca_certificates=[str(pem)])
    text = commands(ops)
    assert "UPLOAD /usr/local/share/ca-certificates/dlrig-0-corp-proxy.crt\n-----BEGIN CERTIFICATE-----" in text
    assert text.index("dlrig-0-corp-proxy.crt") < text.index("apt-get update")


def test_unsupported_os_is_refused():
    from pyinfra.api.exceptions import PyinfraError

    facts = {"for file in $(ls -pdL *-release": ["/etc/os-release", 'NAME="Fedora Linux"', "ID=fedora", 'VERSION_ID="40"', "---"]}
    with pytest.raises(PyinfraError, match="supports Ubuntu and Debian, not Fedora"):
        _ops("ubuntu-22.04", facts=facts)
