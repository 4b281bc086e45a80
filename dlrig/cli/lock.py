"""``dlrig lock``, ``dlrig backup`` and ``dlrig cache status``: the same rig back after an OS
reinstall (with ``apply --locked LOCK --restore BACKUP``, whose helpers live here too).

Heavy imports (paramiko, the roles) stay inside the functions: ``dlrig --help`` stays fast.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from dlrig.cli import common

EXIT_FAILED = 1


def _owner(remote: Any, data: dict[str, Any]) -> str:
    return data.get("workstation_user") or data.get("ssh_user") or remote.run("id -un").stdout.strip()


def _home(remote: Any, user: str) -> str:
    """``user``'s home from the host's passwd (``getent``), else the usual place."""
    from dlrig.engine import pyenv

    return pyenv.home_of(user, remote.run(pyenv.home_command(user)).stdout.strip() or None)


def _read_host(h: Any, download: bool) -> dict[str, Any]:
    """Connect to one host and read what the lock records (see :mod:`dlrig.engine.lockfile`)."""
    from dlrig.engine import lockfile, pyenv
    from dlrig.engine.catalogue import parse_roles
    from dlrig.engine.preflight import effective_data
    from dlrig.engine.remote import Remote

    data = effective_data(h.data)
    with Remote(h.name, data) as remote:
        user = _owner(remote, data)
        layout = pyenv.env_layout(user, data.get("conda_prefix"), data.get("env_name"), _home(remote, user))
        index = lockfile.torch_index_for(data, None)
        params = lockfile.probe_params(data, layout, index, download=download)
        r = remote.run(lockfile.probe_command(params), root=True)
    probed = json.loads(r.stdout)
    if probed["problems"]:
        raise click.ClickException(f"{h.name}: " + "; ".join(probed["problems"]))
    return lockfile.entry_from_probe(data, parse_roles(data.get("dlrig_roles")), probed)


@click.command("lock")
@common.inventory_arg
@common.data_opt
@click.option("-o", "output", default="dlrig.lock", show_default=True, help="The lock file to write.")
def lock(inventory: str, data: tuple[str, ...], output: str) -> None:
    """Write what every converged host in INVENTORY has, exactly, to one lock file.

    apt packages, the Miniforge installer (URL + sha256), the conda environment (explicit spec with
    md5), every pip distribution (version + wheel sha256; the wheels are kept in cache_dir/wheels),
    Python and JupyterLab. `dlrig apply --locked LOCK` installs exactly these.
    """
    from dlrig.engine import lockfile
    from dlrig.engine.remote import RemoteError

    hosts, _ = common.prepare(inventory, None, data)
    out: dict[str, Any] = {"dlrig_lock": lockfile.FORMAT, "hosts": {}}
    try:
        for h in hosts:
            entry = _read_host(h, download=True)
            out["hosts"][h.name] = entry
            click.echo(f"{h.name}: {len(entry['apt'])} apt package(s), {len(entry.get('pip', {}))} pip "
                       f"distribution(s), torch {entry['stack']['torch']}, python {entry.get('python')}, "
                       f"jupyterlab {entry.get('jupyterlab')}")
    except RemoteError as e:
        click.echo(f"dlrig: {e}", err=True)
        sys.exit(EXIT_FAILED)
    Path(output).write_text(lockfile.dumps(out))
    click.echo(f"wrote {output}: keep it with your inventory (it holds no secret)")


@click.command("backup")
@common.inventory_arg
@common.data_opt
@click.option("-o", "output", default="dlrig.backup", show_default=True,
              help="The backup file to write (mode 600: it holds private host keys).")
def backup(inventory: str, data: tuple[str, ...], output: str) -> None:
    """Save what makes each host the same rig to its users: SSH host keys, the Jupyter config
    (password hash) and the data-disk lines of /etc/fstab, into one 0600 file here.

    `dlrig apply --restore BACKUP` puts them back after a reinstall. Nothing secret is printed.
    """
    from dlrig.engine import backup as BACKUP
    from dlrig.engine.preflight import effective_data
    from dlrig.engine.remote import Remote, RemoteError
    from dlrig.roles.dualboot import FSTAB_MARKER

    hosts, _ = common.prepare(inventory, None, data)
    saved: dict[str, Any] = {}
    try:
        for h in hosts:
            d = effective_data(h.data)
            with Remote(h.name, d) as remote:
                home = _home(remote, _owner(remote, d))
                r = remote.run(BACKUP.collect_command([f"{home}/.jupyter/jupyter_server_config.py"], FSTAB_MARKER),
                               root=True)
            saved[h.name] = json.loads(r.stdout)
    except RemoteError as e:
        click.echo(f"dlrig: {e}", err=True)
        sys.exit(EXIT_FAILED)
    BACKUP.write(output, saved)
    for name, entry in saved.items():
        click.echo(f"{name}:")
        for line in BACKUP.summary(entry):
            click.echo(f"  {line}")
    click.echo(f"wrote {output} (mode 600): keep it private and off the rig (it holds private host keys)")


@click.group("cache")
def cache() -> None:
    """The caches on cache_dir that survive a reinstall (apt, pip, wheels, conda, Miniforge)."""


@cache.command("status")
@common.inventory_arg
@common.json_opt
def cache_status(inventory: str, as_json: bool) -> None:
    """Size per kind of each host's cache_dir (INVENTORY: a file or host names)."""
    from dlrig.engine import lockfile
    from dlrig.engine.preflight import effective_data
    from dlrig.engine.remote import Remote, RemoteError

    hosts, _ = common.prepare(inventory, None, ())
    report: dict[str, Any] = {}
    try:
        for h in hosts:
            d = effective_data(h.data)
            if not d.get("cache_dir"):
                report[h.name] = None
                continue
            paths = {k: lockfile.cache_path(d["cache_dir"], k) for k in lockfile.CACHE_KINDS}
            script = "; ".join(f"printf '%s ' {k}; (du -sb {shlex.quote(v)} 2>/dev/null || echo 0) | cut -f1"
                               for k, v in paths.items())
            with Remote(h.name, d) as remote:
                out = remote.run(script, root=True).stdout
            sizes = {k: int(v) for k, v in (line.split() for line in out.splitlines() if line.strip())}
            report[h.name] = {"cache_dir": d["cache_dir"], "bytes": sizes}
    except RemoteError as e:
        click.echo(f"dlrig: {e}", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(report))
        return
    for name, r in report.items():
        if r is None:
            click.echo(f"{name}: no cache_dir set (set cache_dir, e.g. a folder on the data disk)")
            continue
        click.echo(f"{name}: {r['cache_dir']}")
        for kind, size in r["bytes"].items():
            click.echo(f"  {kind:10} {size / 1e6:10.1f} MB")
        click.echo(f"  {'total':10} {sum(r['bytes'].values()) / 1e6:10.1f} MB")


