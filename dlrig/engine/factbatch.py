"""Fact reads in one SSH command: what ``@dlrig-ssh`` does while pyinfra prepares the operations.

While pyinfra prepares (``StateStage.Prepare``: the deploy file runs, no operation has been executed
on any host yet), every command it runs on a host is a fact read (its own facts, inside
``files.put``/``apt.packages``/..., and the roles' ones). A no-op of the light workstation reads ~37
facts, one SSH round trip each. The connector keeps, per host, the list of fact commands of the last
run (:func:`record_path`, on this machine) and, at the first fact read of the next run, runs all of
them in one SSH command (:func:`batch_script`); a read whose exact command (sudo, env and all) was in
the batch gets that answer, as it would have got it a moment later by itself. Only successful reads
(exit 0) are answered from the batch; any other is run by itself, so error paths are pyinfra's own.
Within one prepare, a command read twice is answered by the first read (nothing has changed yet).

Each command is run as it would be on its own (its full ``sh -c``/``sudo ... sh -c`` line, stdin
from /dev/null), its stdout captured exactly (base64) and split into lines as paramiko does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shlex
from pathlib import Path

MAX_COMMANDS = 400  # a record never grows past this (a safety bound, not a tuning knob)
TIMEOUT = 300  # seconds for the whole batch; past it, every read runs by itself


def record_dir() -> Path:
    """``$XDG_CACHE_HOME/dlrig/fact-batch`` (default ``~/.cache/dlrig/fact-batch``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dlrig" / "fact-batch"


def record_path(*identity: object) -> Path:
    """The record of one host, named by a hash of what identifies it (name, address, port, user)."""
    digest = hashlib.sha256("\0".join(map(str, identity)).encode()).hexdigest()[:32]
    return record_dir() / f"{digest}.json"


def load_record(path: Path) -> list[str]:
    try:
        commands = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        return []
    return commands[:MAX_COMMANDS]


KEEP_DAYS = 30  # records of hosts not seen for this long are removed (test hosts come and go)


def save_record(path: Path, commands: list[str]) -> None:
    """Write the record (mode 0600: fact commands name paths on the host); best effort. Records
    untouched for :data:`KEEP_DAYS` days go."""
    import time

    try:
        for old in path.parent.glob("*.json"):
            if old.stat().st_mtime < time.time() - KEEP_DAYS * 86400:
                old.unlink()
    except OSError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(list(dict.fromkeys(commands))[:MAX_COMMANDS], f)
        os.replace(tmp, path)
    except OSError:
        pass


# How pyinfra writes a read under ``_sudo`` (no other user, no password): ``sudo -H -n sh -c '...'``.
SUDO = "sudo -H -n "


def batch_script(commands: list[str], nonce: str | None = None) -> tuple[str, str]:
    """(the POSIX shell script that runs ``commands`` one after another, its marker).

    For command i the script prints one line ``MARKER i STATUS BASE64-OF-STDOUT``; stderr is dropped
    (pyinfra ignores a successful fact's stderr, and failed ones are run again by themselves).
    The reads pyinfra runs as ``sudo -H -n sh -c ...`` run in one ``sudo -H -n sh -c`` (each in its
    own ``sh -c`` under it: the same user, HOME and reset environment): one sudo for all, not one
    each (sudo, PAM and its logging cost far more than the read). Without passwordless sudo that
    part prints nothing and those reads run by themselves.
    """
    marker = nonce or "dlrig-batch-" + secrets.token_hex(8)
    as_root = [(i, c[len(SUDO):]) for i, c in enumerate(commands) if c.startswith(SUDO + "sh -c ")]
    rooted = {i for i, _ in as_root}
    plain = [(i, c) for i, c in enumerate(commands) if i not in rooted]
    script = _run_each(plain, marker)
    if as_root:
        script += f"{SUDO}sh -c {shlex.quote(_run_each(as_root, marker))} || true\n"
    return script, marker


def _run_each(numbered: list[tuple[int, str]], marker: str) -> str:
    lines = ['T=$(mktemp -d /tmp/dlrig-facts.XXXXXX) || exit 1', "trap 'rm -rf \"$T\"' EXIT"]
    for i, command in numbered:
        # The command on lines of its own: a trailing comment or heredoc in it cannot eat the rest.
        lines += ["(", command, ') </dev/null >"$T/o" 2>/dev/null',
                  f'printf "%s {i} %s " {marker} "$?"', 'base64 -w0 <"$T/o"', "echo"]
    return "\n".join(lines) + "\n"


def split_lines(data: bytes) -> list[str] | None:
    """Output bytes as the lines pyinfra gets from paramiko (split after each \\n, \\n stripped);
    None when it is not UTF-8 (then the read is not answered from the batch)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def parse_batch(stdout_lines: list[str], commands: list[str], marker: str) -> dict[str, list[str]]:
    """{command: its stdout lines} for each command of the batch that exited 0."""
    out: dict[str, list[str]] = {}
    for line in stdout_lines:
        parts = line.split(" ")
        if len(parts) not in (3, 4) or parts[0] != marker or not parts[1].isdigit():
            continue
        i, status = int(parts[1]), parts[2]
        if i >= len(commands) or status != "0":
            continue
        try:
            data = base64.b64decode(parts[3] if len(parts) == 4 else "", validate=True)
        except ValueError:
            continue
        lines = split_lines(data)
        if lines is not None:
            out[commands[i]] = lines
    return out
