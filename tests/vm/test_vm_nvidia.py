"""``nvidia_driver`` on a Debian 12 VM: the nouveau blacklist really lands in the initramfs the VM
boots, and ``dlrig apply --reboot`` reboots only the host whose driver changed, waits for it to come
back (new boot id), and both hosts re-plan to zero changes.

Real: a fresh booted VM (GRUB, kernel, systemd), update-initramfs, lsinitramfs, modprobe, apt with a
signed repository, pyinfra's reboot; the second host, whose driver does not change, is a namespace
test host (real sshd; one VM at a time on this machine). FAKE: the NVIDIA packages
(tests/hosts/test_gpu_stack_hosts.py's signed repo: NVIDIA's package names, nothing of NVIDIA's
inside; the real driver is ~300 MB and its DKMS build under TCG would take most of the tier's
time budget), and the GPU (named with ``driver_gpus``: the VMs have none).
"""

from __future__ import annotations

import json

import pytest

from dlrig.testing import write_inventory
from tests.fixtures import pyindex
from tests.hosts.test_gpu_stack_hosts import FAST, _build_fake_repo
from tests.vm.conftest import HOST_FROM_GUEST
from tests.vm.helpers import dlrig, out, plan_changes

# vm_full (out of CI for time; passed 2026-11-28 in 889 s at load 10-13; see README, Tests): CI selects
# `vm and not vm_full`
pytestmark = [pytest.mark.vm, pytest.mark.vm_full]

BLACKLIST = "etc/modprobe.d/dlrig-blacklist-nouveau.conf"


@pytest.fixture
def fake_nvidia_repo_for_vms(tmp_path):
    root = _build_fake_repo(tmp_path / "repo", tmp_path / "gnupg")
    with pyindex.serve(root) as url:
        yield url.replace("127.0.0.1", HOST_FROM_GUEST), (root / "FINGERPRINT").read_text().strip()


def _pid1_start(h) -> str:
    """The start time (clock ticks since boot, /proc/1/stat field 22) of the host's PID 1."""
    return h.ssh("cut -d' ' -f22 /proc/1/stat").stdout.strip()


def test_apply_reboot_reboots_only_the_changed_host_and_nouveau_is_out_of_its_initramfs(
        make_vm, make_hosts, fake_nvidia_repo_for_vms, tmp_path):
    url, fpr = fake_nvidia_repo_for_vms
    v = make_vm("bios", name="gpurig")
    [other] = make_hosts(1, names=["cpubox"])  # cpu_only: nvidia_driver changes nothing there
    inv = write_inventory([v, other], tmp_path / "inv.py", host_data={
        v.name: {**FAST, "driver_source": "nvidia", "nvidia_repo_url": url, "nvidia_repo_key_fingerprint": fpr},
        other.name: {"cpu_only": True},
    })
    boot_v, init_other = v.boot_id(), _pid1_start(other)
    assert BLACKLIST not in v.ssh("sudo -n lsinitramfs /boot/initrd.img-$(uname -r)").stdout  # fresh VM
    r = dlrig("apply", str(inv), "--roles", "nvidia_driver", "--yes", "--reboot", "--json",
              label="nvidia_driver: apply --reboot (fresh VM + a cpu_only host)")
    assert r.returncode == 0, out(r)
    assert json.loads(r.stdout)["reboot"] == {v.name: "rebooted"}, r.stdout[-2000:]
    assert v.boot_id() != boot_v  # it came back from a new boot ...
    assert v.power_cycles >= 1, v.serial_log.read_text(errors="replace")[-2000:]
    assert _pid1_start(other) == init_other  # ... and the other host was left running
    # the initramfs this boot came from carries the blacklist; modprobe reads it
    initrd = v.ssh("sudo -n lsinitramfs /boot/initrd.img-$(uname -r)").stdout
    assert BLACKLIST in initrd
    assert "modeset=0" in v.ssh("sudo -n modprobe -n -v nouveau", check=False).stdout
    assert "blacklist nouveau" in v.ssh("sudo -n modprobe --showconfig").stdout
    assert v.ssh("lsmod | grep -c '^nouveau'", check=False).stdout.strip() in ("", "0")
    held = v.ssh("apt-mark showhold").stdout.split()
    assert "nvidia-open" in held or any(p.startswith("nvidia-") for p in held), held
    assert plan_changes(inv, "nvidia_driver", "nvidia_driver: re-plan both") == []
