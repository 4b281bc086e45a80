"""Role ``base``: apt that waits for its lock, a repaired dpkg, essentials, universe, extra CAs."""

from __future__ import annotations

from pathlib import Path

from dlrig.roles import ROOT_OWNED, template
from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.facts.apt import AptSources
from pyinfra.facts.server import LinuxName
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from dlrig.engine import aptget, lockfile, prefetch
from dlrig.engine.facts import DpkgAudit, fact
from dlrig.engine.hostdata import setting

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

    # downloads of later roles start here (in the background): after the trust store they may
    # need, before this role's apt transaction
    prefetch.start(host)

    sources = []
    if fact(LinuxName) == "Ubuntu" and host.data.ubuntu_enable_universe and not _universe_enabled():
        # The one case of two transactions: add-apt-repository comes in a package of its own.
        aptget.install("software-properties-common (add-apt-repository)", ["software-properties-common"],
                       recommends=True, what="for software-properties-common")
        sources.append(server.shell(
            name="enable universe",
            commands=["add-apt-repository --yes --no-update universe"],
        ))

    if aptget.lock_entry() is not None:  # apply --locked: the whole locked set, exact versions
        aptget.install_lock("locked apt packages")
        return

    wanted = list(host.data.base_packages) + list(host.data.base_extra_packages)
    aptget.install("essential packages", wanted, repo_ops=sources)

