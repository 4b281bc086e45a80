"""``dlrig demo``: the whole loop on a throw-away local Debian 12 test host, nothing else touched.

It builds (once, cached) a debootstrap image, starts one host with its own sshd on 127.0.0.x,
then runs the real commands a user runs against it: apply (CPU-only profile), a re-plan that
must find zero changes, and verify. The host is removed at the end (``--keep`` holds it open).
"""

from __future__ import annotations

import glob
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import subprocess

# Roles that work on a container-like host with no GPU and no reachable conda-forge: the CPU-only
# profile. The GPU and Python roles need a real rig (or their mirrors: see inventories/example.py).
DEMO_ROLES = "base,ssh,power,unattended_upgrades"


def _dlrig(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """Run a dlrig step; its stderr is shown as it comes and kept (for :func:`cause`)."""
    import subprocess

    from dlrig.engine.launch import python_module

    proc = subprocess.Popen(python_module("dlrig", *args), text=True, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE if capture else None)
    kept = []
    for line in proc.stderr:
        sys.stderr.write(line)
        kept.append(line)
    stdout = proc.stdout.read() if capture else None
    return subprocess.CompletedProcess(proc.args, proc.wait(), stdout, "".join(kept))


def cause(stderr: str) -> str:
    """The one line that says why a step failed: dlrig's or pyinfra's error, else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for marks in (("dlrig: error:",), ("pyinfra error",), ("Error", "Could not connect", "FAILED")):
        found = [line for line in lines if any(m in line for m in marks)]
        if found:
            return found[-1]
    return lines[-1] if lines else "no output"


@click.command()
@click.option("--roles", default=DEMO_ROLES, show_default=True, help="Roles to apply to the demo host.")
@click.option("--keep", is_flag=True, help="Keep the host running (until Ctrl-C) and print how to reach it.")
def demo(roles: str, keep: bool) -> None:
    """Provision a throw-away local Debian test host (CPU-only profile) and report."""
    import tempfile

    import dlrig.testing as testing
    from dlrig.engine.catalogue import parse_roles

    try:
        parse_roles(roles)
    except KeyError as e:
        click.echo(f"dlrig: error: --roles {roles}: {e.args[0]}", err=True)
        sys.exit(2)
    missing = testing.missing_requirements()
    if missing:
        click.echo(f"dlrig: error: demo needs a local test host: {missing}", err=True)
        sys.exit(2)

    click.echo("==> golden image (built once, then cached in ~/.cache/dlrig)", err=True)
    start = time.monotonic()
    image = testing.golden_image()
    click.echo(f"    {image} ({time.monotonic() - start:.1f}s)", err=True)
    with tempfile.TemporaryDirectory(prefix="dlrig-demo-") as work, testing.HostPool(Path(work), image) as pool:
        (host,) = pool.start_many(1, ["dlrig-demo"])
        click.echo(f"==> test host {host.name} at {host.address} (sshd in its own namespaces)", err=True)
        inv = testing.write_inventory([host], Path(work) / "demo-inventory.py", data={
            "cpu_only": True,
            "dlrig_roles": parse_roles(roles),  # plan, apply and verify all read the host's roles
            # The owner's key: with it installed, the ssh role turns password login off.
            "ssh_authorized_keys": [Path(f"{testing.image_key(image)}.pub").read_text().strip()],
            "extra_ca_certificates": sorted(glob.glob("/usr/local/share/ca-certificates/*.crt")),
        })
        timings = {}
        steps = [
            ("apply", ["apply", str(inv), "--yes"]),
            ("re-plan", ["plan", str(inv), "--json"]),
            ("verify", ["verify", str(inv)]),
        ]
        results = {}
        for label, args in steps:
            click.echo(f"==> dlrig {' '.join(args)}", err=True)
            t0 = time.monotonic()
            results[label] = _dlrig(*args, capture=label == "re-plan")
            timings[label] = time.monotonic() - t0
        replan = json.loads(results["re-plan"].stdout or "{}")
        changes = replan.get("changes")
        click.echo("")
        click.echo("dlrig demo report")
        click.echo(f"  host        {host.name} ({host.address}), Debian 12, CPU-only profile, roles {roles}")
        click.echo(f"  apply       {'ok' if results['apply'].returncode == 0 else 'FAILED'} ({timings['apply']:.1f}s)")
        click.echo(f"  re-plan     {len(changes) if changes is not None else '?'} change(s) ({timings['re-plan']:.1f}s)")
        click.echo(f"  verify      {'passed' if results['verify'].returncode == 0 else 'FAILED'} ({timings['verify']:.1f}s)")
        ok = results["apply"].returncode == 0 and changes == [] and results["verify"].returncode == 0
        for label in ("apply", "re-plan", "verify"):
            if results[label].returncode != 0:
                why = "some checks failed (the table above)" if label == "verify" else cause(results[label].stderr)
                click.echo(f"  cause       {label}: {why}")
                break
        if keep:
            click.echo(f"\nThe host stays up until Ctrl-C:\n  {' '.join(host.ssh_argv())}\n  inventory: {inv}")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    click.echo("  host        removed")
    sys.exit(0 if ok else 1)

