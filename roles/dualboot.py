"""Role ``dualboot``: living beside Windows on one disk.

* ``rtc_local``: the hardware clock in local time (Windows' way). Written as the third line of
  ``/etc/adjtime`` (``LOCAL``/``UTC``), which is all ``timedatectl set-local-rtc`` changes on disk;
  under a running systemd ``timedatectl set-local-rtc`` is used so the RTC is rewritten too.
* GRUB: a drop-in ``/etc/default/grub.d/99-dlrig.cfg`` (sourced after /etc/default/grub and the
  distribution's drop-ins, so it wins) with ``GRUB_DISABLE_OS_PROBER=false`` (GRUB >= 2.06 hides
  other systems otherwise), ``GRUB_DEFAULT`` (``grub_default``: ``linux`` = the first entry,
  ``saved`` = the last one booted, ``windows`` = the Windows entry of the current grub.cfg, or
  any menu title / ``"1>2"`` id), ``GRUB_TIMEOUT`` and a visible menu; ``os-prober`` installed;
  ``update-grub`` runs only when the drop-in or os-prober changed.
* ``data_disks``: fstab lines by UUID with ``nofail`` (a missing disk never stops the boot), in
  a marked block of /etc/fstab. NTFS uses the kernel's ntfs3 driver from Linux 5.15 on (else, and
  on Debian 12, whose kernel has no ntfs3: ntfs-3g) with the owner's uid/gid. A volume Windows left hibernated or dirty (Fast Startup)
  mounts read-only or not at all: a warning says so (``ntfs-3g.probe --readwrite``, read-only).
  Disks are mounted at the next boot (or ``mount -a``); dlrig does not mount them while applying.
"""

from __future__ import annotations

import io
import re
import shlex

from dlrig.roles import ROOT_OWNED
from dlrig.roles.settings.dualboot import DEFAULTS, UID_FS
from pyinfra import host, logger
from pyinfra.api import DeployError, deploy
from pyinfra.facts.files import Directory
from pyinfra.facts.server import KernelVersion, Users, Which
from pyinfra.operations import files, server

from dlrig.engine import aptget
from dlrig.engine.facts import AdjtimeContents, GrubMenuEntries, NtfsVolumeState, fact
from dlrig.engine.hostdata import owner
from dlrig.engine.stack import host_os

GRUB_DROPIN = "/etc/default/grub.d/99-dlrig.cfg"
FSTAB = "/etc/fstab"
FSTAB_MARKER = "# {mark} dlrig data_disks, role dualboot"


# ---------------------------------------------------------------- pure helpers (unit-tested)

def adjtime_text(current: list[str] | None, local: bool) -> str | None:
    """The new /etc/adjtime, or None when nothing must change (a missing file means UTC)."""
    mode = "LOCAL" if local else "UTC"
    if current is None:
        return None if not local else "0.0 0 0.0\n0\nLOCAL\n"
    lines = [line.rstrip("\n") for line in current] + ["", "", ""]
    first, second = lines[0] or "0.0 0 0.0", lines[1] or "0"
    if (lines[2].strip() or "UTC") == mode:
        return None
    return f"{first}\n{second}\n{mode}\n"


def grub_default_value(wish: str, entries: list[str]) -> tuple[str, bool, str | None]:
    """(GRUB_DEFAULT, GRUB_SAVEDEFAULT, warning) for ``grub_default``."""
    if wish == "linux":
        return "0", False, None
    if wish == "saved":
        return "saved", True, None
    if wish == "windows":
        for title in entries:
            if "windows" in title.lower():
                return title, False, None
        return "saved", True, ("no Windows entry in /boot/grub/grub.cfg yet: GRUB_DEFAULT=saved for "
                               "now (pick Windows once and it stays); apply again after update-grub "
                               "found Windows to make it the fixed default")
    return wish, False, None


def render_grub(*, default: str, savedefault: bool, timeout: int) -> str:
    return (
        "# Managed by dlrig (role dualboot): grub_default, grub_timeout. Sourced after\n"
        "# /etc/default/grub; run update-grub after editing.\n"
        "GRUB_DISABLE_OS_PROBER=false\n"
        f"GRUB_DEFAULT={shlex.quote(default)}\n"
        f"GRUB_SAVEDEFAULT={'true' if savedefault else 'false'}\n"
        f"GRUB_TIMEOUT={int(timeout)}\n"
        "GRUB_TIMEOUT_STYLE=menu\n"
        f"GRUB_RECORDFAIL_TIMEOUT={int(timeout)}\n"
    )


#: OSes whose stock kernel is built without ntfs3 (so "auto" means ntfs-3g there whatever the kernel's
#: version): Debian 12's linux-image-6.1 has "# CONFIG_NTFS3_FS is not set"
#: (tools/sources/debian/kernel-ntfs3.txt; a booted Debian 12 VM: "unknown filesystem type 'ntfs3'").
NO_NTFS3 = ("debian-12",)


