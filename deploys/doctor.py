"""pyinfra deploy file for ``dlrig doctor`` (run with --dry): writes each host's facts and
resolved plan as JSON to ``dlrig_doctor_out/<host>.json``."""

from __future__ import annotations

import json
from pathlib import Path

from dlrig.deploys import report_name, sudo_password
from dlrig.roles.nvidia_driver import DRIVER_PACKAGE, package_options
from pyinfra import host
from pyinfra.api import DeployError
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.server import KernelVersion

from dlrig.engine.facts import AptHeld, FreeDisk, Lspci, NvidiaDriver, SecureBoot
from dlrig.engine.stack import host_os, resolve_host
from dlrig.gpu import packages
from dlrig.gpu.table import UnknownGpu, parse_lspci

sudo_password(host)
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
    res = resolve_host()
    # the apt names this host's settings choose (driver_server, driver_headless, its kernel, cudnn_dev)
    report["resolution"] = packages.with_packages(res, **package_options(res, facts["kernel"]))
except DeployError as e:
    report["error"] = str(e).split(": ", 1)[-1]
except packages.UnavailablePackages as e:
    report["error"] = str(e)
(out / report_name(host.name)).write_text(json.dumps(report))
