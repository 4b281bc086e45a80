"""``dlrig files`` (what each role manages) and ``dlrig revert`` (config-only roles back to the
distribution's defaults, never cutting the SSH session)."""

from __future__ import annotations

import json
import sys

import click

from dlrig.cli import common


@click.command()
@click.option("--role", "roles", help="Only these roles (comma-separated).")
@common.json_opt
def files(roles: str | None, as_json: bool) -> None:
    """List every file, unit, apt pin/hold, masked target and firewall rule each role manages."""
    from dlrig.engine.catalogue import parse_roles
    from dlrig.roles import footprint

    try:
        wanted = parse_roles(roles) if roles else None
    except KeyError as e:
        common.fail(f"--role {roles}: {e.args[0]}")
    if as_json:
        click.echo(json.dumps(footprint.as_json(wanted)))
        return
    for role, item in footprint.items(wanted):
        extra = "; ".join(x for x in (f"when {item.when}" if item.when else "", item.note) if x)
        click.echo(f"{role:20} {item.kind:14} {item.what}" + (f"  ({extra})" if extra else ""))
    click.echo(f"\n~owner is the owner's home. `dlrig revert` undoes: {', '.join(footprint.REVERTIBLE)}; "
               "the rest: README \"Undo by hand\".")


def revert_roles(roles: str | None) -> str:
    """The roles to revert (default: every config-only role); a one-line error for any other."""
    from dlrig.engine.catalogue import parse_roles
    from dlrig.engine.inventory import UserError
    from dlrig.roles.footprint import REVERTIBLE

    try:
        names = parse_roles(roles) if roles else list(REVERTIBLE)
    except KeyError as e:
        raise UserError(f"--roles {roles}: {e.args[0]}") from None
    other = [n for n in names if n not in REVERTIBLE]
    if other:
        raise UserError(f"--roles: {', '.join(other)} installed software, which dlrig revert does not remove; "
                        f"see the README's \"Undo by hand\" (revert takes {', '.join(REVERTIBLE)})")
    return ",".join(names)


@click.command()
@common.sudo_password_option
@common.inventory_arg
@common.roles_opt
@common.data_opt
@common.json_opt
@click.option("--yes", "-y", is_flag=True, help="Revert without asking for confirmation.")
@click.option("-v", "verbose", count=True, help="More of pyinfra's output.")
def revert(inventory: str, roles: str | None, data: tuple[str, ...], as_json: bool, yes: bool, verbose: int) -> None:
    """Put the config-only roles (ssh, firewall, power, unattended_upgrades, dualboot) back to the
    distribution's defaults; SSH keeps working (the ssh role's lock-out proof)."""
    from dlrig.cli.run import run_locked
    from dlrig.engine.inventory import UserError
    from dlrig.engine.runner import FAILED, host_status

    try:
        names = revert_roles(roles)
    except UserError as e:
        common.fail(e)
    hosts, pyinfra_data = common.prepare(inventory, names, data)
    if not yes:
        if not sys.stdin.isatty():
            common.fail(UserError("revert needs confirmation: add --yes"))
        click.confirm(f"Revert {names.replace(',', ', ')} on {', '.join(h.name for h in hosts)}?", abort=True)
    result, log_path, refused = run_locked(inventory, pyinfra_data, hosts, verbose, as_json,
                                           command="revert", deploy="revert")
    if result.interrupted:
        from dlrig.cli.run import report_interrupted

        report_interrupted(result, hosts, as_json, command="revert")
    status = host_status(result, [h.name for h in hosts], dry=False)
    for name, reason in refused.items():
        status[name] = (FAILED, [reason])
    summary = result.summary([h.name for h in hosts])
    ok = result.returncode == 0 and all(s.ok for s in summary.values()) and not refused
    if as_json:
        click.echo(json.dumps({"roles": names.split(","), "ok": ok,
                               "hosts": {n: {"status": st, "changed": summary[n].changed, "errors": why}
                                         for n, (st, why) in status.items()}}))
    else:
        for name, (st, why) in status.items():
            click.echo(f"{name}: {summary[name].changed} change(s), {st}")
            for line in why:
                click.echo(f"  {line}")
    if log_path:
        click.echo(f"log: {log_path}", err=True)
    sys.exit(0 if ok else 1)
