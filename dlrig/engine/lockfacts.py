"""pyinfra facts for ``apply --locked`` (see :mod:`dlrig.engine.lockfile`): where each locked
version can come from on the host, so a role installs it from the cache or refuses, naming what
moved, before anything changes."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from dlrig.engine.lockfile import deb_file_glob


class LockedDebs(FactBase):
    """Locked apt packages that are not installed at their version: ``{"cached": {pkg: file},
    "repo": [pkg=ver], "missing": {pkg: "locked VER, available: A,B"}}``."""

    def command(self, archives: str, wanted: dict) -> str:
        lines = "\n".join(f"{p} {v} {deb_file_glob(p, v)}" for p, v in sorted(wanted.items()))
        a = shlex.quote(archives)
        return (
            "t=$(mktemp); dpkg-query -W -f='${db:Status-Abbrev}\\t${binary:Package}\\t${Version}\\n' > \"$t\"; "
            "while read -r pkg ver glob; do "
            'grep -qxF "ii 	$pkg	$ver" "$t" && continue; '
            f'f=$(ls -1 {a}/$glob 2>/dev/null | head -1); '
            'if [ -n "$f" ]; then echo "cached $pkg $ver $f"; continue; fi; '
            "av=$(apt-cache madison \"$pkg\" 2>/dev/null | awk -F'|' '{gsub(/ /,\"\",$2); print $2}'); "
            'if printf "%s\\n" "$av" | grep -qxF "$ver"; then echo "repo $pkg $ver"; continue; fi; '
            'echo "missing $pkg $ver $(printf "%s" "$av" | head -3 | tr "\\n" ",")"; '
            f"done <<'DLRIG_LOCK'\n{lines}\nDLRIG_LOCK\nrm -f \"$t\""
        )

    @staticmethod
    def default():
        return {"cached": {}, "repo": [], "missing": {}}

    def process(self, output):
        out = self.default()
        for line in output:
            parts = line.split(" ", 3)
            if parts[0] == "cached" and len(parts) == 4:
                out["cached"][parts[1]] = parts[3]
            elif parts[0] == "repo" and len(parts) >= 3:
                out["repo"].append(f"{parts[1]}={parts[2]}")
            elif parts[0] == "missing" and len(parts) >= 3:
                avail = (parts[3] if len(parts) == 4 else "").strip(",") or "none"
                out["missing"][parts[1]] = f"locked {parts[2]}, available: {avail}"
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
