"""``dlrig backup`` / ``apply --restore``: what makes a reinstalled rig the *same* rig to its users.

Saved per host: the SSH host keys (clients connect without "REMOTE HOST IDENTIFICATION HAS
CHANGED"), the Jupyter server config with its password hash, and the data-disk block of
/etc/fstab. The backup holds private keys: it is written 0600 on the controller and nothing of its
content is ever printed (only paths and public-key fingerprints).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

FORMAT = 1
HOST_KEY_GLOB = "/etc/ssh/ssh_host_*_key"


class BackupError(ValueError):
    """A backup file that cannot be used; one line naming the file and the fix."""


# Runs on the host as root: argv[1] = JSON {"paths": [...], "globs": [...], "fstab_marker": "..."}.
COLLECT = r'''
import base64, glob, grp, json, os, pwd, sys
p = json.loads(sys.argv[1])
paths = list(p["paths"])
for g in p["globs"]:
    for f in sorted(glob.glob(g)):
        paths += [f, f + ".pub"]
files = {}
for path in paths:
    if not os.path.isfile(path):
        continue
    st = os.stat(path)
    files[path] = {"mode": "%o" % (st.st_mode & 0o7777), "owner": pwd.getpwuid(st.st_uid).pw_name,
                   "group": grp.getgrgid(st.st_gid).gr_name,
                   "b64": base64.b64encode(open(path, "rb").read()).decode()}
begin, end = p["fstab_marker"].format(mark="BEGIN"), p["fstab_marker"].format(mark="END")
block, inside = [], False
for line in open("/etc/fstab").read().splitlines() if os.path.exists("/etc/fstab") else []:
    if line.strip() == begin:
        inside = True
    if inside:
        block.append(line)
    if line.strip() == end:
        inside = False
print(json.dumps({"files": files, "fstab": block if block and block[-1].strip() == end else []}))
'''


def collect_command(paths: list[str], fstab_marker: str) -> str:
    params = {"paths": paths, "globs": [HOST_KEY_GLOB], "fstab_marker": fstab_marker}
    return "python3 -c " + shlex.quote(COLLECT) + " " + shlex.quote(json.dumps(params))


def fingerprint(pub_line: str) -> str:
    """``SHA256:...`` of an OpenSSH public key line, as ``ssh-keygen -lf`` prints it."""
    blob = base64.b64decode(pub_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def summary(entry: dict[str, Any]) -> list[str]:
    """What a host's backup holds, without its secrets: paths and public fingerprints."""
    lines = []
    for path, f in sorted(entry.get("files", {}).items()):
        if path.endswith(".pub"):
            pub = base64.b64decode(f["b64"]).decode(errors="replace")
            lines.append(f"{path}  {pub.split()[0]} {fingerprint(pub)}")
        else:
            lines.append(f"{path}  (mode {f['mode']}, {f['owner']})")
    if entry.get("fstab"):
        lines.append(f"/etc/fstab data-disk block ({len(entry['fstab']) - 2} line(s))")
    return lines


def write(path: str | Path, hosts: dict[str, Any]) -> None:
    """Write the backup 0600 (created so; an existing file is replaced, never widened)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"dlrig_backup": FORMAT, "hosts": hosts}, f, indent=1, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, p)


def load(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        st = p.stat()
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise BackupError(f"backup {p}: not found; write one with `dlrig backup INVENTORY -o {p}`") from None
    except (OSError, ValueError) as e:
        raise BackupError(f"backup {p}: not readable JSON ({e})") from None
    if st.st_mode & 0o077:
        raise BackupError(f"backup {p}: readable by others (mode {st.st_mode & 0o777:o}); it holds private "
                          f"host keys: chmod 600 {p}")
    if not isinstance(data, dict) or data.get("dlrig_backup") != FORMAT or not isinstance(data.get("hosts"), dict):
        raise BackupError(f"backup {p}: not a dlrig backup (format {FORMAT}); write it with `dlrig backup`")
    return data


def restore_commands(entry: dict[str, Any]) -> list[tuple[str, str | None, bytes]]:
    """``(shell command, user or None for root, stdin)`` that put a host's backup back."""
    cmds: list[tuple[str, str | None, bytes]] = []
    for path, f in sorted(entry.get("files", {}).items()):
        q = shlex.quote(path)
        content = base64.b64decode(f["b64"])
        if f["owner"] == "root":
            cmds.append((f"install -D -m {f['mode']} -o root -g {shlex.quote(f['group'])} /dev/stdin {q}",
                         None, content))
        else:  # the owner's own file (Jupyter config): written as the owner, parent folders theirs
            cmds.append((f"umask 077; mkdir -p $(dirname {q}) && install -m {f['mode']} /dev/stdin {q}",
                         f["owner"], content))
    if entry.get("fstab"):
        begin = shlex.quote(entry["fstab"][0].strip())
        block = ("\n".join(entry["fstab"]) + "\n").encode()
        cmds.append((f"grep -qxF {begin} /etc/fstab || cat >> /etc/fstab", None, block))
    return cmds
