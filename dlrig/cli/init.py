"""``dlrig init``: the first command a new owner runs. It looks at the rig (this machine, or one
reached over SSH), shows what it found and what ``resolve`` makes of it, and writes a commented
inventory (``my-rig.py``) holding only the owner's answers: no clear-text password ever."""

from __future__ import annotations

import glob
import os
import sys
import time
from pathlib import Path

import click

from dlrig.cli import common

# One probe, run locally (sh -c) or over SSH: the OS, the PCI listing, the block devices.
_SECTIONS = ("os", "lspci", "disks")


def _probe_script() -> str:
    from dlrig.engine.facts import Lspci  # the one lspci command (with its sysfs fallback)

    return ("echo '## os'; . /etc/os-release 2>/dev/null && echo \"$ID-$VERSION_ID\"; "
            f"echo '## lspci'; {Lspci().command()}; "
            "echo '## disks'; lsblk -rno UUID,FSTYPE,LABEL,SIZE 2>/dev/null || true")


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in _SECTIONS}
    current = None
    for line in text.splitlines():
        if line.startswith("## ") and line[3:].strip() in out:
            current = line[3:].strip()
        elif current and line.strip():
            out[current].append(line)
    return out


def _probe_local() -> str:
    import subprocess

    return subprocess.run(["sh", "-c", _probe_script()], capture_output=True, text=True, timeout=60).stdout


def _probe_ssh(host: str, user: str, port: int, key: str | None) -> str:
    import shlex

    import paramiko

    client = paramiko.SSHClient()
    client.load_system_host_keys()
    client.set_missing_host_key_policy(paramiko.WarningPolicy())  # first contact; a changed key still fails
    try:
        client.connect(host, port=port, username=user, key_filename=key, timeout=15,
                       look_for_keys=key is None, allow_agent=key is None)
        _, stdout, _ = client.exec_command(f"sh -c {shlex.quote(_probe_script())}", timeout=60)
        return stdout.read().decode(errors="replace")
    finally:
        client.close()


def _public_keys() -> list[Path]:
    return [Path(p) for p in sorted(glob.glob(str(Path.home() / ".ssh" / "id_*.pub")))]


def _ntfs_disks(lines: list[str]) -> list[dict[str, str]]:
    out = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) >= 2 and parts[0] and parts[1] == "ntfs":
            label = parts[2].encode().decode("unicode_escape") if len(parts) > 2 and parts[2] else ""
            out.append({"uuid": parts[0], "label": label, "size": parts[3] if len(parts) > 3 else "?"})
    return out


@click.command()
@click.option("--host", "address", metavar="ADDRESS", help="The rig's address (default: this machine, @local).")
@click.option("--user", default=None, help="SSH user on the rig, a sudoer (default: your user name).")
@click.option("--port", default=22, show_default=True, type=int, help="The rig's SSH port.")
@click.option("--key", "key", metavar="PATH", type=click.Path(exists=True, dir_okay=False),
              help="Private key for SSH to the rig (default: ssh's usual keys and agent).")
@click.option("--name", default=None, help="The host's name in the inventory (default: rig; @local for this machine).")
@click.option("--output", "-o", default="my-rig.py", show_default=True, type=click.Path(dir_okay=False),
              help="The inventory file to write.")
@click.option("--jupyter-password-stdin", is_flag=True, help="Read the Jupyter password from stdin (one line).")
@click.option("--no-jupyter-password", is_flag=True, help="Do not ask; set jupyter_password_hash later.")
@click.option("--authorized-key", metavar="PATH.pub", type=click.Path(exists=True, dir_okay=False),
              help="Public key to install for the rig's owner (default: offer ~/.ssh/id_*.pub).")
