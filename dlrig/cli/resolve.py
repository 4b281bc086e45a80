"""``dlrig resolve`` (the compatibility resolver, no hosts) and ``dlrig doctor`` (facts + plan per
host, collected by ``deploys/doctor.py``)."""

from __future__ import annotations

import json
import sys

import click

from dlrig.cli import common


def _known_branch(value: int | None) -> int | None:
    """--driver is checked before anything else: a branch dlrig knows, else exit 2 with the list."""
    from dlrig.gpu.resolver import unknown_branch

    if value is not None and unknown_branch(value):
        common.fail(f"--driver {value}: {unknown_branch(value)}")
    return value


class _OsOption(click.Option):
    """``--os``: its help names :data:`dlrig.gpu.resolver.OSES`, read when the help is shown, so that
    ``dlrig --help`` does not load the resolver's tables."""

    def get_help_record(self, ctx: click.Context):
        from dlrig.gpu.resolver import OSES

        self.help = f"One of {', '.join(OSES)}."
        return super().get_help_record(ctx)


@click.command("resolve")
@click.option("--gpu", "gpus", multiple=True, metavar="ID_OR_NAME",
              help="A GPU by PCI id (10de:1e84) or name ('RTX 2070 Super'); repeat for several.")
@click.option("--os", "os_name", cls=_OsOption, default="ubuntu-24.04", show_default=True)
@click.option("--driver", "driver_branch", type=int, metavar="BRANCH", help="Driver branch wish, e.g. 580.",
              callback=lambda ctx, param, value: _known_branch(value))
@click.option("--cuda", metavar="X.Y", help="CUDA toolkit wish, e.g. 12.8.")
@click.option("--torch", "torch_version", metavar="X.Y", help="torch release wish, e.g. 2.8.")
@click.option("--source", "driver_source", type=click.Choice(["ubuntu", "nvidia", "debian"]),
              help="Driver source wish (default: by OS).")
