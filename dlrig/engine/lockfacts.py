"""pyinfra facts for ``apply --locked`` (see :mod:`dlrig.engine.lockfile`): where each locked
version can come from on the host, so a role installs it from the cache or refuses, naming what
moved, before anything changes."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from dlrig.engine.lockfile import deb_file_glob


def where_script(archives: str, wanted: dict[str, str], tag: dict[str, str] | None = None) -> str:
    """Shell printing, per locked package not installed at its version, where that version is:
    ``TAG cached PKG VER FILE`` (a .deb in ``archives``), ``TAG repo PKG VER`` (in apt's lists) or
    ``TAG missing PKG VER AVAILABLE,...``. ``tag`` (default ``-``) is passed through per package.

    The one place that answers "where does a locked version come from": the :class:`LockedDebs`
    fact runs it while planning, :func:`dlrig.engine.aptget.locked_install_command` when installing
    (after this run's repository changes and ``apt-get update``).
    """
    tag = tag or {}
    lines = "\n".join(f"{tag.get(p, '-')} {p} {v} {deb_file_glob(p, v)}" for p, v in sorted(wanted.items()))
    a = shlex.quote(archives)
    return (
        # installed packages, held ones ("hi") included: the driver's packages are held
        "t=$(mktemp); dpkg-query -W -f='${db:Status-Abbrev}\\t${binary:Package}\\t${Version}\\n' "
        "| awk -F'\\t' 'substr($1, 2, 1) == \"i\" { print $2 \"\\t\" $3 }' > \"$t\"; "
        "while read -r tag pkg ver glob; do "
        'grep -qxF "$pkg	$ver" "$t" && continue; '
        f'f=$(ls -1 {a}/$glob 2>/dev/null | head -1); '
        'if [ -n "$f" ]; then echo "$tag cached $pkg $ver $f"; continue; fi; '
        "av=$(apt-cache madison \"$pkg\" 2>/dev/null | awk -F'|' '{gsub(/ /,\"\",$2); print $2}'); "
        'if printf "%s\\n" "$av" | grep -qxF "$ver"; then echo "$tag repo $pkg $ver"; continue; fi; '
        'echo "$tag missing $pkg $ver $(printf "%s" "$av" | head -3 | tr "\\n" ",")"; '
        f"done <<'DLRIG_LOCK'\n{lines}\nDLRIG_LOCK\nrm -f \"$t\""
    )


class LockedDebs(FactBase):
    """Locked apt packages that are not installed at their version: ``{"cached": {pkg: file},
    "repo": [pkg=ver], "missing": {pkg: "locked VER, available: A,B"}}``."""

    def command(self, archives: str, wanted: dict) -> str:
        return where_script(archives, wanted)

    @staticmethod
    def default():
        return {"cached": {}, "repo": [], "missing": {}}

    def process(self, output):
        out = self.default()
        for line in output:
            parts = line.split(" ", 4)
            if len(parts) < 4:
                continue
            kind, pkg, ver = parts[1], parts[2], parts[3]
            rest = parts[4] if len(parts) == 5 else ""
            if kind == "cached" and rest:
                out["cached"][pkg] = rest
            elif kind == "repo":
                out["repo"].append(f"{pkg}={ver}")
            elif kind == "missing":
                out["missing"][pkg] = f"locked {ver}, available: {rest.strip().strip(',') or 'none'}"
        return out


class MissingFiles(FactBase):
    """Which of ``names`` are not files in ``folder`` (e.g. locked wheels not in the wheelhouse)."""

    def command(self, folder: str, names: list) -> str:
        q = shlex.quote(folder)
        body = "\n".join(names)
        return (f"while read -r n; do [ -f {q}/\"$n\" ] || echo \"$n\"; done <<'DLRIG_LOCK'\n{body}\nDLRIG_LOCK")

    @staticmethod
    def default():
        return []

    def process(self, output):
        return [line.strip() for line in output if line.strip()]
