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


#: apt hooks a temporary ``apt-get update`` must not run: they act on the host's real state (Debian's
#: ``15update-stamp`` touches /var/lib/apt/periodic, docker-clean empties the real archives, ...)
_NO_HOOKS = "".join(f"#clear APT::Update::{h};\n" for h in ("Pre-Invoke", "Post-Invoke", "Post-Invoke-Success"))


def added_sources_script(wanted: dict[str, str], sources: list[dict[str, str]]) -> str:
    """Shell reading the apt sources this run will add into a TEMPORARY apt state and printing,
    per package of ``wanted``, the versions they offer: ``have PKG V1,V2,``; ``error NAME: WHY``
    when a source (or its key) cannot be read. Nothing of the host's apt state changes: the lists,
    sources, package caches and hook scripts are the temporary folder's, removed on exit.

    ``sources``: ``{"name", "text", "keyring", "key_url", "key_sha256"}`` per source, ``text`` the
    list exactly as its role writes it; where it names ``keyring`` (the key file the role installs),
    the temporary state uses that key fetched as the role fetches it (``apt-helper download-file``,
    checked against ``key_sha256`` when set), so the signatures are verified with the same key.
    """
    q = shlex.quote
    lines = ["d=$(mktemp -d) || exit 1", "trap 'rm -rf \"$d\"' EXIT", 'chmod 755 "$d"',
             'mkdir -p "$d/lists/partial" "$d/parts" "$d/cache/archives/partial"', ': > "$d/sources.list"',
             f'printf %s {q(_NO_HOOKS)} > "$d/apt.conf"']
    for i, src in enumerate(sources):
        name, text, keyring = src["name"], src["text"], src.get("keyring") or ""
        if keyring and keyring in text:
            key_url, sha = src["key_url"], (src.get("key_sha256") or "").lower()
            check = f" SHA256:{sha}" if sha else ""
            why = q(f"error {name}: its key {key_url} could not be fetched:")
            lines.append(
                f'/usr/lib/apt/apt-helper download-file {q(key_url)} "$d/key{i}"{check} > "$d/out" 2>&1 '
                f'|| {{ echo {why} '
                '"$(grep -m1 \'^E: Failed to fetch\' "$d/out" || tail -1 "$d/out")"; exit 0; }')
            lines.append(f'chmod 644 "$d/key{i}"')
            body = f'"$d/key{i}"'.join(q(part) for part in text.split(keyring))
        else:
            body = q(text)
        lines.append(f"printf '%s\\n' {body} >> \"$d/sources.list\"")
    o = ('-o Dir::State::Lists="$d/lists" -o Dir::Etc::SourceList="$d/sources.list" '
         '-o Dir::Etc::SourceParts="$d/parts" -o Dir::Cache="$d/cache" -o Dir::Cache::Archives="$d/cache/archives/" '
         '-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=')
    names = ", ".join(s["name"] for s in sources)
    lines += [
        f'apt-get -q -c "$d/apt.conf" {o} update > "$d/out" 2>&1; rc=$?',
        "bad=$(grep -E '^(Err:|E:|W: (Failed to fetch|GPG error|The repository))' \"$d/out\" | head -3 | tr '\\n' ' ')",
        f'if [ "$rc" -ne 0 ] || [ -n "$bad" ]; then echo {q(f"error {names}: apt-get update could not read it:")} '
        '"${bad:-exit $rc}"; exit 0; fi',
        f"while read -r pkg; do echo \"have $pkg $(apt-cache {o} madison \"$pkg\" 2>/dev/null "
        "| awk -F'|' '{gsub(/ /,\"\",$2); print $2}' | tr '\\n' ',')\"; "
        f"done <<'DLRIG_LOCK'\n" + "\n".join(sorted(wanted)) + "\nDLRIG_LOCK",
    ]
    return "\n".join(lines)


class AddedSourceDebs(FactBase):
    """What the apt sources this run will add offer, read before any change (see
    :func:`added_sources_script`): ``{"versions": {pkg: [ver, ...]}, "errors": [why, ...]}``."""

    def command(self, wanted: dict, sources: list) -> str:
        return added_sources_script(wanted, sources)

    @staticmethod
    def default():
        return {"versions": {}, "errors": []}

    def process(self, output):
        out = self.default()
        for line in output:
            kind, _, rest = line.partition(" ")
            if kind == "error":
                out["errors"].append(rest.strip())
            elif kind == "have":
                pkg, _, versions = rest.partition(" ")
                out["versions"][pkg] = [v for v in versions.strip().split(",") if v]
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
