"""Downloads that start early, in the background on the host, and are joined by the step that needs them.

A role with a large download that depends on nothing the earlier roles do (the Miniforge installer:
a URL and a checksum) defines ``start_downloads()``. ``run_roles`` collects those of the selected roles
(:func:`pending`) and :func:`start` emits them where a download may start: in role ``base``, after
the trust store is updated (``extra_ca_certificates`` may be needed to reach the URL) and before
its apt transaction (``apt-get update`` and the install: the longest steps before conda). Without
``base`` in the run nothing starts early: the later role comes first and downloads itself.

On the host (:func:`start_command`, run as the user who later consumes the file) a watchdog
process starts the download into a private spool folder (``mkdir -m 700``, owned by that user)
and returns at once. The watchdog is tied to this run's SSH connection (the nearest ``sshd``
ancestor of the command): when the connection ends (the run finished, failed or was interrupted
with Ctrl-C) it kills the download and removes the spool, so no process and no partial file is
left behind. Without an SSH connection to tie it to (e.g. ``@local``) nothing starts and the
consuming step downloads in the foreground, as without prefetching.

The consuming step (:func:`join_script`) waits for the download, reports a failure with the
downloader's own message and exit status (never swallowed), and moves the file where it would
have downloaded it; the step's own checks (the installer's checksum) then run as before. No spool
(nothing was started, or the run has no SSH connection): the step downloads itself.
"""

from __future__ import annotations

import shlex
from typing import Callable

from dlrig.engine.download import fetch_command

_PENDING = "_dlrig_prefetch_pending"  # host attribute: prefetch functions not yet started this run

#: the spool folder, a shell word (TMPDIR expands on the host)
SPOOL = '"${{TMPDIR:-/tmp}}"/dlrig-{name}.prefetch-{key}'

#: seconds the start waits for the watchdog to be up (it writes its pid first thing)
START_WAIT = 10


def spool(name: str, key: str) -> str:
    """The spool folder of download ``name`` (e.g. ``miniforge``), ``key`` (e.g. a checksum prefix)."""
    if not (name.replace("-", "").isalnum() and key.isalnum()):
        raise ValueError(f"prefetch spool name/key must be plain words: {name!r} {key!r}")
    return SPOOL.format(name=name, key=key)


# --- where in the run --------------------------------------------------------------------------

def pending(host, functions: list[Callable[[], None]]) -> None:
    """This run's prefetch functions for ``host`` (run_roles: those of the selected roles)."""
    setattr(host, _PENDING, list(functions))


def start(host) -> None:
    """Emit the pending prefetches of ``host`` (once per run; later calls do nothing)."""
    functions = getattr(host, _PENDING, None) or []
    setattr(host, _PENDING, [])
    for function in functions:
        function()


# --- on the host -------------------------------------------------------------------------------

#: the partial download, as the fetch command (``sh -c "$FETCH" dlrig-fetch SPOOL``) names it;
#: the downloader replaces that shell, so the watchdog's job is the download itself
PART = '"$1/file.part"'

#: the watchdog, run detached (setsid): $1 spool, $2 the sshd process of the connection; $FETCH
#: the download command.
_WATCHDOG = r"""
d=$1; conn=$2
echo $$ > "$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid"
sh -c "$FETCH" dlrig-fetch "$d" 2> "$d/log" &
job=$!
trap 'kill "$job" 2>/dev/null; rm -rf "$d"; exit 143' TERM INT HUP
while kill -0 "$job" 2>/dev/null; do
  if [ ! -d "/proc/$conn" ]; then kill "$job" 2>/dev/null; wait "$job"; rm -rf "$d"; exit 0; fi
  sleep 1
done
wait "$job"; rc=$?
if [ "$rc" = 0 ]; then mv "$d/file.part" "$d/file"; fi
echo "$rc" > "$d/rc.tmp" && mv "$d/rc.tmp" "$d/rc"
while [ -d "$d" ] && [ -d "/proc/$conn" ]; do sleep 1; done
rm -rf "$d"
"""

