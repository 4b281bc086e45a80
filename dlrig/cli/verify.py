"""``dlrig verify`` (the shipped checks against hosts) and ``dlrig bench`` (measured vs peak)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dlrig.cli import common


@click.command()
@click.argument("inventory", required=False)
@click.option("--local", is_flag=True, help="Check this machine (testinfra local://) instead of inventory hosts.")
@click.option("--python", "python", metavar="PATH",
              help="Interpreter to check torch with (default: the conda env's python from the settings, else python3).")
@click.option("--roles", help="Only these roles' checks, e.g. base,gpu (default: the host's roles).")
@click.option("--data", "data", multiple=True, metavar="KEY=VALUE", help="Override a setting for every host.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--junit", "junit", metavar="FILE", type=click.Path(dir_okay=False, writable=True),
              help="Also write the results as JUnit XML to FILE.")
@click.option("--sudo", is_flag=True, help="With --local: run the checks' commands through sudo.")
@common.sudo_password_option
def verify(inventory: str | None, local: bool, python: str | None, roles: str | None, data: tuple[str, ...],
           as_json: bool, junit: str | None, sudo: bool) -> None:
    """Run the shipped checks on every host of INVENTORY (over SSH) or on this machine (--local).

    Prints a table (check, host, result, hint) and exits 0 only when no check failed and at least
    one passed on every host (skips are not failures, but a host where no check ran is not
    verified); 1 otherwise; 2 for bad input.
    """
    import tempfile

    from dlrig.engine.inventory import UserError, load_inventory, validate
    from dlrig.engine.preflight import effective_data
    from dlrig.verify import report as R
    from dlrig.verify import runner as V

    if not inventory and not local:
        common.fail("give an INVENTORY (pyinfra inventory file) or --local to check this machine")
    try:
        override = common.parse_data(data)
        only = V.parse_role_list(roles) if roles else None
    except UserError as e:
        common.fail(e.lines)
    except KeyError as e:
        common.fail(f"--roles {roles}: {e.args[0]}")
    try:
        if inventory:
            hosts = load_inventory(inventory, override)
            validate(hosts)
            specs = [(h.name, h.data) for h in hosts]
        else:
            from dlrig.engine.settings import validate_host_data

            errors = validate_host_data("localhost", override)
            if errors:
                raise UserError(errors)
            specs = [("localhost", override)]
    except UserError as e:
        common.fail(e.lines)
    if local and len(specs) != 1:
        common.fail(f"--local checks this machine: give an inventory with one host (this one has {len(specs)}) or none")

    with tempfile.TemporaryDirectory(prefix="dlrig-ssh-") as tmp:
        targets, contexts = [], {}
        for name, hostdata in specs:
            t = V.local_target(name if inventory else "localhost", hostdata, sudo=sudo) if local \
                else V.ssh_target(name, hostdata, Path(tmp))
            settings = effective_data(hostdata)
            contexts[t.name] = V.CheckContext(t.name, settings, V.selected_roles(settings, only), python,
                                              t.login_user)
            targets.append(t)
        if not as_json:
            click.echo(f"verifying {len(targets)} host(s): " + ", ".join(f"{t.name} ({t.display})" for t in targets),
                       err=True)
        results = V.verify_targets(targets, contexts)

    from dlrig.verify.hints import name_inventory

    for r in results:
        r.hint = name_inventory(r.hint, inventory or "inventories/local.py")
    names = [t.name for t in targets]
    if junit:
        Path(junit).write_text(R.junit_xml(results))
    if as_json:
        click.echo(json.dumps(R.as_json(results, names)))
    else:
        for host in R.unprovisioned(results):
            click.echo(f"{host}: not provisioned by dlrig yet: run `dlrig apply {inventory or 'inventories/local.py'}` first; the checks below show what is missing")
        click.echo(R.format_table(results, hosts_expected=names), nl=False)
    sys.exit(0 if R.summary(results, names)["ok"] else 1)


@click.command()
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default=None,
              help="Where to run (default: cuda when torch sees a GPU, else cpu).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--plot", "plot", metavar="FILE.png", type=click.Path(dir_okay=False),
              help="Write a PNG chart of measured vs peak (needs matplotlib: pipx inject dlrig matplotlib).")
@click.option("--python", "python", metavar="PATH",
              help="Measure with this interpreter (it needs torch; default: the one running dlrig).")
@click.option("--repeats", type=click.IntRange(3, 1000), default=None, help="Timed repeats per measurement (median).")
def bench(device: str | None, as_json: bool, plot: str | None, python: str | None, repeats: int | None) -> None:
    """Matmul FP32/TF32/FP16/BF16, memory bandwidth, pinned transfers and a convnet step vs the card's peak.

    GPU numbers: warm-up first, CUDA synchronised timing, median of repeats. On CPU (no GPU, or
    --device cpu) sizes are small: it proves the benchmark, not the machine.
    """
    from dlrig.verify import bench as B
    from dlrig.verify import benchreport as BR

    if plot and not plot.lower().endswith(".png"):
        common.fail(f"--plot {plot}: give a .png file name")
    if plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            common.fail("--plot needs matplotlib: `pipx inject dlrig matplotlib` for a pipx install, "
                        "`pip install '.[bench]'` in a clone")
    try:
        report = B.measure(device=device, python=python, repeats=repeats)
    except B.BenchError as e:
        click.echo(f"dlrig: bench: {e}", err=True)
        sys.exit(1)
    BR.add_peaks(report)
    if plot:
        BR.plot(report, plot)
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(BR.format_table(report), nl=False)
        if plot:
            click.echo(f"chart: {plot}")
