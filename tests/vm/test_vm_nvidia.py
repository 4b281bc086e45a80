"""``nvidia_driver`` on Debian 12 VMs: the nouveau blacklist really lands in the initramfs the VM
boots, and ``dlrig apply --reboot`` reboots only the host whose driver changed, waits for it to come
back (new boot id), and both re-plan to zero changes.

Real: two booted VMs (one fresh, one the shared CPU-only workstation), GRUB, update-initramfs,
lsinitramfs, modprobe, apt with a signed repository, pyinfra's reboot. FAKE: the NVIDIA packages
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

# vm_full: not yet run green on this machine (see README, Tests); CI selects `vm and not vm_full`
pytestmark = [pytest.mark.vm, pytest.mark.vm_full]


@pytest.fixture
def fake_nvidia_repo_for_vms(tmp_path):
    root = _build_fake_repo(tmp_path / "repo", tmp_path / "gnupg")
    with pyindex.serve(root) as url:
        yield url.replace("127.0.0.1", HOST_FROM_GUEST), (root / "FINGERPRINT").read_text().strip()


def test_apply_reboot_reboots_only_the_changed_host_and_nouveau_is_out_of_its_initramfs(
        workstation, make_vm, fake_nvidia_repo_for_vms, tmp_path):
    url, fpr = fake_nvidia_repo_for_vms
    other = workstation.vm  # cpu_only: nvidia_driver changes nothing there
    v = make_vm("bios", name="gpurig")
    inv = write_inventory([v, other], tmp_path / "inv.py", host_data={
        v.name: {**FAST, "driver_source": "nvidia", "nvidia_repo_url": url, "nvidia_repo_key_fingerprint": fpr},
        other.name: {"cpu_only": True},
    })
    boot_v, boot_other = v.boot_id(), other.boot_id()
    r = dlrig("apply", str(inv), "--roles", "nvidia_driver", "--yes", "--reboot", "--json",
              label="nvidia_driver: apply --reboot")
    assert r.returncode == 0, out(r)
    assert json.loads(r.stdout)["reboot"] == {v.name: "rebooted"}, r.stdout[-2000:]
    assert v.boot_id() != boot_v  # it came back from a new boot ...
    assert other.boot_id() == boot_other  # ... and the other host was left running
    # the initramfs this boot came from carries the blacklist; modprobe reads it
    initrd = v.ssh("sudo -n lsinitramfs /boot/initrd.img-$(uname -r)").stdout
    assert "etc/modprobe.d/dlrig-blacklist-nouveau.conf" in initrd
    assert "modeset=0" in v.ssh("sudo -n modprobe -n -v nouveau", check=False).stdout
    assert "blacklist nouveau" in v.ssh("sudo -n modprobe --showconfig").stdout
    assert v.ssh("lsmod | grep -c '^nouveau'", check=False).stdout.strip() in ("", "0")
    assert plan_changes(inv, "nvidia_driver", "nvidia_driver: re-plan both") == []
