"""Role ``base``: apt that waits for its lock, a repaired dpkg, essentials, universe, extra CAs."""

from __future__ import annotations

from pathlib import Path

from dlrig.roles import template
from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.facts.apt import AptSources
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.server import LinuxName
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from dlrig.engine.facts import DpkgAudit, fact


# A dpkg lock loop: `dpkg --configure -a` does not read apt's DPkg::Lock::Timeout.
_DPKG_REPAIR = (
    "end=$(( $(date +%s) + {timeout} )); "
    "while :; do out=$(dpkg --configure -a 2>&1) && break; "
    'case "$out" in *lock*) [ "$(date +%s)" -lt "$end" ] && sleep 3 && continue;; esac; '
    'echo "$out" >&2; exit 1; done; echo "$out"'
)
from dlrig.roles.settings.base import CA_DIR, DEFAULTS


def _universe_enabled() -> bool:
    for repo in fact(AptSources) or []:
        if "universe" in getattr(repo, "components", []):
            return True
    return False


@deploy("base", data_defaults=DEFAULTS)
def base():
    if fact(LinuxName) not in ("Ubuntu", "Debian"):
        raise DeployError(f"dlrig supports Ubuntu and Debian, not {fact(LinuxName)}")

    files.template(
        name="apt waits for the dpkg lock",
        src=template("apt-dlrig.conf.j2"),
        dest="/etc/apt/apt.conf.d/90dlrig",
        apt_lock_timeout=host.data.apt_lock_timeout,
        mode="644",
    )

    audit = fact(DpkgAudit)
    if audit:
        server.shell(
            name="repair interrupted dpkg (dpkg --configure -a)",
            commands=[_DPKG_REPAIR.format(timeout=host.data.apt_lock_timeout)],
        )

    ca_results = []
    for i, pem in enumerate(host.data.extra_ca_certificates):
        stem = Path(pem).expanduser().name.rsplit(".", 1)[0]
        ca_results.append(files.put(
            name=f"trust CA certificate {Path(pem).name}",
            src=str(Path(pem).expanduser()),
            dest=f"{CA_DIR}/dlrig-{i}-{stem}.crt",
            mode="644",
        ))
    if ca_results:
        server.shell(
            name="update the trust store",
            commands=["update-ca-certificates"],
            _if=any_changed(*ca_results),
        )

    if fact(LinuxName) == "Ubuntu" and host.data.ubuntu_enable_universe and not _universe_enabled():
        apt.packages(
            name="software-properties-common (add-apt-repository)",
            packages=["software-properties-common"],
        )
        server.shell(
            name="enable universe",
            commands=["add-apt-repository --yes --no-update universe"],
        )
        needs_update = True
    else:
        needs_update = False

    wanted = list(host.data.base_packages) + list(host.data.base_extra_packages)
    installed = fact(DebPackages) or {}
    missing = [p for p in wanted if p not in installed]
    if missing or needs_update:
        apt.update(name="apt-get update", cache_time=None if needs_update else host.data.apt_cache_time)
    if missing:  # installed ones need no operation: apt.packages would read DebPackages again
        apt.packages(name="essential packages", packages=wanted, no_recommends=True)