@click.option("--python", metavar="X.Y", help="Python the torch build must support.")
@click.option("--cpu-only", is_flag=True, help="No GPU stack: a CPU build of torch.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def resolve_command(gpus, os_name, driver_branch, cuda, torch_version, driver_source, python, cpu_only, as_json):
    """Which driver branch/flavour/source, CUDA, cuDNN and torch build fit these GPUs on this OS.

    Exits 2 with one line saying why and what would work when nothing fits.
    """
    from dlrig.gpu.packages import UnavailablePackages
    from dlrig.gpu.resolver import ResolveError
    from dlrig.gpu.resolver import resolve as resolve_stack
    from dlrig.gpu.table import UnknownGpu, lookup

    try:
        infos = [lookup(g) for g in gpus]
        res = resolve_stack(infos, os_name, driver_branch=driver_branch, cuda=cuda, torch=torch_version,
                      driver_source=driver_source, python=python, cpu_only=cpu_only)
        out = with_packages(res)
    except (ResolveError, UnknownGpu, UnavailablePackages) as e:
        common.fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    if as_json:
        click.echo(json.dumps(out))
        return
    _print_resolution(out)


def with_packages(res) -> dict:
    """The resolution's JSON with the apt packages of each part. The driver's are a desktop on the
    release's GA kernel (``generic``), driver_server and driver_headless off: what ``dlrig apply``
    installs with the default settings (``dlrig doctor`` shows each host's own)."""
    from dlrig.gpu import packages as apt_packages

    return apt_packages.with_packages(res)


resolve = resolve_command


def _print_resolution(j: dict, indent: str = "") -> None:
    for g in j["gpus"]:
        flags = ", ".join(k for k in ("fp16_tensor_cores", "bf16", "fp8") if g[k]) or "no tensor/bf16/fp8"
        click.echo(f"{indent}gpu     {g['pci_id']}  {g['name']}  {g['chip']} {g['arch']} cc {g['compute_capability']} ({flags})")
    d = j["driver"]
    click.echo(f"{indent}os      {j['os']}")
    click.echo(f"{indent}driver  " + (f"{d['branch']} {d['flavor']} from {d['source']}" if d else "none (cpu_only)")
               + (f" ({', '.join(d['packages'])})" if d and d.get("packages") else ""))
    if j["cuda"]:
        c = j["cuda"]
        click.echo(f"{indent}cuda    {c['version']} ({c['source']}" + (f": {', '.join(c['packages'])})" if c.get("packages") else ")"))
    if j["cudnn"]:
        click.echo(f"{indent}cudnn   {j['cudnn']['version']} ({', '.join(j['cudnn']['packages'])})")
    t = j["torch"]
    click.echo(f"{indent}torch   {t['version']} {t['variant']}  --index-url {t['index_url']}")
    for n in j["notes"]:
        click.echo(f"{indent}note    {n}")


# --- doctor -------------------------------------------------------------------------------------


@click.command("doctor")
@click.argument("inventory")
@click.option("--data", "data", multiple=True, metavar="KEY=VALUE", help="Override a setting for every host.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def doctor(inventory: str, data: tuple[str, ...], as_json: bool) -> None:
    """Per host: OS, kernel, GPUs, Secure Boot, loaded/installed driver, free disk, and the resolved plan."""
    from dlrig.engine.inventory import UserError, load_inventory, validate
    import os
    import subprocess
    import tempfile
    from pathlib import Path

    from dlrig.deploys import deploy_file, report_name
    from dlrig.engine.runner import connect_errors, parse_progress, pyinfra_command

    try:
        override = common.parse_data(data)
        hosts = load_inventory(inventory, override)
        validate(hosts)
    except UserError as e:
        common.fail(e)
    with tempfile.TemporaryDirectory(prefix="dlrig-doctor-") as out:
        cmd = pyinfra_command(inventory, deploy_file("doctor"), dry=True, data={**override, "dlrig_doctor_out": out})
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        reports = {}
        progress = parse_progress(proc.stderr, [h.name for h in hosts])
        for h in hosts:
            f = Path(out) / report_name(h.name)
            why = connect_errors(progress[h.name].errors) if h.name in progress else []
            reports[h.name] = json.loads(f.read_text()) if f.exists() else {
                "reachable": False,
                "error": " | ".join(why) or _tail(proc.stderr) or "no facts collected (unreachable?)"}
    ok = all(r.get("reachable", True) and "error" not in r for r in reports.values())
    if as_json:
        click.echo(json.dumps({"hosts": reports, "ok": ok}))
    else:
        for name, r in reports.items():
            _print_doctor(name, r)
    sys.exit(0 if ok else 1)


def _tail(text: str, n: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-n:])


def _print_doctor(name: str, r: dict) -> None:
    click.echo(f"{name}")
    if not r.get("reachable", True):
        click.echo(f"  unreachable: {r.get('error')}")
        return
    f = r["facts"]
    click.echo(f"  os           {f['os']}  kernel {f['kernel']}")
    gpus = f["gpus"] or ["none found"]
    for g in gpus:
        click.echo(f"  gpu          {g if isinstance(g, str) else g['pci_id'] + '  ' + g['name'] + ' (sm_' + g['compute_capability'] + ')'}")
    click.echo(f"  secure boot  {f['secure_boot']}")
    drv = f["driver"]
    click.echo(f"  driver       loaded {drv['loaded'] or 'none'}; installed "
               f"{', '.join(f'{k} {v}' for k, v in drv['installed'].items()) or 'none'}"
               f"{'; held ' + ', '.join(drv['held']) if drv['held'] else ''}")
    if drv.get("smi_error"):
        click.echo(f"  nvidia-smi   {drv['smi_error']}")
    click.echo("  free disk    " + ", ".join(f"{k} {v} GB" for k, v in f["free_gb"].items()))
    if "error" in r:
        click.echo(f"  plan         CANNOT RESOLVE: {r['error']}")
    else:
        _print_resolution(r["resolution"], indent="  plan ")