#: the nearest sshd (or OpenSSH 9.8's sshd-session) ancestor of this shell: this run's connection
_CONNECTION = (
    'conn=; p=$$; while [ "${p:-0}" -gt 1 ]; do '
    'case "$(cat /proc/$p/comm 2>/dev/null)" in sshd|sshd-session) conn=$p; break;; esac; '
    "p=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -d' ' -f2); done"
)


def start_command(url: str, spool_dir: str, skip_if: str | None = None) -> str:
    """Start downloading ``url`` into ``spool_dir``/file in the background; returns at once.

    ``skip_if``: a file that makes the download unnecessary when it exists (a cached copy). The
    start never fails the run: whatever stops it (no SSH connection, a spool that is not ours)
    leaves the download to the consuming step, in the foreground."""
    lines = [
        f"d={spool_dir}",
        *([f"if [ -e {shlex.quote(skip_if)} ]; then exit 0; fi"] if skip_if else []),
        _CONNECTION,
        'if [ -z "$conn" ]; then echo "dlrig: no SSH connection to tie a background download to: '
        'it happens later, in the foreground"; exit 0; fi',
        # a spool of an earlier run of ours (its watchdog is gone with that run's connection): clear it
        'if [ -e "$d" ] || [ -L "$d" ]; then '
        'if [ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ]; then '
        '[ -f "$d/pid" ] && kill "$(cat "$d/pid")" 2>/dev/null; rm -rf "$d"; '
        'else echo "dlrig: $d is not ours: downloading later, in the foreground"; exit 0; fi; fi',
        'mkdir -m 700 "$d" || exit 0',
        f"FETCH={shlex.quote(fetch_command(url, PART, replace_shell=True))}; export FETCH",
        f'setsid sh -c {shlex.quote(_WATCHDOG)} dlrig-prefetch "$d" "$conn" </dev/null >/dev/null 2>&1 &',
        f"i=0; while [ ! -f \"$d/pid\" ] && [ $i -lt {START_WAIT * 10} ]; do sleep 0.1; i=$((i + 1)); done",
        f'echo {shlex.quote(f"dlrig: downloading {url} in the background")} "(watchdog $(cat "$d/pid" 2>/dev/null))"',
    ]
    return "\n".join(lines)


def join_script(spool_dir: str, dest: str, what: str) -> str:
    """Shell lines for the consuming step: wait for the background download in ``spool_dir``;
    on success move it to ``dest`` (a shell word); on failure print the downloader's message and
    exit with its status. Nothing started (no spool of ours): nothing happens here, ``dest`` is
    not created and the step downloads itself."""
    return "\n".join([
        f"__pf={spool_dir}",
        'if [ -d "$__pf" ] && [ ! -L "$__pf" ] && [ -O "$__pf" ] && [ -f "$__pf/pid" ]; then',
        '  __pf_w=$(cat "$__pf/pid")',
        '  while [ ! -f "$__pf/rc" ] && [ -d "/proc/$__pf_w" ]; do sleep 0.2; done',
        '  if [ -f "$__pf/rc" ]; then',
        '    __pf_rc=$(cat "$__pf/rc")',
        '    if [ "$__pf_rc" != 0 ]; then',
        '      cat "$__pf/log" >&2 2>/dev/null',
        f'      echo {shlex.quote(f"dlrig: downloading {what} (started in the background) failed")}'
        ' "(exit $__pf_rc)" >&2',
        '      kill "$__pf_w" 2>/dev/null || :; rm -rf "$__pf"; exit "$__pf_rc"',
        "    fi",
        f'    mv "$__pf/file" {dest}',
        "  fi",
        '  kill "$__pf_w" 2>/dev/null || :; rm -rf "$__pf"',
        "fi",
    ])


def spooled_bytes(spool_dir: str) -> str:
    """A shell command printing how many bytes of the download are in ``spool_dir`` so far (for the
    byte count of the consuming step: they were downloaded for it)."""
    return (f'__pf_n=0; for __pf_f in {spool_dir}/file {spool_dir}/file.part; do '
            '[ -f "$__pf_f" ] && __pf_n=$(( __pf_n + $(stat -c %s "$__pf_f") )); done; echo "$__pf_n"')