@click.option("--no-authorized-key", is_flag=True, help="Install no public key.")
@click.option("--yes", "-y", is_flag=True, help="Accept every offer without asking (non-interactive).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def init(address, user, port, key, name, output, jupyter_password_stdin, no_jupyter_password, authorized_key,
         no_authorized_key, yes, force) -> None:
    """Look at the rig, resolve its GPU stack and write a commented inventory (my-rig.py)."""
    import getpass

    from dlrig.engine.passwords import hash_password
    from dlrig.engine.settings import BEGIN_MARK, END_MARK, commented_defaults
    from dlrig.gpu.resolver import OSES, ResolveError
    from dlrig.gpu.resolver import resolve as resolve_stack
    from dlrig.gpu.table import UnknownGpu, parse_lspci

    out = Path(output)
    if out.exists() and not force:
        common.fail(f"--output {output}: exists; choose another file or add --force")
    interactive = not yes and sys.stdin.isatty()
    local = address is None
    user = user or getpass.getuser()
    where = "this machine" if local else f"{user}@{address}:{port}"
    click.echo(f"==> looking at {where}", err=True)
    try:
        found = _sections(_probe_local() if local else _probe_ssh(address, user, port, key))
    except Exception as e:  # paramiko and sockets raise many kinds; one line with the fix
        common.fail(f"cannot reach {where}: {type(e).__name__}: {' '.join(str(e).split())[:200]}; check --host, "
                    "--user, --port and --key (ssh-copy-id installs your key)")

    data: list[tuple[str, object, str]] = []  # (key, value, comment)
    os_name = (found["os"] or ["unknown"])[0]
    click.echo(f"    os      {os_name}" + ("" if os_name in OSES else f" (dlrig knows {', '.join(OSES)})"), err=True)
    try:
        gpus = parse_lspci(found["lspci"])
    except UnknownGpu as e:
        gpus = []
        click.echo(f"    gpu     {e}: list it in driver_gpus", err=True)
    for g in gpus:
        click.echo(f"    gpu     {g.pci_id}  {g.name}", err=True)
    if not gpus:
        click.echo("    gpu     no NVIDIA GPU found: the CPU-only profile (cpu_only=True)", err=True)
        data.append(("cpu_only", True, "no NVIDIA GPU found by lspci: no driver, CUDA or cuDNN; a CPU build of torch"))
    resolve_line = ""
    if os_name in OSES:
        try:
            res = resolve_stack(gpus, os_name, cpu_only=not gpus).as_json()
            d, t = res["driver"], res["torch"]
            resolve_line = (f"driver {d['branch']} {d['flavor']} from {d['source']}, " if d else "no driver, ") + \
                (f"CUDA {res['cuda']['version']}, " if res["cuda"] else "") + f"torch {t['version']} {t['variant']}"
        except ResolveError as e:
            resolve_line = f"nothing fits: {str(e).splitlines()[0]}"
        click.echo(f"    resolve {resolve_line}", err=True)

    if no_jupyter_password:
        pass
    elif jupyter_password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            common.fail("--jupyter-password-stdin: stdin held no password")
        data.append(("jupyter_password_hash", hash_password(password), "the hash of your Jupyter password (never the password)"))
        del password
    elif interactive:
        password = click.prompt("Jupyter password (only its hash is stored)", hide_input=True,
                                confirmation_prompt=True, err=True)
        data.append(("jupyter_password_hash", hash_password(password), "the hash of your Jupyter password (never the password)"))
        del password
    else:
        click.echo("    jupyter no password asked (not a terminal): set jupyter_password_hash before applying "
                   "the jupyter role (`dlrig apply --jupyter-password-prompt`)", err=True)

    keys = [] if no_authorized_key else [Path(authorized_key)] if authorized_key else _public_keys()[:1]
    for pub in keys:
        if authorized_key or yes or (interactive and click.confirm(f"Install {pub} for the rig's owner?",
                                                                    default=True, err=True)):
            data.append(("ssh_authorized_keys", [pub.read_text().strip()], f"from {pub}"))

    disks = _ntfs_disks(found["disks"])
    for dsk in disks:
        click.echo(f"    disk    NTFS {dsk['label'] or '(no label)'} {dsk['size']} UUID {dsk['uuid']}", err=True)

    host_name = "@local" if local else (name or "rig")
    entry: list[str] = []
    if not local:
        entry += [f'"ssh_hostname": {address!r},', f'"ssh_user": {user!r},']
        if port != 22:
            entry.append(f'"ssh_port": {port},')
        if key:
            entry.append(f'"ssh_key": {str(Path(key).resolve())!r},')
    if user != "root":
        entry.append('"_sudo": True,  # dlrig works as root on the rig through sudo')
        if local:
            entry.append(f'"workstation_user": {user!r},  # the rig\'s owner (conda, Jupyter, SSH keys), also under sudo')
    if gpus:
        entry.append(f"# lspci: {', '.join(f'{g.pci_id} {g.name}' for g in gpus)}")
    if resolve_line:
        entry.append(f"# dlrig resolve ({os_name}): {resolve_line}")
    for k, v, comment in data:
        entry.append(f'"{k}": {v!r},  # {comment}')
    if disks:
        entry.append("# NTFS data disks found: uncomment to mount them at boot (by UUID, nofail; role dualboot)")
        mounts = [{"uuid": d["uuid"], "mount": f"/mnt/{(d['label'] or 'data').lower().replace(' ', '-')}",
                   "fs": "ntfs"} for d in disks]
        entry.append(f'# "data_disks": {mounts!r},')
    indent = " " * 12
    body = "\n".join(indent + line for line in entry)
    text = (
        f'"""{out.name}: written by `dlrig init` on {time.strftime("%Y-%m-%d")} for {where}.\n\n'
        f"    dlrig plan {out}           # what would change (dry run)\n"
        f"    dlrig apply {out}          # do it (asks first)\n"
        f"    dlrig verify {'--local' if local else out}   # prove it works\n\n"
        "Every setting is listed below, commented, with its default: uncomment what you change.\n"
        '"""\n\n'
        "hosts = [\n"
        "    (\n"
        f"        {host_name!r},\n"
        "        {\n"
        f"{body}\n"
        f"{indent}{BEGIN_MARK}\n"
        f"{commented_defaults(indent=indent)}\n"
        f"{indent}{END_MARK}\n"
        "        },\n"
        "    ),\n"
        "]\n"
    )
    out.write_text(text)
    os.chmod(out, 0o600)  # it holds a password hash
    click.echo(f"wrote {out}: next, `dlrig plan {out}`")
