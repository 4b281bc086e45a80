"""``dlrig plan``, ``apply``, ``check`` and ``settings``: validation and reporting around pyinfra,
never a second engine; after ``apply``, the reboot step for hosts whose NVIDIA driver changed and
the SSH tunnel line for JupyterLab (``dlrig.cli.afterapply``)."""

from __future__ import annotations

import json
import sys

import click

from dlrig.cli import common


no_fast_opt = click.option("--no-fast", "no_fast", is_flag=True,
                           help="Always run pyinfra, even for a host whose last run changed nothing.")


@click.command()
@common.sudo_password_option
@common.inventory_arg
@common.roles_opt
@common.data_opt
@common.json_opt
@click.option("-v", "verbose", count=True, help="More of pyinfra's output.")
@click.option("--locked", "locked", metavar="LOCK", help="Show how each host differs from its entry in LOCK.")
@no_fast_opt
def plan(inventory: str, roles: str | None, data: tuple[str, ...], as_json: bool, verbose: int,
         locked: str | None = None, no_fast: bool = False) -> None:
    """Show what apply would change (a pyinfra dry run); changes nothing."""
    from dlrig.deploys import deploy_file
    from dlrig.engine import noop
    from dlrig.engine.runner import (CONVERGED, FAILED, UNREACHABLE, Change, RunResult, host_status, pyinfra_command,
                                     run_pyinfra)
    from dlrig.roles.settings.jupyter import PLAN_ONLY

    hosts, pyinfra_data = common.prepare(inventory, roles, data)
    if locked:
        from dlrig.cli.lock import plan_locked

        plan_locked(locked, hosts, as_json)
    plan_data = {**pyinfra_data, PLAN_ONLY: True}
    fast = verified_noop(hosts, "plan", plan_data, enabled=not (no_fast or verbose))
    rest = [h for h in hosts if h.name not in fast]
    result = RunResult(0)
    if rest:
        with noop.recording(rest, "plan", plan_data) as converged:
            result = run_pyinfra(
                pyinfra_command(inventory, deploy_file(), dry=True, data=plan_data, verbose=verbose,
                                limit=[h.name for h in rest] if fast else None),
                show_progress=not as_json,
            )
            status = host_status(result, [h.name for h in rest], dry=True)
            if not result.interrupted:
                converged.update({n: [c.as_json() for c in result.changes(conditional=True) if c.host == n]
                                  for n, (st, _) in status.items() if st == CONVERGED})
    notes = apply_needs(hosts)
    if result.interrupted:
        report_interrupted(result, hosts, as_json, command="plan")
    changes = result.changes()
    conditional = result.changes(conditional=True) + [
        Change(c["host"], c["role"], c["operation"], True) for hit in fast.values() for c in hit.report]
    status = {h.name: (CONVERGED, []) if h.name in fast else status[h.name] for h in hosts}
    ok = result.returncode == 0 and not any(st in (UNREACHABLE, FAILED) for st, _ in status.values())
    if as_json:
        payload = {
            "hosts": [h.name for h in hosts],
            "status": {name: st for name, (st, _) in status.items()},
            "changes": [c.as_json() for c in changes],
            "conditional": [c.as_json() for c in conditional],
            "notes": notes,
            "ok": ok,
        }
        if not ok:
            payload["error"] = common.tail(result.stderr)
            payload["errors"] = {name: why for name, (_, why) in status.items() if why}
        click.echo(json.dumps(payload))
    else:
        _print_plan(hosts, changes, conditional, status)
        for note in notes:
            click.echo(f"note: {note}")
        if not ok:
            click.echo("dlrig: pyinfra failed; see its output above", err=True)
    sys.exit(0 if ok else 1)


