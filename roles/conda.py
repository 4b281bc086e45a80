"""Role ``conda``: Miniforge (conda-forge only) for the workstation user, checksum-verified.

The installer is downloaded to a temporary folder, checked against ``conda_installer_sha256``
and only then run (``bash installer -b -p PREFIX``, as the user); a mismatch leaves nothing
behind. After a verified install a marker (``PREFIX/conda-meta/dlrig-installer``) records URL
and checksum: an installed prefix whose marker matches is left alone; any other installed conda
(another version, or one installed by hand) is reported and left alone, never replaced.
Then ``PREFIX/.condarc`` (our channels) and a conda block in the user's ``~/.bashrc``.
"""

from __future__ import annotations

import shlex

from dlrig.roles import template
from dlrig.roles.settings.conda import DEFAULTS, MARKER
from pyinfra import host, logger
from pyinfra.api import DeployError, deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import files, server

from dlrig.engine import aptget, download, lockfile, prefetch, pyenv
from dlrig.engine.facts import CondaInstall, fact
from dlrig.engine.hostdata import owned_by, owner, owner_home, setting

# Miniforge3 24.11.3-0; checksum as published with the release (and in Arch's AUR PKGBUILD).
# GitHub is unreachable from where dlrig is tested: bump both together, from the release's
# .sha256 file, when you move to a newer Miniforge.


def spool(sha256: str) -> str:
    """The spool folder of the installer's background download (:mod:`dlrig.engine.prefetch`)."""
    return prefetch.spool("miniforge", sha256[:16])


def install_command(url: str, sha256: str, prefix: str, cached: str | None = None,
                    prefetched: str | None = None) -> str:
    """Download to a temp dir, refuse on checksum mismatch, install, record the marker.

    ``cached`` (in cache_dir): a verified copy is taken from there instead of downloading, and a
    download is kept there after it was verified. ``prefetched``: the spool of a download started
    in the background earlier in the run (:func:`start_downloads`): joined (a failure reported as the
    downloader's), its file checked like a download; no spool there: downloaded here.
    """
    u, p = shlex.quote(url), shlex.quote(prefix)
    c = shlex.quote(cached) if cached else None
    fetch = download.fetch_command(url, '"$tmp/installer.sh"')
    if prefetched:
        fetch = (f'{prefetch.join_script(prefetched, chr(34) + "$tmp/installer.sh" + chr(34), url)}\n'
                 f'if [ ! -f "$tmp/installer.sh" ]; then {fetch}; fi')
    if c:
        fetch = (f'if [ -f {c} ] && [ "$(sha256sum {c} | cut -d" " -f1)" = {shlex.quote(sha256)} ]; then '
                 f'cp {c} "$tmp/installer.sh"; else {fetch}; fi')
    return "\n".join([
        "set -eu",
        'tmp=$(mktemp -d "${TMPDIR:-/tmp}/dlrig-miniforge.XXXXXX")',
        'trap \'rm -rf "$tmp"\' EXIT',
        f'parent=$(dirname {p})',
        'if [ ! -w "$parent" ]; then echo "dlrig: $parent is not writable by $(id -un): '
        'create it owned by $(id -un) or choose another conda_prefix" >&2; exit 1; fi',
        fetch,
        'got=$(sha256sum "$tmp/installer.sh" | cut -d" " -f1)',
        f'if [ "$got" != {shlex.quote(sha256)} ]; then '
        f'echo "dlrig: conda_installer_sha256 mismatch for {url}: expected {sha256}, got $got;'
        ' refusing to run it (nothing installed)" >&2; exit 1; fi',
        *([f'[ -f {c} ] || cp "$tmp/installer.sh" {c}'] if c else []),
        f'if ! bash "$tmp/installer.sh" -b -p {p}; then rm -rf {p}; '
        'echo "dlrig: the Miniforge installer failed; nothing left behind" >&2; exit 1; fi',
        f"printf 'url=%s\\nsha256=%s\\n' {u} {shlex.quote(sha256)} > {p}/{MARKER}",
    ])


def bashrc_block(prefix: str) -> str:
    p = shlex.quote(prefix)
    return "\n".join([
        f"if [ -f {p}/etc/profile.d/conda.sh ]; then",
        f"    . {p}/etc/profile.d/conda.sh",
        "fi",
        f"if [ -f {p}/etc/profile.d/mamba.sh ]; then",
        f"    . {p}/etc/profile.d/mamba.sh",
        "fi",
    ])


