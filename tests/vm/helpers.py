"""Shared helpers of the VM tier: the real CLI against VM inventories, timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from dlrig.testing import write_inventory

#: Step timings of this session, printed at its end (tests/vm/conftest.py).
TIMINGS: dict[str, float] = {}


#: Where each labelled step's output goes, every line stamped with the seconds since the step began
#: (``DLRIG_VM_STEP_LOG``; default: the pytest temp root's parent is not known here, so /tmp).
STEP_LOG = Path(os.environ.get("DLRIG_VM_STEP_LOG", "/tmp/dlrig-vm-steps.log"))


def dlrig(*args: str, timeout: int = 3000, label: str | None = None) -> subprocess.CompletedProcess:
    """``python -m dlrig.cli ARGS`` (this checkout's dlrig); ``label`` records its wall time, and its
    stdout/stderr lines go to :data:`STEP_LOG` as they come, each stamped ``[+SECONDS]`` (where the
    time of a long step goes: pyinfra's ``--> Starting operation`` lines)."""
    argv = [sys.executable, "-m", "dlrig.cli", *args]
    t0 = time.monotonic()
    if not label:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    got: dict[str, list[str]] = {"out": [], "err": []}
    with open(STEP_LOG, "a") as log:
        log.write(f"=== {time.strftime('%H:%M:%S')} {label}: {' '.join(args)}\n")
        log.flush()
        lock = threading.Lock()

        def pump(stream, key):
            for line in stream:
                got[key].append(line)
                with lock:
                    log.write(f"[+{time.monotonic() - t0:7.1f}] {key}: {line}")
                    log.flush()

        threads = [threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True)]
        for t in threads:
            t.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            TIMINGS[label + " (TIMED OUT)"] = time.monotonic() - t0
            log.write(f"=== {label}: killed after {timeout} s\n")
            raise
        finally:
            for t in threads:
                t.join(timeout=30)
        TIMINGS[label] = time.monotonic() - t0
        log.write(f"=== {label}: exit {rc} after {TIMINGS[label]:.1f} s\n")
    return subprocess.CompletedProcess(argv, rc, "".join(got["out"]), "".join(got["err"]))


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
