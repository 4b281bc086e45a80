"""Failures -> what to do. Pure functions over text gathered from a host.

The GPU checks gather *evidence* with one shell script (:data:`EVIDENCE_SCRIPT`, run by
testinfra's ``host.run``), parse it with :func:`parse_evidence` and ask :func:`nvidia_smi_hint`
(or the other ``*_hint`` functions) for a :class:`Finding`: the reason (what failed, as the tool
said it) and the hint (the one thing to do next). Nothing here touches a host, so every branch
is unit-tested with canned evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass(frozen=True)
class Finding:
    reason: str  # what failed, in the failing tool's own words
    hint: str  # what to do

    def message(self) -> str:
        """One assert message: reason, then the hint after ' -> '."""
        return f"{self.reason} -> {self.hint}"


#: Separates a check's reason from its hint in assert messages (the verify table splits on it).
HINT_SEP = " -> "
HINT_MARK = "HINT: "


def split_message(text: str) -> tuple[str, str]:
    """(reason, hint) from an assert message written as ``reason -> HINT: hint``."""
    if HINT_MARK in text:
        reason, _, hint = text.partition(HINT_MARK)
        return reason.rstrip().removesuffix(HINT_SEP.strip()).rstrip(), hint.strip()
    return text.strip(), ""


def fail_message(finding: Finding) -> str:
    return f"{finding.reason}{HINT_SEP}{HINT_MARK}{finding.hint}"


# ------------------------------------------------------------------------------- evidence

#: One round trip: every fact the NVIDIA hints need, as ``### name`` sections. Read-only.
EVIDENCE_SCRIPT = r"""
export LC_ALL=C PATH="$PATH:/usr/sbin:/sbin"
echo '### nvidia_smi'; nvidia-smi 2>&1; rc=$?; echo '### nvidia_smi_rc'; echo $rc
echo '### modules'; cut -d' ' -f1 /proc/modules 2>/dev/null
echo '### proc_version'; cat /proc/driver/nvidia/version 2>/dev/null
echo '### kernel'; uname -r
echo '### modinfo'; modinfo -F version nvidia 2>/dev/null && echo "signer: $(modinfo -F signer nvidia 2>/dev/null)" \
  && echo "filename: $(modinfo -F filename nvidia 2>/dev/null)"
echo '### other_kernel_modules'; ls -d /lib/modules/*/updates/dkms/nvidia.ko* /lib/modules/*/kernel/nvidia*/nvidia.ko* \
  /lib/modules/*/updates/nvidia.ko* 2>/dev/null
echo '### libs'; ls /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.* /usr/lib/x86_64-linux-gnu/nvidia/current/libnvidia-ml.so.* \
  /usr/lib64/libnvidia-ml.so.* /usr/lib/aarch64-linux-gnu/libnvidia-ml.so.* 2>/dev/null
echo '### packages'; dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\n' '*nvidia*' 2>/dev/null | grep '^ii'
lspci_out=$(lspci -nn -d 10de: 2>/dev/null); lspci_rc=$?
echo '### lspci_rc'; echo $lspci_rc
echo '### lspci'; echo "$lspci_out"
echo '### secure_boot'; (mokutil --sb-state 2>&1 || true) | head -n 3
echo '### dmesg'; (dmesg 2>/dev/null || journalctl -k -b --no-pager -q 2>/dev/null) \
  | grep -iE 'nvidia|nvrm|lockdown|key was rejected|module verification|unsigned module' | tail -n 20
echo '### btime'; awk '/^btime/ {print $2}' /proc/stat
echo '### driver_mtime'; stat -c %Y /var/lib/dpkg/info/*nvidia*.list /lib/modules/*/updates/dkms/nvidia.ko* 2>/dev/null \
  | sort -n | tail -n 1