def ntfs_driver(choice: str, kernel: str | None, os: str | None = None) -> str:
    """``ntfs3`` or ``ntfs-3g`` (the fstab type)."""
    if choice != "auto":
        return choice
    if os in NO_NTFS3:
        return "ntfs-3g"
    m = re.match(r"(\d+)\.(\d+)", kernel or "")
    return "ntfs3" if m and (int(m.group(1)), int(m.group(2))) >= (5, 15) else "ntfs-3g"


def fstab_line(disk: dict, uid: int, gid: int, driver: str) -> str:
    fs = disk.get("fs", "ntfs")
    # nofail: the boot never waits for the disk (the mount is only wanted by local-fs.target), so the
    # device timeout only says how long the mount itself waits for a slow disk (an HDD spinning up, udev
    # on a slow boot): 10 s lost the mount on a booted VM (tests/vm/test_vm_roles.py); 90 s is systemd's
    # own default, written out so a missing disk's mount gives up at a known time.
    opts = ["nofail", "x-systemd.device-timeout=90s"]
    if fs in UID_FS:
        opts = [f"uid={uid}", f"gid={gid}", "umask=022", *opts]
        if fs == "ntfs" and driver == "ntfs-3g":
            opts.append("windows_names")
    else:
        opts = ["defaults", *opts]
    if disk.get("options"):
        opts += disk["options"].split(",")
    fstype = driver if fs == "ntfs" else fs
    passno = 0 if fs in UID_FS else 2
    return f"UUID={disk['uuid']} {disk['mount']} {fstype} {','.join(opts)} 0 {passno}"


# ---------------------------------------------------------------- the role

def _packages(names: list[str]):
    return aptget.install(" ".join(names), names)


def hardware_clock(local: bool) -> None:
    """The hardware clock in local time or UTC (also ``dlrig revert``, which puts UTC back)."""
    systemd_running = fact(Directory, path="/run/systemd/system") is not None
    new_adjtime = adjtime_text(fact(AdjtimeContents), local)
    if new_adjtime is not None:
        if systemd_running and fact(Which, command="timedatectl"):
            server.shell(name=f"hardware clock in {'local time' if local else 'UTC'}",
                         commands=[f"timedatectl set-local-rtc {1 if local else 0}"])
        else:
            files.put(name=f"hardware clock in {'local time' if local else 'UTC'} (/etc/adjtime)",
                      src=io.StringIO(new_adjtime), dest="/etc/adjtime", mode="644", **ROOT_OWNED)


@deploy("dualboot", data_defaults=DEFAULTS)
def dualboot():
    hardware_clock(host.data.rtc_local)

    # --- GRUB
    disks = list(host.data.data_disks)
    ntfs = any(d.get("fs", "ntfs") == "ntfs" for d in disks)
    pkgs = _packages(["os-prober"] + (["ntfs-3g"] if ntfs else []))
    default, save, warning = grub_default_value(host.data.grub_default, fact(GrubMenuEntries))
    if warning:
        logger.warning(f"{host.name}: dualboot: {warning}")
    dropin = files.put(name=f"GRUB settings ({GRUB_DROPIN})",
                       src=io.StringIO(render_grub(default=default, savedefault=save,
                                                   timeout=host.data.grub_timeout)),
                       dest=GRUB_DROPIN, mode="644", **ROOT_OWNED)
    if fact(Which, command="update-grub"):
        server.shell(name="update-grub", commands=["update-grub"],
                     _if=lambda: dropin.did_change() or (pkgs is not None and pkgs.did_change()))
    else:
        logger.warning(f"{host.name}: dualboot: no update-grub on this host (no GRUB?): "
                       f"{GRUB_DROPIN} written, boot menu not regenerated")

    # --- data disks
    if not disks:
        files.block(name="no data_disks in /etc/fstab", path=FSTAB, present=False, marker=FSTAB_MARKER)
        return
    user = owner()
    info = (fact(Users) or {}).get(user)
    if info is None:
        raise DeployError(f"dualboot: owner {user} does not exist on {host.name}: data_disks need "
                          "their uid/gid; create the user or set workstation_user")
    driver = ntfs_driver(host.data.dualboot_ntfs_driver, fact(KernelVersion), host_os())
    for d in disks:
        files.directory(name=f"mount point {d['mount']}", path=d["mount"])
    files.block(name="data_disks in /etc/fstab (by UUID, nofail)", path=FSTAB, marker=FSTAB_MARKER,
                content=[fstab_line(d, info["uid"], info["gid"], driver) for d in disks], backup=True)

    ntfs_uuids = tuple(d["uuid"] for d in disks if d.get("fs", "ntfs") == "ntfs")
    for uuid, state in (fact(NtfsVolumeState, uuids=ntfs_uuids) or {}).items():
        if state in ("hibernated", "unclean"):
            logger.warning(
                f"{host.name}: dualboot: NTFS disk UUID={uuid} is {state} (Windows Fast Startup or "
                "an unclean shutdown): Linux mounts it read-only or not at all. In Windows turn Fast "
                "Startup off (`powercfg /h off` as admin) and shut down fully; do not ntfsfix a "
                "hibernated volume (Windows would lose its session)")
        elif state == "missing":
            logger.warning(f"{host.name}: dualboot: no disk with UUID={uuid} attached now (nofail: "
                           "boot goes on without it)")