# --- apply --locked / --restore, plan --locked -----------------------------------------------

def locked_data(lock_path: str, hosts: list) -> str:
    """Check LOCK covers every host; the absolute path the roles read (``dlrig_lock_file``)."""
    from dlrig.engine import lockfile

    try:
        lk = lockfile.load(lock_path)
        for h in hosts:
            lockfile.host_entry(lk, h.name, lock_path)
    except lockfile.LockError as e:
        common.fail(str(e))
    return str(Path(lock_path).resolve())


def restore(backup_path: str, hosts: list, quiet: bool = False) -> None:
    """Put each host's backup back (before the roles run); exits 2 on a bad file, 1 on a host error."""
    from dlrig.engine import backup as BACKUP
    from dlrig.engine.preflight import effective_data
    from dlrig.engine.remote import Remote, RemoteError

    try:
        saved = BACKUP.load(backup_path)
    except BACKUP.BackupError as e:
        common.fail(str(e))
    missing = [h.name for h in hosts if h.name not in saved["hosts"]]
    if missing:
        common.fail(f"backup {backup_path}: has no host {', '.join(missing)}; back those hosts up first "
                    "or drop --restore")
    try:
        for h in hosts:
            entry = saved["hosts"][h.name]
            # the reinstalled host has new host keys: the old ones are what we restore
            d = {**effective_data(h.data), "ssh_strict_host_key_checking": "no"}
            with Remote(h.name, d) as remote:
                for cmd, user, content in BACKUP.restore_commands(entry):
                    remote.run(cmd, root=user is None, user=user, stdin=content)
            if not quiet:
                click.echo(f"{h.name}: restored " + ", ".join(p for p in sorted(entry.get("files", {})))
                           + (" and the /etc/fstab data-disk block" if entry.get("fstab") else ""), err=quiet)
    except RemoteError as e:
        click.echo(f"dlrig: {e}", err=True)
        sys.exit(EXIT_FAILED)


def plan_locked(lock_path: str, hosts: list, as_json: bool) -> None:
    """``plan --locked``: per host, what differs between the host and its lock entry; exits."""
    from dlrig.engine import lockfile
    from dlrig.engine.remote import RemoteError

    locked_data(lock_path, hosts)
    lk = lockfile.load(lock_path)
    report = {}
    try:
        for h in hosts:
            report[h.name] = lockfile.diff(lk["hosts"][h.name], _read_host(h, download=False))
    except RemoteError as e:
        click.echo(f"dlrig: {e}", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps({"hosts": [h.name for h in hosts], "differences": report}))
    else:
        for name, lines in report.items():
            click.echo(f"{name}: {len(lines)} difference(s) from {lock_path}")
            for line in lines:
                click.echo(f"  ~ {line}")
    sys.exit(0)