echo '### reboot_required'; cat /var/run/reboot-required /var/run/reboot-required.pkgs 2>/dev/null
echo '### end'
"""


@dataclass
class Evidence:
    nvidia_smi_rc: int | None = None
    nvidia_smi: str = ""
    modules: set[str] = field(default_factory=set)
    proc_version: str = ""
    kernel: str = ""
    modinfo: str = ""  # empty: no nvidia module for the running kernel
    other_kernel_modules: list[str] = field(default_factory=list)
    libs: list[str] = field(default_factory=list)
    packages: dict[str, str] = field(default_factory=dict)
    nvidia_pci: list[str] | None = None  # None: lspci missing
    secure_boot: bool | None = None  # None: unknown (no mokutil, legacy BIOS)
    dmesg: str = ""
    btime: int | None = None
    driver_mtime: int | None = None
    reboot_required: str = ""

    # ---- derived
    @property
    def loaded_module_version(self) -> str | None:
        m = re.search(r"Kernel Module(?: for \S+)?\s+([0-9]+\.[0-9]+(?:\.[0-9]+)?)", self.proc_version)
        if m:
            return m.group(1)
        m = re.search(r"this kernel module has the version ([0-9.]+)", self.dmesg)
        return m.group(1) if m else None

    @property
    def library_version(self) -> str | None:
        m = re.search(r"client has the version ([0-9.]+)", self.dmesg)
        if m:
            return m.group(1)
        for lib in self.libs:
            m = re.search(r"libnvidia-ml\.so\.([0-9]+\.[0-9]+(?:\.[0-9]+)?)$", lib.strip())
            if m:
                return m.group(1)
        for name in ("libnvidia-ml1", "libnvidia-compute", "nvidia-utils", "nvidia-driver"):
            for pkg, ver in self.packages.items():
                if pkg.startswith(name):
                    return _upstream(ver)
        return None

    @property
    def module_available(self) -> bool:
        return bool(self.modinfo.strip())

    @property
    def module_version(self) -> str | None:
        first = self.modinfo.strip().splitlines()[:1]
        return first[0].strip() if first else None

    @property
    def module_signer(self) -> str | None:
        m = re.search(r"^signer:[ \t]*(.*)$", self.modinfo, re.M)
        return (m.group(1).strip() or None) if m else None

    @property
    def nvidia_loaded(self) -> bool:
        return "nvidia" in self.modules

    @property
    def changed_since_boot(self) -> bool:
        return bool(self.btime and self.driver_mtime and self.driver_mtime > self.btime)


def _upstream(version: str) -> str:
    """``535.183.01-1~deb12u1`` -> ``535.183.01``; ``1:550.54.15-0ubuntu1`` -> ``550.54.15``."""
    version = version.split(":", 1)[-1]
    return re.split(r"[-~+]", version, maxsplit=1)[0]


def _sections(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.fullmatch(r"### (\w+)", line.strip())
        if m:
            current = m.group(1)
            out[current] = []
        elif current:
            out[current].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in out.items()}


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def parse_evidence(text: str) -> Evidence:
    """Read the output of :data:`EVIDENCE_SCRIPT`."""
    s = _sections(text)
    packages = {}
    for line in s.get("packages", "").splitlines():
        parts = line.split()
        if len(parts) >= 3:
            packages[parts[1].split(":")[0]] = parts[2]
    sb = s.get("secure_boot", "").lower()
    secure_boot = True if "secureboot enabled" in sb else False if "secureboot disabled" in sb else None
    lspci_rc = _int(s.get("lspci_rc", ""))
    return Evidence(
        nvidia_smi_rc=_int(s.get("nvidia_smi_rc", "")),
        nvidia_smi=s.get("nvidia_smi", ""),
        modules=set(s.get("modules", "").split()),
        proc_version=s.get("proc_version", ""),
        kernel=s.get("kernel", "").strip(),
        modinfo=s.get("modinfo", ""),
        other_kernel_modules=[x for x in s.get("other_kernel_modules", "").split() if x],
        libs=[x for x in s.get("libs", "").split() if x],
        packages=packages,
        nvidia_pci=None if lspci_rc != 0 else [x for x in s.get("lspci", "").splitlines() if x.strip()],
        secure_boot=secure_boot,
        dmesg=s.get("dmesg", ""),
        btime=_int(s.get("btime", "")),
        driver_mtime=_int(s.get("driver_mtime", "")),
        reboot_required=s.get("reboot_required", ""),
    )


# ------------------------------------------------------------------------------- hints

_SB_REJECT = re.compile(
    r"(Lockdown:.*unsigned module|key was rejected by service|Loading of unsigned module is rejected"
    r"|module verification failed|Required key not available)",
    re.I,
)


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def nvidia_smi_reason(ev: Evidence) -> str:
    rc = ev.nvidia_smi_rc
    if rc == 127:
        return "nvidia-smi: command not found (exit 127)"
    text = " ".join(ev.nvidia_smi.split())
    # nvidia-smi's own first sentence, e.g. "NVIDIA-SMI has failed because it couldn't
    # communicate with the NVIDIA driver." or "Failed to initialize NVML: Driver/library version mismatch"
    sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0] if text else "no output"
    return f"nvidia-smi exit {rc}: {sentence}"


def nvidia_smi_hint(ev: Evidence) -> Finding:
    """Why ``nvidia-smi`` failed and what to do, from the evidence (most specific cause first)."""
    reason = nvidia_smi_reason(ev)
    out = ev.nvidia_smi
    kernel = ev.kernel or "the running kernel"

    if ev.nvidia_smi_rc == 127:
        return Finding(reason, "the NVIDIA driver utilities are not installed: run "
                               "`dlrig apply INVENTORY --roles nvidia_driver` (or set cpu_only=True for a rig "
                               "without a GPU)")

    if "Driver/library version mismatch" in out or "API mismatch" in ev.dmesg:
        loaded, lib = ev.loaded_module_version, ev.library_version
        moved = (f"the loaded kernel module is {loaded} but the user-space library is now {lib}"
                 if loaded and lib else
                 f"the loaded kernel module ({loaded or 'version unknown'}) and the installed library "
                 f"({lib or 'version unknown'}) differ")
        return Finding(reason, f"{moved}: the driver packages were upgraded after boot (typically by "
                               "unattended-upgrades). Reboot to load the new module, then keep the driver "
                               "held (`apt-mark showhold`; re-run `dlrig apply --roles nvidia_driver`, which "
                               "holds it) so it cannot move again")

    sb_line = next((line.strip() for line in ev.dmesg.splitlines() if _SB_REJECT.search(line)), None)
    unsigned = ev.module_available and not ev.module_signer
    if ev.secure_boot and not ev.nvidia_loaded and (sb_line or unsigned):
        why = f"dmesg: {sb_line!r}" if sb_line else f"modinfo shows no signer on the nvidia module for {kernel}"
        return Finding(reason, f"Secure Boot is on and the kernel refuses the unsigned nvidia module ({why}). "
                               "Enroll the DKMS signing key (`sudo mokutil --import /var/lib/dkms/mok.pub`, "
                               "reboot, choose 'Enroll MOK' in the blue MOK manager), or use Canonical's "
                               "signed prebuilt modules (driver_source='ubuntu'), or turn Secure Boot off "
                               "in the firmware")

    if ev.nvidia_pci == []:
        return Finding(reason, "no NVIDIA GPU on the PCI bus (`lspci -d 10de:` lists nothing): check the card "
                               "is seated and powered (or passed through to this VM); for a rig without a GPU "
                               "set cpu_only=True")

    if "nouveau" in ev.modules:
        return Finding(reason, "nouveau (the open-source driver) holds the GPU: the nvidia_driver role "
                               "blacklists it; run `sudo update-initramfs -u` and reboot")

    if not ev.nvidia_loaded:
        if ev.reboot_required.strip() or (ev.module_available and ev.changed_since_boot):
            when = ""
            if ev.driver_mtime:
                when = " (" + datetime.fromtimestamp(ev.driver_mtime, timezone.utc).strftime(
                    "%Y-%m-%d %H:%M UTC") + ")"
            return Finding(reason, f"reboot: the driver was installed or changed after the last boot{when} "
                                   "and its kernel module is not loaded yet")
        if not ev.module_available:
            if ev.other_kernel_modules:
                built = sorted({p.split("/")[3] for p in ev.other_kernel_modules if p.count("/") > 3})
                return Finding(reason, f"the nvidia module was built for kernel {', '.join(built)}, not for "
                                       f"the running {kernel}: reboot into that kernel, or install "
                                       f"linux-headers-{ev.kernel or '$(uname -r)'} and run "
                                       "`sudo dkms autoinstall`")
            return Finding(reason, f"no nvidia kernel module for {kernel}: the driver is not installed or its "
                                   f"DKMS build failed. Install linux-headers-{ev.kernel or '$(uname -r)'} and "
                                   "re-run `dlrig apply --roles nvidia_driver` (DKMS log: "
                                   "/var/lib/dkms/nvidia*/*/build/make.log)")
        return Finding(reason, "the nvidia module is installed but not loaded: `sudo modprobe nvidia` "
                               "(dmesg says why if it fails), or reboot")

    return Finding(reason, "the nvidia module is loaded but nvidia-smi still fails: see "
                           "`sudo dmesg | grep -i nvrm` (Xid errors point at hardware, power or PCIe problems)")


# ------------------------------------------------------------------------------- torch

def is_cpu_build(torch_version: str, torch_cuda: str | None) -> bool:
    return "+cpu" in torch_version or not torch_cuda


def torch_cpu_build_hint(torch_version: str, variant: str | None, index_url: str | None,
                         python: str = "python") -> Finding:
    """A CPU build of torch on a GPU host: which index to install from."""
    reason = f"torch {torch_version} is a CPU build (torch.version.cuda is None) on a GPU host"
    if index_url or variant:
        url = index_url or f"https://download.pytorch.org/whl/{variant}"
        base = torch_version.split("+", 1)[0]
        return Finding(reason, f"install the {variant or 'CUDA'} build from {url}: `{python} -m pip install "
                               f"--force-reinstall torch=={base} --index-url {url}` (or re-run "
                               "`dlrig apply --roles pytorch`); a conda-installed torch is often the CPU build")
    return Finding(reason, "install a CUDA build from https://download.pytorch.org/whl/<variant> (run "
                           "`dlrig resolve` for the variant that fits this driver) or re-run "
                           "`dlrig apply --roles pytorch`")


def cuda_unavailable_hint(torch_cuda: str | None, driver_version: str | None,
                          min_driver: str | None) -> str:
    """torch has CUDA but ``torch.cuda.is_available()`` is False."""
    if driver_version and min_driver and version_tuple(driver_version) < version_tuple(min_driver):
        return (f"torch's CUDA {torch_cuda} needs driver >= {min_driver} but {driver_version} is loaded: "
                "upgrade the driver (dlrig apply --roles nvidia_driver) or install a torch build for an older "
                "CUDA (dlrig resolve)")
    if not driver_version:
        return "no NVIDIA driver is loaded: fix the nvidia-smi check first"
    return ("the driver is loaded but CUDA cannot start: check CUDA_VISIBLE_DEVICES, /dev/nvidia* permissions "
            "(user in group video/render), and `dmesg | grep NVRM`")


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


__all__ = [
    "EVIDENCE_SCRIPT", "Evidence", "Finding", "HINT_MARK", "HINT_SEP", "cuda_unavailable_hint",
    "fail_message", "first_line", "is_cpu_build", "nvidia_smi_hint", "nvidia_smi_reason",
    "parse_evidence", "split_message", "torch_cpu_build_hint", "version_tuple",
]


def name_inventory(hint: str, inventory: str) -> str:
    """A hint's ``dlrig apply`` line with the inventory the user verified (``INVENTORY`` or none in
    the shipped texts; ``inventories/local.py`` under ``verify --local``)."""
    hint = hint.replace("dlrig apply INVENTORY", f"dlrig apply {inventory}")
    return re.sub(r"dlrig apply (?=--)", f"dlrig apply {inventory} ", hint)
