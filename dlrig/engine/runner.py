"""Run pyinfra (the one engine) on a deploy file and read its JSON plan and results."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from dlrig.engine.launch import python_module


@dataclass
class Change:
    host: str
    role: str
    operation: str
    conditional: bool = False

    def as_json(self) -> dict[str, str]:
        return {"host": self.host, "role": self.role, "operation": self.operation}


@dataclass
class HostSummary:
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    reachable: bool = True
    errors: list[str] = field(default_factory=list)  # pyinfra's lines about this host's failure

    @property
    def ok(self) -> bool:
        return self.reachable and self.failed == 0


@dataclass
class RunResult:
    returncode: int
    plan: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] | None = None
    stderr: str = ""
    interrupted: str | None = None  # "SIGINT"/"SIGTERM" when dlrig was stopped while pyinfra ran

    def changes(self, conditional: bool = False) -> list[Change]:
        """Operations that would change (or, with ``conditional``, might change) a host."""
        key = "hosts_with_conditional_change" if conditional else "hosts_with_change"
        out = []
        for op in self.plan:
            role, _, name = op["name"].partition(" | ")
            if not name:  # an operation outside any role's @deploy
                role, name = "", role
            for host in op.get(key, []):
                out.append(Change(host, role, name, conditional))
        return out

    def summary(self, hosts: list[str]) -> dict[str, HostSummary]:
        """Per host: operations that changed, did not change and failed.

        pyinfra's JSON results are used when it printed them; when every host failed it prints
        none ("No hosts remaining"), and its progress lines on stderr are read instead.
        """
        progress = parse_progress(self.stderr, hosts)
        if self.results is None:
            return progress
        out = {h: HostSummary(errors=progress[h].errors if h in progress else []) for h in hosts}
        results = self.results
        for op in results.get("operations", []):
            for h in op.get("success", []):
                out.setdefault(h, HostSummary()).changed += 1
            for h in op.get("no_change", []):
                out.setdefault(h, HostSummary()).unchanged += 1
            for h in op.get("error", []):
                out.setdefault(h, HostSummary()).failed += 1
        for h in results.get("failed_hosts", []):
            s = out.setdefault(h, HostSummary())
            if s.failed == 0:  # failed before any operation: connection or preparation
                s.reachable = False
        return out


_PROGRESS = re.compile(r"^\s*\[(?P<host>[^\]]+)\]\s+(?P<text>.*)$")


_PYINFRA_PREFIX = re.compile(r"^(?:--> )?pyinfra error(?: in \S+ line \d+)?: ")


def user_reason(line: str) -> str:
    """pyinfra's fatal line without its "pyinfra error in .../dlrig/x.py line N:" prefix: the reason."""
    return _PYINFRA_PREFIX.sub("", line.strip())


def parse_progress(stderr: str, hosts: list[str]) -> dict[str, HostSummary]:
    """Per-host outcomes from pyinfra's progress output (``[host] Success`` lines and the like)."""
    out = {h: HostSummary() for h in hosts}
    connected: set[str] = set()
    ready: set[str] = set()
    fatal = [user_reason(line) for line in stderr.splitlines() if line.startswith("--> pyinfra error")]
    for line in stderr.splitlines():
        m = _PROGRESS.match(line)
        if not m or m["host"] not in out:
            continue
        s, text = out[m["host"]], m["text"].strip()
        if text == "Connected":
            connected.add(m["host"])
        elif text.startswith("Ready:"):
            ready.add(m["host"])
        elif text == "Success":
            s.changed += 1
        elif text == "No changes":
            s.unchanged += 1
        elif text.startswith("Error"):
            s.failed += 1
            s.errors.append(text)
        elif not text.startswith(("Ready:", "Skipped", "Loaded fact")):
            s.errors.append(text)  # a command's output or a connection error: context for a failure
    for name, s in out.items():
        s.reachable = name in connected
        if s.reachable and name not in ready and fatal:
            # Stopped while pyinfra prepared the operations (a role's DeployError): nothing ran.
            s.failed += 1
            s.errors.extend(fatal)
        s.errors = s.errors[-12:] if s.failed or not s.reachable else []
    return out


def pyinfra_command(
    inventory: str,
    deploy_file: str,
    *,
    dry: bool,
    data: dict[str, Any] | None = None,
    verbose: int = 0,
    limit: list[str] | None = None,
) -> list[str]:
    """The pyinfra command line. ``data`` values go as JSON, which pyinfra's ``--data`` decodes
    (strings stay strings, lists stay lists, None stays None)."""
    # --dry without -y: pyinfra skips its change detection under -y, and --dry never prompts.
    cmd = python_module("pyinfra", inventory, deploy_file, "--json")
    cmd.append("--dry" if dry else "-y")
    for key, value in (data or {}).items():
        cmd += ["--data", f"{key}={json.dumps(value)}"]
    if verbose:
        cmd.append("-" + "v" * verbose)
    for name in limit or []:
        cmd += ["--limit", name]
    return cmd