def verified_noop(hosts: list, mode: str, data: dict, *, enabled: bool) -> dict:
    """{host: Hit} for the hosts whose last run changed nothing and whose inputs and facts are still
    the same (dlrig.engine.noop): reported converged without starting pyinfra for them."""
    from dlrig.engine import noop

    if not enabled:
        return {}
    hits = noop.check(hosts, mode, data)
    for hit in hits.values():
        click.echo(f"[{hit.host}] {noop.HIT_NOTE.format(mode=mode)}: {hit.reads} fact reads the same, "
                   "in one SSH command (--no-fast runs pyinfra)", err=True)
    return hits


def apply_needs(hosts: list) -> list[str]:
    """What plan can see that apply will need and the inventory lacks (plan itself never refuses)."""
    from dlrig.engine.catalogue import parse_roles
    from dlrig.engine.preflight import effective_data

    out = []
    for h in hosts:
        data = effective_data(h.data)
        if "jupyter" in parse_roles(data.get("dlrig_roles")) and not data.get("jupyter_password_hash"):
            out.append(f"{h.name}: jupyter_password_hash is not set: apply needs one unless the host already "
                       "holds one (~/.jupyter/jupyter_server_config.py); set it with `dlrig init` or "
                       "`dlrig apply --jupyter-password-prompt`")
    return out


def _print_plan(hosts, changes, conditional, status=None) -> None:
    from dlrig.engine.runner import FAILED, UNREACHABLE

    click.echo("")
    for h in hosts:
        st, why = (status or {}).get(h.name, (None, []))
        if st in (UNREACHABLE, FAILED):
            click.echo(f"{h.name}: {st}: " + (" | ".join(why) or "see pyinfra's output above"))
            continue
        mine = [c for c in changes if c.host == h.name]
        maybe = [c for c in conditional if c.host == h.name]
        click.echo(f"{h.name}: {len(mine)} change(s)" + (f", {len(maybe)} conditional" if maybe else ""))
        for c in mine:
            click.echo(f"  + {c.role:14} {c.operation}")
        for c in maybe:
            click.echo(f"  ? {c.role:14} {c.operation} (if an earlier step changes)")


@click.command()
@common.sudo_password_option
@common.jupyter_password_option
@common.inventory_arg
@common.roles_opt
@common.data_opt
@common.json_opt
@click.option("--yes", "-y", is_flag=True, help="Apply without asking for confirmation.")
@click.option("-v", "verbose", count=True, help="More of pyinfra's output.")
@click.option("--reboot", is_flag=True, help="Reboot hosts whose NVIDIA driver changed and wait (never this machine).")
@click.option("--locked", "locked", metavar="LOCK", help="Install exactly the versions in LOCK (dlrig lock).")
@click.option("--restore", "restore", metavar="BACKUP",
              help="First put back host keys, Jupyter config and fstab lines from BACKUP (dlrig backup).")