def version_mismatch(state: dict, url: str, sha256: str) -> str | None:
    """The report for an installed conda that is not the one the settings ask for, or None."""
    if not state["conda"]:
        return None
    marker = state["installer"] or {}
    if marker.get("sha256") == sha256:
        return None
    have = state["version"] or "unknown version"
    source = f"installed from {marker.get('url')}" if marker else "not installed by dlrig"
    return (f"conda {have} at its prefix ({source}) differs from conda_installer_url {url}: left alone, "
            "not replaced; to replace it, remove the prefix and apply again, or set "
            "conda_installer_url/conda_installer_sha256 to the installed one")


def _installer() -> tuple[str, str, str, str, str | None, dict | None]:
    """(user, prefix, url, sha256, cached copy in cache_dir or None, the host's lock entry)."""
    user = owner()
    prefix = pyenv.conda_prefix({"conda_prefix": setting("conda_prefix")}, user, owner_home(user))
    url, sha256 = setting("conda_installer_url"), setting("conda_installer_sha256")
    lock_entry = lockfile.for_host(setting("dlrig_lock_file"), host.name)
    locked = (lock_entry or {}).get("miniforge")
    if locked:  # apply --locked: the installer the lock names (its checksum decides, not the URL)
        url, sha256 = locked["url"], locked["sha256"]
    cache_dir = setting("cache_dir")
    cached = lockfile.installer_cache_file(cache_dir, url, sha256) if cache_dir else None
    return user, prefix, url, sha256, cached, lock_entry


def start_downloads():
    """Start downloading the installer in the background when this run installs Miniforge
    (run_roles calls it early: in base, before its apt transaction). Its checksum is checked by
    the install step, before anything runs it; a verified copy in cache_dir is not downloaded."""
    user, prefix, url, sha256, cached, _ = _installer()
    if fact(CondaInstall, prefix=prefix)["exists"]:
        return  # installed, or a prefix the role refuses: nothing to download
    server.shell(
        name="start downloading the Miniforge installer (role conda, in the background)",
        commands=[prefetch.start_command(url, spool(sha256), skip_if=cached)],
        **pyenv.as_user(user),
    )


@deploy("conda", data_defaults=DEFAULTS)
def conda():
    user, prefix, url, sha256, cached, lock_entry = _installer()
    home = owner_home(user)
    as_user = pyenv.as_user(user)
    cache_dir = setting("cache_dir")
    if cache_dir:
        for kind in ("miniforge", "conda"):
            files.directory(name=f"cache_dir for {kind}", path=lockfile.cache_path(cache_dir, kind), user=user)

    state = fact(CondaInstall, prefix=prefix)
    if state["exists"] and not state["conda"]:
        raise DeployError(f"{prefix} exists but holds no conda (an interrupted install?): remove it and apply again")

    if not state["conda"]:
        installed = fact(DebPackages) or {}
        if "curl" not in installed and "wget" not in installed and lock_entry is None:
            aptget.install("curl for the installer", ["curl", "ca-certificates"], what="curl for the installer")
        server.shell(
            name=f"install Miniforge into {prefix} (checksum-verified)",
            commands=[download.watched(install_command(url, sha256, prefix, cached, spool(sha256)),
                                       ['"${TMPDIR:-/tmp}"/dlrig-miniforge.*'],
                                       already=prefetch.spooled_bytes(spool(sha256)))],
            **as_user,
        )
    else:
        report = version_mismatch(state, url, sha256)
        if report:
            logger.warning(f"{host.name}: conda: {report.replace('its prefix', prefix)}")

    extra_cas = setting("extra_ca_certificates")
    files.template(
        name=".condarc (conda-forge only)",
        src=template("condarc.j2"),
        dest=f"{prefix}/.condarc",
        channels=list(setting("conda_channels")),
        ssl_verify=pyenv.SYSTEM_CA_BUNDLE if extra_cas else None,
        pkgs_dir=lockfile.cache_path(cache_dir, "conda") if cache_dir else None,
        mode="644",
        **owned_by(user),
    )
    bashrc = f"{home}/.bashrc"
    files.file(name="the user's ~/.bashrc exists", path=bashrc, **owned_by(user), present=True)
    files.block(
        name="conda in the user's bash (~/.bashrc)",
        path=bashrc,
        content=bashrc_block(prefix),
        marker="# {mark} dlrig conda initialize",
    )