def run_pyinfra(cmd: list[str], *, show_progress: bool | Callable[[str], None]) -> RunResult:
    """Run pyinfra; its progress (stderr) is kept and, with ``show_progress``, shown as it comes
    (a callable gets each line instead: a condensed view, a log file)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Its own session: a Ctrl-C reaches pyinfra once, forwarded by dlrig, which remembers it.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    stdout_chunks: list[str] = []
    reader = threading.Thread(target=lambda: stdout_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    stderr_lines = []
    with forward_interrupts(proc) as caught:
        for line in proc.stderr:
            stderr_lines.append(line)
            if callable(show_progress):
                show_progress(line)
            elif show_progress:
                sys.stderr.write(line)
                sys.stderr.flush()
        returncode = proc.wait()
    reader.join()
    stdout, stderr = "".join(stdout_chunks), "".join(stderr_lines)
    payload = _last_json_object(stdout)
    if payload is None:
        result = RunResult(returncode, stderr=stderr + stdout)
    else:
        result = RunResult(returncode, payload.get("plan") or [], payload.get("results"), stderr)
    result.interrupted = caught[0] if caught else None
    return result


# --- interruption: Ctrl-C / SIGTERM is never success ----------------------------------------

EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


class forward_interrupts:
    """While pyinfra runs: SIGINT/SIGTERM sent to dlrig are recorded (a list holding the first
    signal's name) and passed on to pyinfra, which then stops between or inside operations."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.caught, self.old = proc, [], {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if not self.caught:
            self.caught.append(name)
        try:
            self.proc.send_signal(signal.SIGINT)  # pyinfra's own clean stop, for either signal
        except ProcessLookupError:
            pass

    def __enter__(self) -> list[str]:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._handle)
        return self.caught

    def __exit__(self, *exc) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"^--> Starting (?:[\w ,]+ )?operation: (?P<names>.*?)(?: \(.*\))?$")


def interruption_report(stderr: str, roles: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Per host, after an interrupted run: ``not_run`` (roles that never started), ``stopped_in``
    (the operation under way, "role | operation"; its remote command may still be running, e.g.
    apt under sudo) and ``completed`` (operations that finished)."""
    out: dict[str, dict[str, Any]] = {}
    current: str | None = None
    started_roles: list[str] = []
    finished: dict[str, int] = {h: 0 for h in roles}
    last_done: dict[str, str | None] = {h: None for h in roles}
    for raw in stderr.splitlines():
        line = _ANSI.sub("", raw).strip()
        m = _STARTED.match(line)
        if m:
            current = m["names"].split(", ")[0]
            role = current.partition(" | ")[0] if " | " in current else ""
            if role and role not in started_roles:
                started_roles.append(role)
            continue
        p = _PROGRESS.match(line)
        if p and p["host"] in roles and current and p["text"].strip().startswith(("Success", "No changes", "Error")):
            finished[p["host"]] += 1
            last_done[p["host"]] = current
    for h, wanted in roles.items():
        stopped = current if current and last_done[h] != current else None
        out[h] = {
            "not_run": [r for r in wanted if r not in started_roles],
            "stopped_in": stopped,
            "completed": finished[h],
        }
    return out


def _last_json_object(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        return None


# --- per-host status: what a summary says about each host ---------------------------------

CONVERGED, CHANGES, UNREACHABLE, FAILED = "converged", "changes", "unreachable", "failed"


def host_status(result: RunResult, hosts: list[str], *, dry: bool) -> dict[str, tuple[str, list[str]]]:
    """Per host: (``converged`` | ``changes`` | ``unreachable`` | ``failed``, the lines that say why).

    A dry run counts planned changes, a real one changed operations; a host never reached is
    ``unreachable`` (with the connect error), never "0 changes"."""
    summary = result.summary(hosts)
    planned = {c.host for c in result.changes()} if dry else set()
    out = {}
    for name in hosts:
        s = summary.get(name, HostSummary())
        if not s.reachable:
            out[name] = (UNREACHABLE, connect_errors(s.errors) or s.errors[-3:])
        elif s.failed:
            out[name] = (FAILED, s.errors[-3:])
        elif (name in planned) if dry else s.changed:
            out[name] = (CHANGES, [])
        else:
            out[name] = (CONVERGED, [])
    return out


def connect_errors(lines: list[str]) -> list[str]:
    """pyinfra's lines about a failed connection (``Could not connect (...)`` and the like)."""
    return [line for line in lines if "connect" in line.lower() or "authentication" in line.lower()][-2:]