@no_fast_opt
def apply(inventory: str, roles: str | None, data: tuple[str, ...], as_json: bool, yes: bool, verbose: int,
          reboot: bool = False, locked: str | None = None, restore: str | None = None,
          no_fast: bool = False) -> None:
    """Apply the roles to every host in INVENTORY and summarise per host."""
    from dlrig.cli.afterapply import after_apply, echo_tunnel_hints
    from dlrig.deploys import deploy_file
    from dlrig.engine import noop
    from dlrig.engine.inventory import UserError
    from dlrig.engine.runner import (CONVERGED, FAILED, HostSummary, RunResult, host_status, pyinfra_command,
                                     run_pyinfra)

    hosts, pyinfra_data = common.prepare(inventory, roles, data)
    if locked or restore:
        from dlrig.cli import lock as LOCK

        if locked:
            pyinfra_data["dlrig_lock_file"] = LOCK.locked_data(locked, hosts)
        if restore:
            LOCK.restore(restore, hosts, quiet=as_json)
    if not yes:
        if not sys.stdin.isatty():
            common.fail(UserError("apply needs confirmation: add --yes (or run `dlrig plan` first to see the changes)"))
        planned = run_pyinfra(
            pyinfra_command(inventory, deploy_file(), dry=True, data=pyinfra_data), show_progress=False
        )
        if planned.returncode != 0:
            click.echo(planned.stderr, err=True)
            sys.exit(1)
        _print_plan(hosts, planned.changes(), planned.changes(conditional=True),
                    host_status(planned, [h.name for h in hosts], dry=True))
        if not planned.changes():
            click.echo("Nothing to change.")
            sys.exit(0)
        click.confirm("Apply these changes?", abort=True)

    fast = verified_noop(hosts, "apply", pyinfra_data, enabled=yes and not (no_fast or verbose or restore))
    rest = [h for h in hosts if h.name not in fast]
    result, log_path, refused = RunResult(0), None, {}
    summary, status = {}, {}
    if rest:
        with noop.recording(rest, "apply", pyinfra_data) as converged:
            result, log_path, refused = run_locked(inventory, pyinfra_data, rest, verbose, as_json)
            summary = result.summary([h.name for h in rest])
            status = host_status(result, [h.name for h in rest], dry=False)
            if not result.interrupted:
                converged.update({n: s.unchanged for n, s in summary.items()
                                  if n not in refused and status.get(n, ("",))[0] == CONVERGED and s.ok})
    if result.interrupted:
        report_interrupted(result, hosts, as_json)
    for name, hit in fast.items():
        summary[name] = HostSummary(unchanged=hit.report)
        status[name] = (CONVERGED, [])
    summary = {h.name: summary[h.name] for h in hosts}
    for name, reason in refused.items():
        summary[name] = HostSummary(failed=1, errors=[reason])
        status[name] = (FAILED, [reason])
    all_ok = result.returncode == 0 and all(s.ok for s in summary.values())
    reboots = after_apply(inventory, result.results, reboot, quiet=as_json)
    all_ok = all_ok and not any(v.startswith("reboot failed") for v in reboots.values())
    if as_json:
        click.echo(json.dumps({
            "hosts": {name: {"status": status[name][0], "changed": s.changed, "unchanged": s.unchanged,
                             "failed": s.failed,
                             "reachable": s.reachable, "ok": s.ok, "errors": s.errors}
                      for name, s in summary.items()},
            "reboot": reboots,
            "ok": all_ok,
        }))
    else:
        click.echo("")
        click.echo(f"{'host':24} {'changed':>8} {'unchanged':>10} {'failed':>7}  status")
        for name, s in summary.items():
            st, why = status[name]
            click.echo(f"{name:24} {s.changed:>8} {s.unchanged:>10} {s.failed:>7}  {st}")
            for line in why or s.errors[-3:]:
                click.echo(f"{'':24} {line}")
    echo_tunnel_hints(hosts, summary, as_json)
    if log_path:
        click.echo(f"log: {log_path}", err=True)
    sys.exit(0 if all_ok else 1)


def run_locked(inventory: str, pyinfra_data: dict, hosts: list, verbose: int, as_json: bool,
               command: str = "apply", deploy: str = "workstation"):
    """Take every host's apply lock, then run ``deploy`` (logged) on the hosts that got theirs.

    A host whose lock another run holds is failed here, before any change; the others run.
    Returns (result, log path or None, {refused host: reason})."""
    from dlrig.engine import applylock
    from dlrig.engine.preflight import effective_data
    from dlrig.engine.runner import RunResult

    with applylock.acquire(hosts, lambda h: effective_data(h.data)["apply_lock_timeout"],
                           note=lambda line: click.echo(f"dlrig: {line}", err=True)) as locks:
        refused = dict(locks.refused)
        if len(refused) == len(hosts):
            return RunResult(1), None, refused
        limit = [h.name for h in hosts if h.name not in refused] if refused else None
        result, log_path = _apply_logged(inventory, pyinfra_data, hosts, verbose, as_json, limit,
                                         command=command, deploy=deploy)
        return result, log_path, refused


