"""dlrig.verify.hints: evidence parsing and failure -> what to do. Evidence texts are canned (fakes of a
host's command output, shaped like the real EVIDENCE_SCRIPT's), except where the script runs here."""

from __future__ import annotations

import subprocess

import pytest

from dlrig.verify import hints
from dlrig.verify.hints import Evidence, nvidia_smi_hint, parse_evidence

SMI_9 = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
         "latest NVIDIA driver is installed and running.\n")
MISMATCH = "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.120\n"
BTIME = 1_700_000_000


def evidence_text(**sections: str) -> str:
    base = {"nvidia_smi": SMI_9, "nvidia_smi_rc": "9", "modules": "", "proc_version": "", "kernel": "6.1.0-27-amd64",
            "modinfo": "", "other_kernel_modules": "", "libs": "", "packages": "", "lspci_rc": "0",
            "lspci": "0a:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [GeForce RTX 2070 SUPER] "
                     "[10de:1e84] (rev a1)",
            "secure_boot": "SecureBoot disabled", "dmesg": "", "btime": str(BTIME), "driver_mtime": "",
            "reboot_required": ""}
    base.update(sections)
    return "\n".join(f"### {k}\n{v}" for k, v in base.items()) + "\n### end\n"


def test_evidence_script_runs_here_and_parses():
    """The real script, on this machine (no NVIDIA driver): parses, never raises."""
    out = subprocess.run(["sh", "-c", hints.EVIDENCE_SCRIPT], capture_output=True, text=True, timeout=60).stdout
    ev = parse_evidence(out)
    assert ev.nvidia_smi_rc is not None and ev.kernel
    assert ev.btime and ev.btime > 1_000_000_000
    finding = nvidia_smi_hint(ev)
    assert finding.reason and finding.hint


def test_parse_sections_and_versions():
    ev = parse_evidence(evidence_text(
        modules="nvidia_drm\nnvidia\next4",
        proc_version="NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024",
        libs="/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\n/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.120",
        packages="ii  nvidia-smi 535.216.01-1~deb12u1\nii  libnvidia-ml1:amd64 535.216.01-1~deb12u1",
        modinfo="535.183.01\nsigner: \nfilename: /lib/modules/6.1.0-27-amd64/updates/dkms/nvidia.ko",
        secure_boot="SecureBoot enabled",
    ))
    assert ev.nvidia_smi_rc == 9 and ev.nvidia_loaded
    assert ev.loaded_module_version == "535.183.01"
    assert ev.library_version == "550.120"
    assert ev.packages["libnvidia-ml1"] == "535.216.01-1~deb12u1"
    assert ev.module_available and ev.module_version == "535.183.01" and ev.module_signer is None
    assert ev.secure_boot is True
    assert ev.nvidia_pci and "10de:1e84" in ev.nvidia_pci[0]


def test_exit_9_after_install_without_reboot_says_reboot():
    ev = parse_evidence(evidence_text(modinfo="535.216.01\nsigner: DKMS module signing key",
                                      driver_mtime=str(BTIME + 3600)))
    f = nvidia_smi_hint(ev)
    assert f.reason == ("nvidia-smi exit 9: NVIDIA-SMI has failed because it couldn't communicate with the "
                        "NVIDIA driver.")
    assert f.hint.startswith("reboot: the driver was installed or changed after the last boot (2023-11-14")


def test_reboot_required_file_says_reboot():
    ev = parse_evidence(evidence_text(reboot_required="*** System restart required ***\nnvidia-dkms-550"))
    assert nvidia_smi_hint(ev).hint.startswith("reboot")


def test_secure_boot_rejecting_the_module_says_so():
    ev = parse_evidence(evidence_text(
        secure_boot="SecureBoot enabled",
        modinfo="535.216.01\nsigner: \nfilename: /lib/modules/6.1.0-27-amd64/updates/dkms/nvidia.ko",
        dmesg="[    5.1] Lockdown: modprobe: unsigned module loading is restricted; see man kernel_lockdown.7",
        driver_mtime=str(BTIME + 60),
    ))
    f = nvidia_smi_hint(ev)
    assert f.hint.startswith("Secure Boot is on and the kernel refuses the unsigned nvidia module")
    assert "Lockdown: modprobe" in f.hint and "mokutil --import" in f.hint


def test_secure_boot_key_rejected():
    ev = parse_evidence(evidence_text(secure_boot="SecureBoot enabled",
                                      dmesg="modprobe: ERROR: could not insert 'nvidia': Key was rejected by service"))
    assert "Secure Boot is on" in nvidia_smi_hint(ev).hint


def test_secure_boot_off_with_unsigned_module_is_not_blamed():
    ev = parse_evidence(evidence_text(modinfo="535.216.01\nsigner: ", driver_mtime=str(BTIME + 60)))
    assert "Secure Boot" not in nvidia_smi_hint(ev).hint


def test_driver_library_mismatch_says_what_moved():
    ev = parse_evidence(evidence_text(
        nvidia_smi=MISMATCH, nvidia_smi_rc="18", modules="nvidia",
        proc_version="NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.183.01  Release Build",
        libs="/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.120",
        dmesg="NVRM: API mismatch: the client has the version 550.120, but\nNVRM: this kernel module has the version "
              "535.183.01.  Please make sure that this kernel module and all NVIDIA driver components",
    ))
    f = nvidia_smi_hint(ev)
    assert f.reason == "nvidia-smi exit 18: Failed to initialize NVML: Driver/library version mismatch NVML library version: 550.120"
    assert "the loaded kernel module is 535.183.01 but the user-space library is now 550.120" in f.hint
    assert "Reboot" in f.hint and "held" in f.hint


