"""Byte counts for the large downloads (driver, CUDA, torch wheels, the Miniforge installer).

A download's command is wrapped (:func:`watched`): it runs in the background while the host polls
how many bytes the folders it downloads into grew by, every few seconds, and prints
``dlrig-bytes LABEL BYTES TOTAL`` lines (TOTAL 0 when unknown). The wrapped command is a
:class:`WatchedCommand`, whose output pyinfra prints as it comes even without ``-v``, so
``dlrig.cli.progress`` turns those lines into "ROLE: 412.3 MB of 1.2 GB downloaded" on the
owner's terminal. The command's exit status is the wrapped command's.
"""

from __future__ import annotations

import re
import shlex

from pyinfra.api.command import StringCommand

MARK = "dlrig-bytes"
#: ``dlrig-bytes LABEL BYTES TOTAL`` as the host prints it (LABEL: one word, e.g. ``downloaded``).
LINE = re.compile(rf"{MARK} (?P<label>[a-z-]+) (?P<bytes>\d+) (?P<total>\d+)\s*$")
EVERY = 3  # seconds between two counts


class WatchedCommand(StringCommand):
    """A command whose output is printed while it runs (``print_output``), with or without -v.
    ``watched``: the command it watches, as the role wrote it (what a plan's reader looks for)."""

    def __init__(self, script: str, watched: str) -> None:
        super().__init__(script)
        self.watched = watched

    def execute(self, state, host, connector_arguments):
        connector_arguments.update(self.connector_arguments)
        return host.run_shell_command(self, print_output=True, print_input=state.print_input,
                                      **connector_arguments)


def fetch_command(url: str, out: str, *, replace_shell: bool = False) -> str:
    """Shell lines downloading ``url`` to ``out`` (a shell word) on the host with curl, else wget,
    else python3 (a minimal Debian has python3 before the base role installs curl); the
    downloader's message on stderr, its exit status the command's. ``replace_shell``: the
    downloader replaces the shell (``exec``), so the shell's pid is the download's."""
    u, x = shlex.quote(url), "exec " if replace_shell else ""
    py = shlex.quote(
        "import shutil, sys, urllib.request\n"
        "try:\n"
        "    with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], 'wb') as f:\n"
        "        shutil.copyfileobj(r, f, 1 << 20)\n"
        "except Exception as e:\n"
        "    sys.exit(f'dlrig: downloading {sys.argv[1]} failed: {e}')\n"
    )
    return ("if command -v curl >/dev/null; then "
            f"{x}curl -fsSL --retry 3 -o {out} {u}; "
            f"elif command -v wget >/dev/null; then {x}wget -q -O {out} {u}; "
            f"else {x}python3 -c {py} {u} {out}; fi")


def watched(command: str, paths: list[str], label: str = "downloaded", total: str | None = None,
            setup: str | None = None, every: int = EVERY, already: str | None = None) -> WatchedCommand:
    """``command`` run in the background while the growth of ``paths`` (shell words: ``$VAR`` and
    globs expand on the host) is printed every ``every`` seconds, and once at the end.

    ``total``: a shell command printing the expected number of bytes (apt's ``--print-uris``), or
    None. ``setup``: shell lines run first (e.g. setting a variable ``paths`` name). The growth is
    apparent sizes (``du -sb``) against a baseline taken before the command.

    ``already``: a shell command printing bytes already in ``paths`` that count as this command's
    (a download started earlier in the background, :mod:`dlrig.engine.prefetch`): they are left
    out of the baseline and shown at once."""
    where = " ".join(paths)
    script = "\n".join([
        *([setup] if setup else []),
        f"__dl_size() {{ du -sbc -- {where} 2>/dev/null | tail -n 1 | cut -f 1; }}",
        "__dl_base=$(__dl_size); __dl_base=${__dl_base:-0}",
        *([f"__dl_had=$( {{ {already}; }} 2>/dev/null); __dl_base=$(( __dl_base - ${{__dl_had:-0}} ))"]
          if already else []),
        f"__dl_total=$( {{ {total}; }} 2>/dev/null)" if total else "__dl_total=0",
        "__dl_total=${__dl_total:-0}; __dl_max=0",
        "__dl_show() { __dl_now=$(__dl_size); __dl_n=$(( ${__dl_now:-0} - __dl_base )); "
        "[ \"$__dl_n\" -gt \"$__dl_max\" ] && __dl_max=$__dl_n; "
        f"[ \"$__dl_max\" -gt 0 ] && echo \"{MARK} {label} $__dl_max $__dl_total\"; return 0; }}",
        *(["__dl_show"] if already else []),
        f"( {command}\n) &",
        "__dl_pid=$!; __dl_tick=0",
        "while kill -0 \"$__dl_pid\" 2>/dev/null; do sleep 1; __dl_tick=$(( __dl_tick + 1 )); "
        f"if [ \"$__dl_tick\" -ge {int(every)} ]; then __dl_tick=0; __dl_show; fi; done",
        "wait \"$__dl_pid\"; __dl_rc=$?",
        "__dl_show",
        "exit \"$__dl_rc\"",
    ])
    return WatchedCommand(script, command)


#: where pip and uv put what they download (as the user they run as): pip keeps the wheel files,
#: uv unpacks wheels into its cache as they arrive, so under uv the count is unpacked bytes.
PIP_CACHES = ['"${XDG_CACHE_HOME:-$HOME/.cache}/uv"', '"${XDG_CACHE_HOME:-$HOME/.cache}/pip"',
              '"${TMPDIR:-/tmp}"/pip-*']


def watched_pip(command: str) -> WatchedCommand:
    """A pip or uv install with a count of the bytes written to their caches."""
    return watched(command, PIP_CACHES, label="written")


def parse(text: str) -> tuple[str, int, int] | None:
    """(label, bytes, total) from a ``dlrig-bytes`` line, else None."""
    m = LINE.search(text)
    return (m["label"], int(m["bytes"]), int(m["total"])) if m else None


def human(n: int) -> str:
    """Bytes as a person reads them: ``412.3 MB``, ``1.21 GB`` (powers of 1000, as apt prints)."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.2f} {unit}" if unit == "GB" else f"{n / size:.1f} {unit}"
    return f"{n} B"
