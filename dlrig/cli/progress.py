"""What a person sees during an hour-long apply: one line per role with a running count and the
elapsed time (pyinfra's raw output with -v), and the full log of every apply kept on disk."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import IO

import click

from dlrig.engine import download

_START = re.compile(r"^--> Starting operation: (?P<name>.*?)\s*$")
_HOST_LINE = re.compile(r"^\s*\[(?P<host>[^\]]+)\]\s+(?P<text>.*)$")
# What a role says to the owner (pyinfra's logger.warning/info): "HOST: ROLE: message".
_ROLE_NOTE = re.compile(r"^\s*(?P<host>\S+): (?P<role>[a-z_]+): (?P<text>.+)$")


def log_dir() -> Path:
    """``$XDG_STATE_HOME/dlrig/logs`` (default ``~/.local/state/dlrig/logs``)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "dlrig" / "logs"


def new_log(command: str) -> tuple[Path, IO[str]]:
    """A fresh log file for one run of ``command`` (``apply-20260101-120000.log``) and its handle."""
    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{command}-{stamp}.log"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{command}-{stamp}-{n}.log"
    # 0600: a log holds the settings passed on pyinfra's command line (a password hash, say).
    return path, os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8")


class RoleProgress:
    """Reads pyinfra's progress lines; prints ``[2/5] ssh (1:02 elapsed)`` when a role starts, what
    a role tells the owner (``HOST: ROLE: message``), the byte count of a large download
    (``HOST: cuda: 412.3 MB of 1.21 GB downloaded``, from :mod:`dlrig.engine.download`'s lines, at
    most one per host every ``BYTES_EVERY`` seconds, the last one, and none that did not change), and the lines that say
    something went wrong. Every line goes to ``log`` as it comes."""

    BYTES_EVERY = 10.0

    def __init__(self, roles: list[str], log: IO[str] | None = None, raw: bool = False,
                 quiet: bool = False) -> None:
        self.roles = roles
        self.quiet = quiet
        self.log = log
        self.raw = raw
        self.started = time.monotonic()
        self.seen: list[str] = []
        self._bytes_shown: dict[str, float] = {}  # host -> when its last byte count was printed
        self._bytes_pending: dict[str, tuple[int, str]] = {}  # host -> its latest count and line, not printed yet
        self._bytes_last: dict[str, int] = {}  # host -> the count printed last

    def _byte_count(self, host: str, text: str) -> bool:
        """A ``dlrig-bytes`` line: note it, print it if due. False for any other line."""
        got = download.parse(text)
        if got is None:
            return False
        label, n, total = got
        last = self._bytes_last.get(host, 0)
        if n == last:  # nothing new (the download is done, the packages are being installed)
            return True
        role = self.seen[-1] if self.seen else "download"
        of = f" of {download.human(total)}" if total else ""
        self._bytes_pending[host] = (n, f"  {host}: {role}: {download.human(n)}{of} {label} ({self.elapsed()} elapsed)")
        now = time.monotonic()
        if now - self._bytes_shown.get(host, float("-inf")) >= self.BYTES_EVERY or (total and n >= total > last):
            self._flush_bytes(host)
        return True

    def _flush_bytes(self, host: str | None = None) -> None:
        for h in [host] if host else list(self._bytes_pending):
            n, line = self._bytes_pending.pop(h, (0, ""))
            if line:
                self._bytes_shown[h], self._bytes_last[h] = time.monotonic(), n
                click.echo(line, err=True)

    def elapsed(self) -> str:
        m, s = divmod(int(time.monotonic() - self.started), 60)
        return f"{m}:{s:02d}"

    def __call__(self, line: str) -> None:
        if self.log is not None:
            self.log.write(line)
            self.log.flush()
        if self.quiet:
            return
        if self.raw:
            sys.stderr.write(line)
            sys.stderr.flush()
            return
        text = line.rstrip("\n")
        h = _HOST_LINE.match(text)
        if h and self._byte_count(h["host"], h["text"]):
            return
        self._flush_bytes()
        m = _START.match(text)
        if m:
            role = m["name"].partition(" | ")[0] if " | " in m["name"] else ""
            if role and role not in self.seen:
                self.seen.append(role)
                total = max(len(self.roles), len(self.seen))
                click.echo(f"[{len(self.seen)}/{total}] {role} ({self.elapsed()} elapsed)", err=True)
            return
        if text.startswith("--> Connecting to hosts"):
            click.echo("connecting...", err=True)
        elif text.startswith("--> Preparing operation"):
            click.echo(f"gathering facts ({self.elapsed()} elapsed)", err=True)
        elif text.startswith("--> pyinfra error"):
            click.echo(text.removeprefix("--> "), err=True)
        elif (note := _ROLE_NOTE.match(text)) and note["role"] in self.roles:
            click.echo(f"  {note['host']}: {note['role']}: {note['text']}", err=True)
        else:
            if h and (h["text"].startswith(("Error", "Could not connect")) or "rror:" in h["text"]):
                click.echo(f"  [{h['host']}] {h['text'].strip()}", err=True)