def _apply_logged(inventory: str, pyinfra_data: dict, hosts: list, verbose: int, as_json: bool,
                  limit: list[str] | None = None, command: str = "apply", deploy: str = "workstation"):
    """Run the apply; one line per role on stderr (pyinfra's own output with -v; nothing with
    --json) and every line of pyinfra's output in a log file, whose path is printed even when
    dlrig stops on an exception."""
    from dlrig.deploys import deploy_file
    from dlrig.engine.catalogue import parse_roles
    from dlrig.engine.preflight import effective_data
    from dlrig.engine.runner import pyinfra_command, run_pyinfra
    from dlrig.cli.progress import RoleProgress, new_log

    roles = sorted({r for h in hosts for r in parse_roles(effective_data(h.data).get("dlrig_roles"))},
                   key=parse_roles(None).index)
    log_path, log = new_log(command)
    cmd = pyinfra_command(inventory, deploy_file(deploy), dry=False, data=pyinfra_data, verbose=verbose, limit=limit)
    log.write(f"$ dlrig {command} {inventory}\n# pyinfra: {' '.join(cmd[:2])} ... {' '.join(cmd[4:])}\n")
    progress = RoleProgress(roles, log=log, raw=bool(verbose), quiet=as_json)
    try:
        result = run_pyinfra(cmd, show_progress=progress)
        log.write("\n# pyinfra's JSON results\n" + json.dumps({"results": result.results}) + "\n")
    except BaseException:
        click.echo(f"log: {log_path}", err=True)
        raise
    finally:
        log.close()
    return result, log_path


def report_interrupted(result, hosts, as_json: bool, command: str = "apply") -> None:
    """An interrupted run is never a success: say what did not run, what may still run, exit 130/143."""
    from dlrig.engine.catalogue import parse_roles
    from dlrig.engine.preflight import effective_data
    from dlrig.engine.runner import EXIT_SIGNAL, interruption_report

    roles = {h.name: parse_roles(effective_data(h.data).get("dlrig_roles")) for h in hosts}
    report = interruption_report(result.stderr, roles)
    hint = (f"re-running `dlrig {command}` is safe: every step checks the host first and does only what is "
            "still missing" if command == "apply" else "nothing was changed; run `dlrig plan` again")
    if as_json:
        click.echo(json.dumps({"ok": False, "interrupted": result.interrupted, "hosts": report, "hint": hint}))
    else:
        click.echo(f"\ndlrig: {command} interrupted ({result.interrupted}): not finished", err=True)
        for name, r in report.items():
            if r["stopped_in"]:
                click.echo(f"  {name}: stopped in {r['stopped_in']} (its remote command, e.g. apt under "
                           "sudo, may still be running on the host)", err=True)
            click.echo(f"  {name}: roles that did not run: {', '.join(r['not_run']) or 'none'}", err=True)
        click.echo(f"dlrig: {hint}", err=True)
    sys.exit(EXIT_SIGNAL.get(result.interrupted, 130))



@click.command()
@common.inventory_arg
@common.roles_opt
@common.data_opt
def check(inventory: str, roles: str | None, data: tuple[str, ...]) -> None:
    """Validate INVENTORY's settings without connecting to any host (for CI and editors)."""
    hosts, _ = common.prepare(inventory, roles, data)
    click.echo(f"{len(hosts)} host(s): settings valid ({', '.join(h.name for h in hosts)})")


@click.command()
@click.option("--role", help="Only this role's settings.")
@click.option("--python", "as_python", is_flag=True, help="As commented inventory lines (for inventories/*.py).")
@click.option("--write", "write_to", type=click.Path(exists=True, dir_okay=False),
              help="With --python: refresh the generated block of this inventory file.")
def settings(role: str | None, as_python: bool, write_to: str | None) -> None:
    """List every setting: key, default, allowed values and help."""
    from dlrig.engine.settings import commented_defaults, registry, write_commented_defaults

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
