"""Settings of role ``dualboot``: living beside Windows on one disk.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/dualboot.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

import re

from dlrig.engine.settings import Setting, declare

DISK_FS = ("ntfs", "ext4", "xfs", "btrfs", "exfat", "vfat")
UID_FS = ("ntfs", "exfat", "vfat")  # no owners on disk: mount options give them one
_UUID_RE = re.compile(r"^[0-9A-Fa-f-]{4,36}$")


def _check_grub_default(value: str) -> str | None:
    if not value or any(c in value for c in "\"'`$\\\n"):
        return (f"{value!r}: use 'linux', 'saved', 'windows', a menu entry title or an id "
                "like '1>2' (no quotes, $ or backslashes)")
    return None


def _check_disks(disks: list) -> str | None:
    seen = set()
    for d in disks:
        if not isinstance(d, dict) or set(d) - {"uuid", "mount", "fs", "options"} or not {"uuid", "mount"} <= set(d):
            return (f"{d!r}: each disk is {{'uuid': 'ABCD1234EF567890', 'mount': '/data', "
                    "'fs': 'ntfs'|'ext4'|..., 'options': 'extra,mount,options'}} (see `blkid`)")
        if not isinstance(d["uuid"], str) or not _UUID_RE.match(d["uuid"]):
            return f"{d['uuid']!r} is not a filesystem UUID as `blkid` prints it"
        if not isinstance(d["mount"], str) or not d["mount"].startswith("/") or " " in d["mount"] \
                or d["mount"].rstrip("/") in ("", "/boot", "/usr", "/var", "/etc", "/home"):
            return f"{d['mount']!r}: mount point must be an absolute path without spaces, not a system folder"
        if d.get("fs", "ntfs") not in DISK_FS:
            return f"fs {d.get('fs')!r}: use one of {', '.join(DISK_FS)}"
        opts = d.get("options", "")
        if not isinstance(opts, str) or re.search(r"\s", opts):
            return f"options {opts!r}: comma-separated mount options without spaces"
        if d["mount"] in seen:
            return f"{d['mount']} is used twice"
        seen.add(d["mount"])
    return None


DEFAULTS = declare(
    "dualboot",
    Setting("rtc_local", False, "bool",
            "keep the hardware clock in local time as Windows does (True on dual-boot rigs)"),
    Setting("grub_default", "linux", "str",
            "boot entry by default: 'linux' (first), 'saved' (last booted), 'windows', or a menu title",
            check=_check_grub_default),
    Setting("grub_timeout", 5, "int", "seconds GRUB's menu waits", min=0, max=600),
    Setting("data_disks", [], "list",
            "disks to mount at boot: [{'uuid', 'mount', 'fs' (default ntfs), 'options'}]",
            item_kind="dict", check=_check_disks),
    Setting("dualboot_ntfs_driver", "auto", "str",
            "NTFS driver: 'auto' (ntfs3 from Linux 5.15, else and on Debian 12 ntfs-3g), 'ntfs3' or 'ntfs-3g'",
            choices=("auto", "ntfs3", "ntfs-3g")),
)
