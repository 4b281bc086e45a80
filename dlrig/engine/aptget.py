"""apt for every role: one ``apt-get install`` per role, one ``apt-get update`` per host and run at
most, and the one place that decides which version of a package is installed.

:func:`version_for` answers "which version of X": under ``apply --locked`` the lock's (``pkg=ver``),
else none, i.e. the package the role resolved at apt's candidate under the role's own pins.
:func:`install` is the one transaction of a role. A no-op reads the package list once per host and
run (``engine.facts.fact``'s memo) and adds no operation; under ``--locked`` it also reads, once per
run, where each locked version is (:class:`~dlrig.engine.lockfacts.LockedDebs`, shared by all roles)
and, for one in neither cache_dir nor a configured source, what the sources this run adds offer
(:class:`~dlrig.engine.lockfacts.AddedSourceDebs`, a temporary apt state): a locked version in none
of them is refused before anything changes.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from importlib import import_module
from typing import Any

from pyinfra import host
from pyinfra.api import DeployError
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, server
from pyinfra.operations.util import any_changed

from dlrig.engine import download, lockfile
from dlrig.engine.facts import fact
from dlrig.engine.hostdata import setting
from dlrig.engine.lockfacts import AddedSourceDebs, LockedDebs, where_script

#: Roles whose packages come from apt sources they add in the run (a locked version of theirs may
#: be in no configured source until then), each module's ``added_sources()`` saying which: the
#: role writes those, and ``apply --locked`` reads them first (:func:`moved`).
SOURCE_ROLES = {"nvidia_driver": "dlrig.roles.nvidia_driver", "cuda": "dlrig.roles.cuda",
                "cudnn": "dlrig.roles.cudnn"}


@dataclass(frozen=True)
class AddedSource:
    """An apt source a role adds in the run, exactly as the role writes it: the list file ``path``
    with ``text``; ``keyring``: the key file ``text`` names (signed-by), which the role fetches from
    ``key_url`` (checked against ``key_sha256`` when set); empty for a source the host's keys sign."""

    name: str
    path: str
    text: str
    keyring: str = ""
    key_url: str = ""
    key_sha256: str = ""

_UPDATED = "_dlrig_apt_updated"  # host attribute: this run already has an apt-get update
_CLAIMED = "_dlrig_locked_claimed"  # host attribute: locked packages an earlier transaction installs
_INSTALLING = "_dlrig_apt_installing"  # host attribute: packages an earlier transaction of this run installs
_NO_LOCK = object()

INSTALL = ("DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::=--force-confdef "
           "-o Dpkg::Options::=--force-confold install")
REFUSAL = ("locked apt versions are not available from cache_dir or any apt source: {moved}. "
           "Restore the cache, add a source that has them, or lock again (`dlrig lock`)")


# --- which version ----------------------------------------------------------------------------

def lock_entry() -> dict[str, Any] | None:
    """This host's lock entry under ``apply --locked`` (read once per host and run), else None."""
    cached = getattr(host, "_dlrig_lock_entry", _NO_LOCK)
    if cached is _NO_LOCK:
        cached = lockfile.for_host(setting("dlrig_lock_file"), host.name)
        host._dlrig_lock_entry = cached
    return cached


def _lock_key(entry: dict[str, Any], package: str) -> str | None:
    """The lock's key for ``package`` (dpkg names Multi-Arch: same packages ``name:arch``)."""
    apt_set = entry.get("apt", {})
    if package in apt_set:
        return package
    return next((k for k in sorted(apt_set) if k.split(":", 1)[0] == package), None)


def version_for(package: str) -> str | None:
    """The version of ``package`` this run installs: the lock's under ``--locked``, else None
    (apt's candidate under the role's pins, for the name the resolver chose)."""
    entry = lock_entry()
    key = _lock_key(entry, package) if entry is not None else None
    return entry["apt"][key] if key else None


def archives() -> str:
    cache_dir = setting("cache_dir")
    return lockfile.cache_path(cache_dir, "apt") if cache_dir else "/var/cache/apt/archives"


def locked_sources() -> dict[str, Any]:
    """Where each locked package not installed at its version is (one fact read per host and run)."""
    return fact(LockedDebs, archives=archives(), wanted=lockfile.apt_wanted(lock_entry() or {}))


def run_sources() -> list[AddedSource]:
    """The apt sources the roles of this run add (each once, in run order)."""
    from dlrig.engine.catalogue import parse_roles

    out: dict[str, AddedSource] = {}
    for role in parse_roles(host.data.get("dlrig_roles")):
        if role in SOURCE_ROLES:
            for src in import_module(SOURCE_ROLES[role]).added_sources():
                out.setdefault(src.path, src)
    return list(out.values())


