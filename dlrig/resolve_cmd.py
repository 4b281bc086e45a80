"""``dlrig resolve`` (the compatibility resolver, no hosts), ``dlrig doctor`` (facts + plan per host)
and the after-apply reboot step (``dlrig apply --reboot``) for hosts whose NVIDIA driver changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from dlrig.gpus import UnknownGpu, lookup
from dlrig.resolver import OSES, ResolveError
from dlrig.resolver import resolve as resolve_stack

EXIT_USAGE = 2
HERE = Path(__file__).resolve().parent
DOCTOR_DEPLOY = HERE / "doctor_deploy.py"
REBOOT_DEPLOY = HERE / "reboot_deploy.py"


def _refuse(message: str) -> None:
    click.echo(f"dlrig: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


@click.command("resolve")
@click.option("--gpu", "gpus", multiple=True, metavar="ID_OR_NAME",
              help="A GPU by PCI id (10de:1e84) or name ('RTX 2070 Super'); repeat for several.")
@click.option("--os", "os_name", default="ubuntu-24.04", show_default=True, help=f"One of {', '.join(OSES)}.")
@click.option("--driver", "driver_branch", type=int, metavar="BRANCH", help="Driver branch wish, e.g. 580.")
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
    try:
        infos = [lookup(g) for g in gpus]
        res = resolve_stack(infos, os_name, driver_branch=driver_branch, cuda=cuda, torch=torch_version,
                      driver_source=driver_source, python=python, cpu_only=cpu_only)
    except (ResolveError, UnknownGpu) as e:
        _refuse(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return
    if as_json:
        click.echo(json.dumps(res.as_json()))
        return
    _print_resolution(res.as_json())


resolve = resolve_command  # main.add_command(resolve_cmd.resolve)


def _print_resolution(j: dict, indent: str = "") -> None:
    for g in j["gpus"]:
        flags = ", ".join(k for k in ("fp16_tensor_cores", "bf16", "fp8") if g[k]) or "no tensor/bf16/fp8"
        click.echo(f"{indent}gpu     {g['pci_id']}  {g['name']}  {g['chip']} {g['arch']} cc {g['compute_capability']} ({flags})")
    d = j["driver"]
    click.echo(f"{indent}os      {j['os']}")
    click.echo(f"{indent}driver  " + (f"{d['branch']} {d['flavor']} from {d['source']}" if d else "none (cpu_only)"))
    if j["cuda"]:
        click.echo(f"{indent}cuda    {j['cuda']['version']} ({j['cuda']['source']})")
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
    from dlrig.cli import _fail, _parse_data
    from dlrig.inventory import UserError, load_inventory, validate
    from dlrig.runner import pyinfra_command

    try:
        override = _parse_data(data)
        hosts = load_inventory(inventory, override)
        validate(hosts)
    except UserError as e:
        _fail(e)
    with tempfile.TemporaryDirectory(prefix="dlrig-doctor-") as out:
        cmd = pyinfra_command(inventory, str(DOCTOR_DEPLOY), dry=True, data={**override, "dlrig_doctor_out": out})
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        reports = {}
        for h in hosts:
            f = Path(out) / f"{_safe(h.name)}.json"
            reports[h.name] = json.loads(f.read_text()) if f.exists() else {
                "reachable": False, "error": _tail(proc.stderr) or "no facts collected (unreachable?)"}
    ok = all(r.get("reachable", True) and "error" not in r for r in reports.values())
    if as_json:
        click.echo(json.dumps({"hosts": reports, "ok": ok}))
    else:
        for name, r in reports.items():
            _print_doctor(name, r)
    sys.exit(0 if ok else 1)


def _tail(text: str, n: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-n:])


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


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
    click.echo(f"  free disk    " + ", ".join(f"{k} {v} GB" for k, v in f["free_gb"].items()))
    if "error" in r:
        click.echo(f"  plan         CANNOT RESOLVE: {r['error']}")
    else:
        _print_resolution(r["resolution"], indent="  plan ")


def collect_host_report() -> None:
    """Inside the doctor deploy (pyinfra --dry): this host's facts and resolution to a JSON file."""
    from pyinfra import host
    from pyinfra.api import DeployError
    from pyinfra.facts.deb import DebPackages
    from pyinfra.facts.server import KernelVersion

    from dlrig.facts import AptHeld, FreeDisk, Lspci, NvidiaDriver, SecureBoot
    from dlrig.gpus import parse_lspci
    from dlrig.resolver import host_os, resolve_host
    from dlrig.roles.nvidia_driver import DRIVER_PACKAGE

    out = Path(host.data.get("dlrig_doctor_out"))
    try:
        gpus = [g.as_json() for g in parse_lspci(host.get_fact(Lspci) or [])]
    except UnknownGpu as e:
        gpus = [f"unknown: {e}"]
    installed = {k: (v[0] if isinstance(v, (list, tuple)) and v else v)
                 for k, v in (host.get_fact(DebPackages) or {}).items() if DRIVER_PACKAGE.match(k)}
    nv = host.get_fact(NvidiaDriver) or {}
    facts = {
        "os": host_os(),
        "kernel": host.get_fact(KernelVersion),
        "gpus": gpus,
        "secure_boot": host.get_fact(SecureBoot),
        "driver": {"loaded": nv.get("loaded"), "smi": nv.get("smi", []), "smi_error": nv.get("smi_error"),
                   "installed": installed,
                   "held": [p for p in host.get_fact(AptHeld) or [] if DRIVER_PACKAGE.match(p)]},
        "free_gb": host.get_fact(FreeDisk) or {},
    }
    report: dict = {"reachable": True, "facts": facts}
    try:
        report["resolution"] = resolve_host().as_json()
    except DeployError as e:
        report["error"] = str(e).split(": ", 1)[-1]
    (out / f"{_safe(host.name)}.json").write_text(json.dumps(report))


# --- after apply: reboot where the driver changed -----------------------------------------------


def driver_changed_hosts(results: dict | None) -> list[str]:
    """Hosts where the nvidia_driver role installed or removed driver packages in this run."""
    from dlrig.roles.nvidia_driver import OP_PACKAGES, OP_REMOVE

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
    changed = driver_changed_hosts(results)
    if not changed:
        return {}
    if not reboot:
        status = {h: "reboot required" for h in changed}
        if not quiet:
            for h in changed:
                click.echo(f"{h}: reboot required (NVIDIA driver changed): reboot it or run `dlrig apply --reboot`")
        return status
    from dlrig.runner import pyinfra_command, run_pyinfra

    cmd = pyinfra_command(inventory, str(REBOOT_DEPLOY), dry=False, data={"dlrig_local_boot_id": local_boot_id()})
    for h in changed:
        cmd += ["--limit", h]

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
            status[h] = "reboot failed: " + (_tail(result.stderr) or "see pyinfra's output")
        if not quiet:
            click.echo(f"{h}: {status[h]}")
    return status
