"""Measure the foundation's speed targets on this machine and print them as a table.

    sudo python3 benchmarks/hosts_and_replan.py [--hosts 2] [--repeats 3]

Targets (from the design notes): two test hosts up in < 5 s once the image is cached; a no-op
re-plan of role base on two hosts in < 5 s; a no-op apply in < 10 s. Measured, not asserted.
"""

from __future__ import annotations

import argparse
import glob
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dlrig.testing as testing


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def dlrig(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"dlrig {' '.join(args)} failed:\n{r.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    rows = []
    image_s = timed(testing.golden_image)
    image = testing.golden_image()
    rows.append(("golden image (cached after the first build)", image_s, 1))
    with tempfile.TemporaryDirectory(prefix="dlrig-bench-") as work:
        pool = testing.HostPool(Path(work), image)
        started: list = []
        rows.append((f"start {args.hosts} hosts", timed(lambda: started.extend(pool.start_many(args.hosts))), 1))
        inv = testing.write_inventory(started, Path(work) / "inv.py", data={
            "base_packages": ["jq"],
            "extra_ca_certificates": sorted(glob.glob("/usr/local/share/ca-certificates/*.crt")),
        })
        rows.append(("first apply, role base (jq only)", timed(lambda: dlrig("apply", str(inv), "--roles", "base", "--yes")), 1))
        replans = [timed(lambda: dlrig("plan", str(inv), "--roles", "base", "--json")) for _ in range(args.repeats)]
        rows.append(("no-op re-plan (median)", statistics.median(replans), args.repeats))
        noops = [timed(lambda: dlrig("apply", str(inv), "--roles", "base", "--yes")) for _ in range(args.repeats)]
        rows.append(("no-op apply (median)", statistics.median(noops), args.repeats))
        rows.append((f"stop {args.hosts} hosts", timed(pool.stop_all), 1))

    print(f"{'step':45} {'seconds':>8} {'runs':>5}")
    for name, seconds, runs in rows:
        print(f"{name:45} {seconds:8.2f} {runs:5d}")


if __name__ == "__main__":
    main()