def moved() -> dict[str, str]:
    """Locked packages not at their version whose version is in none of: ``cache_dir``'s archives,
    the apt sources configured now, the sources this run adds (read into a temporary apt state on
    the host, before any change: :func:`dlrig.engine.lockfacts.added_sources_script`). Lock key ->
    ``locked VER, available: ...`` (and why, where an added source could not be read)."""
    missing = locked_sources()["missing"]
    sources = run_sources() if missing else []
    if not sources:
        return dict(missing)
    apt_set = lock_entry()["apt"]
    offer = fact(AddedSourceDebs, wanted={k: apt_set[k] for k in sorted(missing)},
                 sources=[asdict(s) for s in sources])
    out = {}
    for key, why in missing.items():
        offered = offer["versions"].get(key, [])
        if apt_set[key] in offered and not offer["errors"]:
            continue  # a source of this run has it: the role installs it once that source is in
        now = why.split("available: ", 1)[1] if "available: " in why else "none"
        available = [v for v in now.split(",") if v and v != "none"]
        available += [v for v in offered if v not in available]
        out[key] = f"locked {apt_set[key]}, available: {','.join(available) or 'none'}"
        if offer["errors"]:
            out[key] += " (" + "; ".join(offer["errors"]) + ")"
    return out


# --- the transaction ----------------------------------------------------------------------------

def missing(packages: list[str]) -> list[str]:
    installed = fact(DebPackages) or {}
    return [p for p in packages if p not in installed]


def install_command(targets: list[str], recommends: bool = False, locked: bool = False) -> str:
    """``locked``: the lock lists every package, Recommends included: none are added; exact
    versions may be older than the candidate, and held packages that moved must move back."""
    opts = [] if recommends and not locked else ["--no-install-recommends"]
    if locked:
        opts += ["--allow-downgrades", "--allow-change-held-packages"]
    return " ".join([INSTALL, *opts, *(shlex.quote(t) for t in targets)])


#: where apt downloads to (apt's own setting, read on the host): what the byte count watches
_APT_ARCHIVES = 'eval "$(apt-config shell __dl_arch Dir::Cache::archives/d)"; __dl_arch=${__dl_arch:-/var/cache/apt/archives}'


def watched_install(command: str, total: bool = True) -> download.WatchedCommand:
    """An ``apt-get install`` with a byte count of what it downloads (``total``: apt's
    ``--print-uris`` sizes of the same install, when the command is a plain ``apt-get install``)."""
    size = f"{command} --print-uris -qq | awk '{{s += $3}} END {{print s + 0}}'" if total else None
    return download.watched(command, ['"$__dl_arch"'], total=size, setup=_APT_ARCHIVES)


def update(needed: bool, repo_ops: list | tuple = (), what: str = "") -> None:
    """``apt-get update`` before the run's first install (``apt_cache_time`` respected unless a
    source changes in this run: ``repo_ops``); else only after a repository change."""
    label = f" ({what})" if what else ""
    if needed and not getattr(host, _UPDATED, False):
        setattr(host, _UPDATED, True)  # the later roles of this run install from these lists
        apt.update(name=f"apt-get update{label}",
                   cache_time=None if repo_ops else setting("apt_cache_time"))
    elif repo_ops:
        apt.update(name=f"apt-get update ({what + ' ' if what else ''}repository changed)",
                   _if=any_changed(*repo_ops))


def install(name: str, packages: list[str], *, recommends: bool = False, repo_ops: list | tuple = (),
            what: str = "", unlocked: list[str] | tuple = (), removed: list[str] | tuple = ()):
    """A role's apt packages in one ``apt-get install``; the operation, or None when all are there.

    ``repo_ops``: operations of this run that change apt sources or pins the packages come from.
    Under ``apply --locked`` every package is installed at the lock's version (see :func:`install_locked`),
    except those in ``unlocked`` (e.g. the running kernel's headers): apt's candidate, as without a lock.
    ``removed``: packages an earlier operation of this run removes (a conflicting driver): installed
    again even though the package list read while planning has them.
    """
    if lock_entry() is not None:
        return install_locked(name, [p for p in packages if p not in unlocked], repo_ops=repo_ops, what=what,
                              unlocked=missing(list(unlocked)) if unlocked else [], removed=removed)
    earlier = getattr(host, _INSTALLING, set())  # e.g. base's curl, which conda also needs: one transaction
    todo = [p for p in packages if (p in missing(packages) and p not in earlier) or p in removed]
    update(bool(todo), repo_ops, what)
    if not todo:
        return None
    setattr(host, _INSTALLING, earlier | set(todo))
    return server.shell(name=name, commands=[watched_install(install_command(todo, recommends))])


# --- apply --locked ------------------------------------------------------------------------------

def _not_at_version(where: dict[str, Any]) -> dict[str, str]:
    """Lock key -> how it stands (cached / repo / missing), for packages not at their locked version."""
    out = {p: "cached" for p in where["cached"]}
    out.update({t.split("=", 1)[0]: "repo" for t in where["repo"]})
    out.update({p: "missing" for p in where["missing"]})
    return out


