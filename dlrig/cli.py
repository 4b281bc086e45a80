"""The ``dlrig`` command line: validation and reporting around pyinfra, never a second engine."""

from __future__ import annotations

import ast
import json
import sys
from typing import Any

import click

from dlrig import __version__
from dlrig import mlstack
from dlrig.inventory import UserError, load_inventory, validate

EXIT_USAGE = 2


def _fail(err: UserError) -> None:
    for line in err.lines:
        click.echo(f"dlrig: error: {line}", err=True)
    sys.exit(EXIT_USAGE)


def _parse_data(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--data key=value`` pairs; values read as Python literals when they are one."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--data {pair!r}: use KEY=VALUE, e.g. --data jupyter_port=8890")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def _prepare(inventory: str, roles: str | None, data: tuple[str, ...]):
    """Everything checked before any connection: inventory, roles, every host's settings."""
    from dlrig.roles import parse_roles

    try:
        override = _parse_data(data)
        if roles:
            try:
                override["dlrig_roles"] = parse_roles(roles)
            except KeyError as e:
                raise UserError(f"--roles {roles}: {e.args[0]}") from None
        hosts = load_inventory(inventory, override)
        validate(hosts)
        from dlrig import preflight

        preflight.check(hosts)
    except UserError as e:
        _fail(e)
    return hosts, override


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dlrig")
def main() -> None:
    """Turn a fresh Ubuntu box into a verified deep-learning workstation, repeatably."""


_inventory_arg = click.argument("inventory")
_roles_opt = click.option("--roles", help="Comma-separated roles to run (default: all), e.g. base,ssh.")
_data_opt = click.option("--data", "data", multiple=True, metavar="KEY=VALUE", help="Override a setting for every host.")
_json_opt = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")


@main.command()
@_inventory_arg
@_roles_opt
@_data_opt
@_json_opt
@click.option("-v", "verbose", count=True, help="More of pyinfra's output.")
def plan(inventory: str, roles: str | None, data: tuple[str, ...], as_json: bool, verbose: int) -> None:
    """Show what apply would change (a pyinfra dry run); changes nothing."""
    from dlrig.deploys import deploy_file
    from dlrig.runner import pyinfra_command, run_pyinfra

    hosts, pyinfra_data = _prepare(inventory, roles, data)
    result = run_pyinfra(
        pyinfra_command(inventory, deploy_file(), dry=True, data=pyinfra_data, verbose=verbose),
        show_progress=not as_json,
    )
    changes = result.changes()
    conditional = result.changes(conditional=True)
    ok = result.returncode == 0
    if as_json:
        payload = {
            "hosts": [h.name for h in hosts],
            "changes": [c.as_json() for c in changes],
            "conditional": [c.as_json() for c in conditional],
            "ok": ok,
        }
        if not ok:
            payload["error"] = _tail(result.stderr)
        click.echo(json.dumps(payload))
    else:
        _print_plan(hosts, changes, conditional)
        if not ok:
            click.echo("dlrig: pyinfra failed; see its output above", err=True)
    sys.exit(0 if ok else 1)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _print_plan(hosts, changes, conditional) -> None:
    click.echo("")
    for h in hosts:
        mine = [c for c in changes if c.host == h.name]
        maybe = [c for c in conditional if c.host == h.name]
        click.echo(f"{h.name}: {len(mine)} change(s)" + (f", {len(maybe)} conditional" if maybe else ""))
        for c in mine:
            click.echo(f"  + {c.role:14} {c.operation}")
        for c in maybe:
            click.echo(f"  ? {c.role:14} {c.operation} (if an earlier step changes)")