def test_mismatch_from_packages_when_no_library_file():
    ev = parse_evidence(evidence_text(
        nvidia_smi=MISMATCH, nvidia_smi_rc="18", modules="nvidia",
        proc_version="NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 2024",
        packages="ii  libnvidia-ml1:amd64 535.216.01-1~deb12u1"))
    assert "535.183.01 but the user-space library is now 535.216.01" in nvidia_smi_hint(ev).hint


def test_no_gpu_on_the_bus():
    ev = parse_evidence(evidence_text(lspci=""))
    assert ev.nvidia_pci == []
    assert nvidia_smi_hint(ev).hint.startswith("no NVIDIA GPU on the PCI bus")


def test_lspci_missing_is_unknown_not_empty():
    ev = parse_evidence(evidence_text(lspci_rc="127", lspci=""))
    assert ev.nvidia_pci is None
    assert "no NVIDIA GPU" not in nvidia_smi_hint(ev).hint


def test_nouveau_loaded():
    assert "nouveau" in nvidia_smi_hint(parse_evidence(evidence_text(modules="nouveau\ndrm"))).hint


def test_no_module_for_running_kernel_built_for_another():
    ev = parse_evidence(evidence_text(other_kernel_modules="/lib/modules/6.1.0-28-amd64/updates/dkms/nvidia.ko"))
    f = nvidia_smi_hint(ev)
    assert "built for kernel 6.1.0-28-amd64, not for the running 6.1.0-27-amd64" in f.hint


def test_no_module_at_all():
    f = nvidia_smi_hint(parse_evidence(evidence_text()))
    assert f.hint.startswith("no nvidia kernel module for 6.1.0-27-amd64")
    assert "linux-headers-6.1.0-27-amd64" in f.hint


def test_module_present_not_loaded_not_new():
    ev = parse_evidence(evidence_text(modinfo="535.216.01\nsigner: x", driver_mtime=str(BTIME - 10)))
    assert "sudo modprobe nvidia" in nvidia_smi_hint(ev).hint


def test_nvidia_smi_missing():
    f = nvidia_smi_hint(Evidence(nvidia_smi_rc=127, nvidia_smi="sh: 1: nvidia-smi: not found"))
    assert f.reason == "nvidia-smi: command not found (exit 127)"
    assert "--roles nvidia_driver" in f.hint


def test_upstream_version():
    assert hints._upstream("535.183.01-1~deb12u1") == "535.183.01"
    assert hints._upstream("1:550.54.15-0ubuntu1") == "550.54.15"


@pytest.mark.parametrize("version,cuda,cpu", [("2.13.0+cpu", None, True), ("2.5.1", None, True),
                                              ("2.14.1+cu130", "13.0", False), ("2.4.0", "12.1", False)])
def test_is_cpu_build(version, cuda, cpu):
    assert hints.is_cpu_build(version, cuda) is cpu


def test_cpu_build_hint_names_the_index():
    f = hints.torch_cpu_build_hint("2.13.0+cpu", "cu128", "https://download.pytorch.org/whl/cu128", "/opt/env/bin/python")
    assert f.reason == "torch 2.13.0+cpu is a CPU build (torch.version.cuda is None) on a GPU host"
    assert ("/opt/env/bin/python -m pip install --force-reinstall torch==2.13.0 --index-url "
            "https://download.pytorch.org/whl/cu128") in f.hint
    generic = hints.torch_cpu_build_hint("2.13.0+cpu", None, None)
    assert "dlrig resolve" in generic.hint


def test_cuda_unavailable_hint_old_driver():
    assert "needs driver >= 525.60.13 but 470.256.02" in hints.cuda_unavailable_hint("12.6", "470.256.02", "525.60.13")
    assert "CUDA_VISIBLE_DEVICES" in hints.cuda_unavailable_hint("12.6", "550.1", "525.60.13")


def test_split_message_round_trip():
    f = hints.Finding("nvidia-smi exit 9: it failed.", "reboot")
    assert hints.split_message(hints.fail_message(f)) == ("nvidia-smi exit 9: it failed.", "reboot")
    assert hints.split_message("plain failure") == ("plain failure", "")


def test_hints_name_the_inventory_verified():
    from dlrig.verify.hints import name_inventory

    assert name_inventory("run `dlrig apply INVENTORY --roles cudnn`", "my-rig.py") == \
        "run `dlrig apply my-rig.py --roles cudnn`"
    assert name_inventory("re-run `dlrig apply --roles pytorch`", "inventories/local.py") == \
        "re-run `dlrig apply inventories/local.py --roles pytorch`"
    assert name_inventory("reboot the host", "x.py") == "reboot the host"


def test_a_host_without_base_files_and_no_other_role_passing_is_unprovisioned():
    from dlrig.verify.report import unprovisioned
    from dlrig.verify.runner import CheckResult

    fresh = [CheckResult("a", "base::apt_waits_for_dpkg_lock", "failed", role="base"),
             CheckResult("a", "base::essential_packages_installed", "passed", role="base"),
             CheckResult("a", "ssh::sshd_hardened", "failed", role="ssh")]
    partly = fresh[:2] + [CheckResult("b", "ssh::sshd_hardened", "passed", role="ssh")]
    partly = [CheckResult("b", r.check, r.result, role=r.role) for r in partly]
    done = [CheckResult("c", "base::apt_waits_for_dpkg_lock", "passed", role="base")]
    assert unprovisioned(fresh + partly + done) == ["a"]