def locked_install_command(must: dict[str, str], optional: dict[str, str], unlocked: list[str] | tuple = ()) -> str:
    """Install locked versions, deciding where from when it runs (after this run's source changes):
    a .deb in cache_dir's archives, else apt's lists; refuses, naming what moved, when a ``must``
    version is in neither (an ``optional`` one is left for a later role's sources). ``unlocked``:
    package names installed along, at apt's candidate. The targets are the shell's positional
    parameters, one word each (a cache_dir with spaces stays one path)."""
    pre, post = REFUSAL.split("{moved}")
    wanted = {**optional, **must}
    tags = {p: ("must" if p in must else "may") for p in wanted}
    return (
        f"{{ {where_script(archives(), wanted, tags)}; }} | {{ set -- {' '.join(shlex.quote(u) for u in unlocked)}; "
        "moved=''; while read -r tag kind pkg ver rest; do case $kind in "
        'cached) set -- "$@" "$rest";; repo) set -- "$@" "$pkg=$ver";; '
        'missing) a=${rest%,}; [ "$tag" = must ] && moved="$moved; $pkg: locked $ver, available: ${a:-none}";; '
        "esac; done; "
        'if [ -n "$moved" ]; then printf "%s%s%s\\n" ' + shlex.quote(pre) + ' "${moved#; }" '
        + shlex.quote(post) + " >&2; exit 1; fi; "
        '[ "$#" -eq 0 ] || ' + install_command([], locked=True) + ' "$@"; }'
    )


def install_locked(name: str, packages: list[str], *, repo_ops: list | tuple = (), what: str = "",
                   unlocked: list[str] | tuple = (), removed: list[str] | tuple = ()):
    """``packages`` at the lock's versions, plus the locked packages no earlier transaction of this
    run could install (their source may be one of this role's). Refuses before any change when a
    package is not in the lock, or its version is in no source, those this run adds included
    (:func:`moved`); the install decides where from again when it runs (after this run's changes).

    ``removed``: an earlier operation of this run purges these (and apt with them whatever depends
    on them), so what was at its locked version while planning may be gone when this runs: then
    every locked package goes to the transaction, which installs, when it runs, those not at their
    version (the role's own must be there, the others are put back where a source has them)."""
    entry = lock_entry()
    absent = [p for p in packages if version_for(p) is None]
    if absent:
        raise DeployError(f"{host.name}: --locked: {name} needs {', '.join(absent)}, which the lock does not "
                          "have (the settings changed since `dlrig lock`?): apply without --locked and lock "
                          "again, or set back what was locked")
    where = locked_sources()
    standing = _not_at_version(where)
    claimed = getattr(host, _CLAIMED, set())
    keys = [_lock_key(entry, p) for p in packages]
    must = {k: entry["apt"][k] for k in keys if k in standing and k not in claimed}
    optional = {k: entry["apt"][k] for k, s in standing.items() if k not in must and k not in claimed}
    if removed:  # checked again when it runs: after the purge
        must = {k: entry["apt"][k] for k in keys if k}
        optional = {k: v for k, v in entry["apt"].items() if k not in must}
    if not must and not optional and not unlocked:
        update(False, repo_ops, what)
        return None
    gone = moved() if any(standing.get(k) == "missing" for k in must) else {}
    gone = {k: gone[k] for k in must if k in gone}
    if gone:  # in no source, those this run adds included: refused before any change
        raise DeployError(f"{host.name}: " + REFUSAL.format(moved=_moved_text(gone)))
    need_lists = bool(unlocked) or any(standing.get(k) != "cached" for k in {**must, **optional})
    update(need_lists, repo_ops if need_lists else (), what)
    # sure to be there after this transaction: what must be, and what may be and is in a source now
    setattr(host, _CLAIMED, claimed | set(must) | {k for k in optional if standing.get(k) != "missing"})
    return server.shell(name=name, commands=[watched_install(locked_install_command(must, optional, unlocked),
                                                             total=False)])


def _moved_text(gone: dict[str, str]) -> str:
    return "; ".join(f"{p}: {why}" for p, why in sorted(gone.items()))


def install_lock(name: str):
    """base under ``--locked``: every locked package not at its version that is in cache_dir or a
    configured source now, in one transaction, without ``apt-get update`` (works offline). One that
    is in neither is left to the role of this run that adds a source that has it (:data:`SOURCE_ROLES`,
    read first by :func:`moved`), or refused before any change."""
    where = locked_sources()
    gone = moved()
    if gone:
        raise DeployError(REFUSAL.format(moved=_moved_text(gone)))
    targets = sorted(where["cached"].values()) + sorted(where["repo"])
    setattr(host, _CLAIMED, set(where["cached"]) | {t.split("=", 1)[0] for t in where["repo"]})
    if not targets:
        return None
    return server.shell(
        name=f"{name} ({len(where['cached'])} from cache_dir, {len(where['repo'])} from apt)",
        commands=[watched_install(install_command(targets, locked=True))],
    )