@main.command()
@mlstack.jupyter_password_option
@_inventory_arg
@_roles_opt
@_data_opt
@_json_opt
@click.option("--yes", "-y", is_flag=True, help="Apply without asking for confirmation.")
@click.option("-v", "verbose", count=True, help="More of pyinfra's output.")
@click.option("--reboot", is_flag=True, help="Reboot hosts whose NVIDIA driver changed and wait (never this machine).")
def apply(inventory: str, roles: str | None, data: tuple[str, ...], as_json: bool, yes: bool, verbose: int,
          reboot: bool = False) -> None:
    """Apply the roles to every host in INVENTORY and summarise per host."""
    from dlrig.deploys import deploy_file
    from dlrig.runner import pyinfra_command, run_pyinfra

    hosts, pyinfra_data = _prepare(inventory, roles, data)
    if not yes:
        if not sys.stdin.isatty():
            _fail(UserError("apply needs confirmation: add --yes (or run `dlrig plan` first to see the changes)"))
        planned = run_pyinfra(
            pyinfra_command(inventory, deploy_file(), dry=True, data=pyinfra_data), show_progress=False
        )
        if planned.returncode != 0:
            click.echo(planned.stderr, err=True)
            sys.exit(1)
        _print_plan(hosts, planned.changes(), planned.changes(conditional=True))
        if not planned.changes():
            click.echo("Nothing to change.")
            sys.exit(0)
        click.confirm("Apply these changes?", abort=True)

    result = run_pyinfra(
        pyinfra_command(inventory, deploy_file(), dry=False, data=pyinfra_data, verbose=verbose),
        show_progress=not as_json,
    )
    summary = result.summary([h.name for h in hosts])
    all_ok = result.returncode == 0 and all(s.ok for s in summary.values())
    from dlrig.resolve_cmd import after_apply  # hosts whose driver changed: reboot (--reboot) or say so
    reboots = after_apply(inventory, result.results, reboot, quiet=as_json)
    all_ok = all_ok and not any(v.startswith("reboot failed") for v in reboots.values())
    if as_json:
        click.echo(json.dumps({
            "hosts": {name: {"changed": s.changed, "unchanged": s.unchanged, "failed": s.failed,
                             "reachable": s.reachable, "ok": s.ok, "errors": s.errors}
                      for name, s in summary.items()},
            "reboot": reboots,
            "ok": all_ok,
        }))
    else:
        click.echo("")
        click.echo(f"{'host':24} {'changed':>8} {'unchanged':>10} {'failed':>7}  status")
        for name, s in summary.items():
            status = "ok" if s.ok else ("unreachable" if not s.reachable else "FAILED")
            click.echo(f"{name:24} {s.changed:>8} {s.unchanged:>10} {s.failed:>7}  {status}")
            for line in s.errors[-3:]:
                click.echo(f"{'':24} {line}")
    mlstack.echo_tunnel_hints(hosts, summary, as_json)
    sys.exit(0 if all_ok else 1)


@main.command()
@_inventory_arg
@_roles_opt
@_data_opt
def check(inventory: str, roles: str | None, data: tuple[str, ...]) -> None:
    """Validate INVENTORY's settings without connecting to any host (for CI and editors)."""
    hosts, _ = _prepare(inventory, roles, data)
    click.echo(f"{len(hosts)} host(s): settings valid ({', '.join(h.name for h in hosts)})")


@main.command()
@click.option("--role", help="Only this role's settings.")
@click.option("--python", "as_python", is_flag=True, help="As commented inventory lines (for inventories/*.py).")
@click.option("--write", "write_to", type=click.Path(exists=True, dir_okay=False),
              help="With --python: refresh the generated block of this inventory file.")
def settings(role: str | None, as_python: bool, write_to: str | None) -> None:
    """List every setting: key, default, allowed values and help."""
    from dlrig.settings import commented_defaults, registry, write_commented_defaults

    if write_to:
        changed = write_commented_defaults(write_to)
        click.echo(f"{write_to}: {'updated' if changed else 'already up to date'}")
        return
    if as_python:
        click.echo(commented_defaults(role))
        return
    for s in sorted(registry().values(), key=lambda s: (s.role, s.key)):
        if role and s.role != role:
            continue
        click.echo(f"{s.role:14} {s.key:30} default {s.default!r}")
        click.echo(f"{'':14} {'':30} {s.allowed()}: {s.help}")


from dlrig import demo as _demo  # noqa: E402

main.add_command(_demo.demo)

from dlrig import resolve_cmd  # noqa: E402

main.add_command(resolve_cmd.resolve)
main.add_command(resolve_cmd.doctor)

from dlrig import verify_cmd  # noqa: E402

main.add_command(verify_cmd.verify)
main.add_command(verify_cmd.bench)

if __name__ == "__main__":
    main()
