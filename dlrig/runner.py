"""Run pyinfra (the one engine) on a deploy file and read its JSON plan and results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any


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

    @property
    def ok(self) -> bool:
        return self.reachable and self.failed == 0


@dataclass
class RunResult:
    returncode: int
    plan: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] | None = None
    stderr: str = ""

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
        """Per host: operations that changed, did not change and failed."""
        out = {h: HostSummary() for h in hosts}
        results = self.results or {}
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
        if self.results is None and self.returncode != 0:
            for s in out.values():
                s.reachable = False
        return out


def pyinfra_command(
    inventory: str,
    deploy_file: str,
    *,
    dry: bool,
    data: dict[str, str] | None = None,
    verbose: int = 0,
) -> list[str]:
    # --dry without -y: pyinfra skips its change detection under -y, and --dry never prompts.
    cmd = [sys.executable, "-m", "pyinfra", inventory, deploy_file, "--json"]
    cmd.append("--dry" if dry else "-y")
    for key, value in (data or {}).items():
        cmd += ["--data", f"{key}={value}"]
    if verbose:
        cmd.append("-" + "v" * verbose)
    return cmd


def run_pyinfra(cmd: list[str], *, show_progress: bool) -> RunResult:
    """Run pyinfra; its progress (stderr) goes to our stderr when ``show_progress``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=None if show_progress else subprocess.PIPE,
        text=True,
        env=env,
    )
    stderr = proc.stderr or ""
    payload = _last_json_object(proc.stdout)
    if payload is None:
        return RunResult(proc.returncode, stderr=stderr + proc.stdout)
    return RunResult(proc.returncode, payload.get("plan") or [], payload.get("results"), stderr)


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
