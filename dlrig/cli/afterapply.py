"""After ``dlrig apply``: the reboot step for hosts whose NVIDIA driver changed and the SSH tunnel
line for JupyterLab (``dlrig.cli.run`` calls these once pyinfra has finished)."""

from __future__ import annotations

from pathlib import Path

import click

from dlrig.cli import common


def driver_changed_hosts(results: dict | None) -> list[str]:
    """Hosts where the nvidia_driver role installed or removed driver packages in this run."""
    from dlrig.roles.settings.nvidia_driver import OP_PACKAGES, OP_REMOVE

    wanted = {f"nvidia_driver | {OP_PACKAGES}", f"nvidia_driver | {OP_REMOVE}"}
    changed: set[str] = set()
    for op in (results or {}).get("operations", []):
        if wanted & set(op.get("names") or [op.get("name")]):
            changed.update(op.get("success", []))
    return sorted(changed)


def local_boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def after_apply(inventory: str, results: dict | None, reboot: bool, quiet: bool = False) -> dict[str, str]:
    """Per host whose driver changed: "reboot required", or with ``reboot`` "rebooted" / "not rebooted: why".

    Reboots through pyinfra's ``server.reboot`` (reconnects, waits); never the machine dlrig runs on
    (a host with this machine's boot id: ``@local``, a chroot or container sharing our kernel).
    """
    from dlrig.deploys import deploy_file
    from dlrig.engine.runner import pyinfra_command, run_pyinfra

    changed = driver_changed_hosts(results)
    if not changed:
        return {}
    if not reboot:
        status = {h: "reboot required" for h in changed}
        if not quiet:
            for h in changed:
                click.echo(f"{h}: reboot required (NVIDIA driver changed): reboot it or run `dlrig apply --reboot`")
        return status
    cmd = pyinfra_command(inventory, deploy_file("reboot"), dry=False, data={"dlrig_local_boot_id": local_boot_id()},
                          limit=changed)

    result = run_pyinfra(cmd, show_progress=not quiet)
    rebooted, refused = set(), set()
    for op in (result.results or {}).get("operations", []):
        names = set(op.get("names") or [op.get("name")])
        if any("reboot (driver changed)" in n for n in names):
            rebooted.update(op.get("success", []))
        if any("not rebooting" in n for n in names):
            refused.update(op.get("success", []) + op.get("no_change", []))
    status = {}
    for h in changed:
        if h in rebooted:
            status[h] = "rebooted"
        elif h in refused:
            status[h] = "not rebooted: it is the machine dlrig runs on; reboot it yourself"
        else:
            status[h] = "reboot failed: " + (common.tail(result.stderr, 3) or "see pyinfra's output")
        if not quiet:
            click.echo(f"{h}: {status[h]}")
    return status


def echo_tunnel_hints(hosts: list, summary: dict | None = None, as_json: bool = False) -> None:
    """Print :func:`dlrig.roles.settings.jupyter.tunnel_hint` for every host that got the jupyter role (stderr with --json)."""
    from dlrig.engine.catalogue import parse_roles
    from dlrig.engine.preflight import effective_data
    from dlrig.roles.settings.jupyter import tunnel_hint

    for h in hosts:
        data = effective_data(h.data)
        if "jupyter" not in parse_roles(data.get("dlrig_roles")):
            continue
        if summary is not None and h.name in summary and not summary[h.name].ok:
            continue
        click.echo("", err=as_json)
        click.echo(tunnel_hint(h.name, data), err=as_json)
