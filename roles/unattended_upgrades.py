"""Role ``unattended_upgrades``: security updates keep coming; the GPU driver never moves by itself.

"Failed to initialize NVML: Driver/library version mismatch" is what users see after
unattended-upgrades replaced the driver's user-space libraries under a loaded kernel module.
The driver packages are excluded through ``Unattended-Upgrade::Package-Blacklist`` (Python
regular expressions matched at the start of package names, unattended-upgrades >= 1.x) in
``/etc/apt/apt.conf.d/52dlrig-unattended-upgrades`` (after 50unattended-upgrades: apt appends list
entries and takes the last value of scalars). The distribution's allowed origins (the
``-security`` pocket) are left as they are; no automatic reboot unless asked.

Which packages: the nvidia_driver role's ``held_packages()`` when that role defines it, plus
:data:`DRIVER_PACKAGE_PATTERNS` (the one place this role names driver packages itself).
"""

from __future__ import annotations

import importlib
import re

from dlrig.roles import ROOT_OWNED, template
from dlrig.roles.settings.unattended_upgrades import DEFAULTS, DRIVER_PACKAGE_PATTERNS
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from dlrig.engine import aptget
from dlrig.engine.hostdata import setting

CONF = "/etc/apt/apt.conf.d/52dlrig-unattended-upgrades"


def held_patterns() -> list[str]:
    """Regexes for the driver packages: the nvidia_driver role's ``held_packages()``, if any."""
    patterns = list(DRIVER_PACKAGE_PATTERNS)
    try:
        driver = importlib.import_module("dlrig.roles.nvidia_driver")
    except ImportError:
        driver = None
    held = getattr(driver, "held_packages", None)
    if callable(held):
        try:
            names = list(held() or [])
        except Exception:  # noqa: BLE001 - it may need facts this host cannot give: keep ours
            names = []
        patterns += [re.escape(n) + "$" for n in names if not any(re.match(p, n) for p in patterns)]
    patterns += [p for p in setting("unattended_upgrades_blacklist") or [] if p not in patterns]
    return patterns


@deploy("unattended_upgrades", data_defaults=DEFAULTS)
def unattended_upgrades():
    if not host.data.unattended_upgrades_enabled:
        files.file(name=f"no {CONF}", path=CONF, present=False)
        return
    aptget.install("unattended-upgrades", ["unattended-upgrades"])
    files.template(
        name="security updates on, GPU driver packages excluded",
        src=template("unattended-upgrades-dlrig.conf.j2"),
        dest=CONF,
        mode="644",
        jinja_env_kwargs={"trim_blocks": True, "lstrip_blocks": True},
        blacklist=held_patterns(),
        reboot=host.data.unattended_upgrades_reboot,
        **ROOT_OWNED,
    )
