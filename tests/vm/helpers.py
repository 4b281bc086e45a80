"""Shared helpers of the VM tier: the real CLI against VM inventories, timed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from dlrig.testing import write_inventory

#: Step timings of this session, printed at its end (tests/vm/conftest.py).
TIMINGS: dict[str, float] = {}


def dlrig(*args: str, timeout: int = 3000, label: str | None = None) -> subprocess.CompletedProcess:
    """``python -m dlrig.cli ARGS`` (this checkout's dlrig); ``label`` records its wall time."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", *args], capture_output=True, text=True,
                       timeout=timeout)
    if label:
        TIMINGS[label] = time.monotonic() - t0
    return r


def out(r: subprocess.CompletedProcess) -> str:
    return (r.stdout[-4000:] + "\n--- stderr ---\n" + r.stderr[-4000:])


def inventory(v, path: Path, **data) -> Path:
    return write_inventory([v], path, data=data)


def apply(inv: Path, roles: str, label: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    r = dlrig("apply", str(inv), "--roles", roles, "--yes", *extra, label=label)
    assert r.returncode == 0, out(r)
    return r


def plan_changes(inv: Path, roles: str, label: str | None = None) -> list[dict]:
    r = dlrig("plan", str(inv), "--roles", roles, "--json", label=label)
    assert r.returncode == 0, out(r)
    return json.loads(r.stdout)["changes"]
