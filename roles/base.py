"""Role ``base``: apt that waits for its lock, a repaired dpkg, essentials, universe, extra CAs."""

from __future__ import annotations

import shlex
from pathlib import Path

from dlrig.roles import ROOT_OWNED, template
from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.facts.apt import AptSources
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.server import LinuxName
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from dlrig.engine import lockfile
from dlrig.engine.facts import DpkgAudit, fact
from dlrig.engine.hostdata import setting
from dlrig.engine.lockfacts import LockedDebs

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

    cache_dir = setting("cache_dir")
    archives = lockfile.cache_path(cache_dir, "apt") if cache_dir else None
    if archives:
        files.directory(name="cache_dir for apt archives", path=f"{archives}/partial", mode="700")
    files.template(
        name="apt waits for the dpkg lock" + (" and keeps packages in cache_dir" if archives else ""),
        src=template("apt-dlrig.conf.j2"),
        dest="/etc/apt/apt.conf.d/90dlrig",
        apt_lock_timeout=host.data.apt_lock_timeout,
        archives=archives,
        mode="644",
        **ROOT_OWNED,
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
            **ROOT_OWNED,
        ))
    if ca_results:
        server.shell(
            name="update the trust store",
            commands=["update-ca-certificates"],
            _if=any_changed(*ca_results),
        )

    if fact(LinuxName) == "Ubuntu" and host.data.ubuntu_enable_universe and not _universe_enabled():
        if "software-properties-common" not in (fact(DebPackages) or {}):
            apt.update(name="apt-get update (for software-properties-common)", cache_time=host.data.apt_cache_time)
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

    locked = lockfile.for_host(setting("dlrig_lock_file"), host.name)
    if locked is not None:
        _install_locked(locked, archives or "/var/cache/apt/archives")
        return

    wanted = list(host.data.base_packages) + list(host.data.base_extra_packages)
    installed = fact(DebPackages) or {}
    missing = [p for p in wanted if p not in installed]
    if missing or needs_update:
        apt.update(name="apt-get update", cache_time=None if needs_update else host.data.apt_cache_time)
    if missing:  # installed ones need no operation: apt.packages would read DebPackages again
        apt.packages(name="essential packages", packages=wanted, no_recommends=True)


def _install_locked(locked: dict, archives: str) -> None:
    """apt --locked: every locked package at its locked version, from cache_dir's archives where
    they are (no `apt-get update`: this works with every source offline), else from apt's lists;
    refuses, naming each package that moved, when a locked version is in neither."""
    where = fact(LockedDebs, archives=archives, wanted=lockfile.apt_wanted(locked))
    if where["missing"]:
        moved = "; ".join(f"{p}: {why}" for p, why in sorted(where["missing"].items()))
        raise DeployError(f"locked apt versions are not available from cache_dir or any apt source: {moved}. "
                          "Restore the cache, add a source that has them, or lock again (`dlrig lock`)")
    targets = sorted(where["cached"].values()) + sorted(where["repo"])
    if targets:
        server.shell(
            name=f"locked apt packages ({len(where['cached'])} from cache_dir, {len(where['repo'])} from apt)",
            commands=["DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
                      "--allow-downgrades -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
                      + " ".join(shlex.quote(t) for t in targets)],
        )
