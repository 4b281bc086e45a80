"""Capture a real Debian 12 test host's fact outputs into tests/plans/facts/debian-12.json.

Starts one Debian 12 test host (dlrig.testing: a debootstrap root over real SSH on 127.0.0.0/8),
runs the commands behind the facts the plan tier reads (pyinfra's own fact commands, so the keys
match what the plan harness looks up) and writes their raw output. What no test host can have is
kept as a named FAKE: the NVIDIA card in ``lspci`` and the kernel (the host shares this machine's
kernel; a Debian kernel name is needed for the headers package).

    sudo python3 tools/capture_facts.py            # needs what the host tests need (root, debootstrap)
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "plans" / "facts" / "debian-12.json"

FAKE = {
    "lspci": ["0a:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [GeForce RTX 2070 SUPER] "
              "[10de:1e84] (rev a1)"],
    "uname -r": ["6.1.0-27-amd64"],
}


def commands() -> dict[str, str]:
    """fact key (a substring of the command pyinfra runs) -> the command to run on the host."""
    from pyinfra.facts.apt import AptSources
    from pyinfra.facts.server import LinuxDistribution

    return {
        "for file in $(ls -pdL *-release": LinuxDistribution().command(),
        "uname -m": "uname -m",
        "##PYINFRA_FILE": AptSources().command(),
        "dpkg -l": "dpkg -l",
        "dpkg --audit": "dpkg --audit 2>&1 || true",
    }


def capture(run) -> dict:
    facts: dict = {
        "_source": (f"captured {datetime.date.today().isoformat()} by tools/capture_facts.py from a real Debian 12 "
                    "test host (dlrig.testing golden image); FAKE: lspci (an RTX 2070 Super) and uname -r "
                    "(a Debian kernel name: the test host shares the build machine's kernel)"),
    }
    for key, cmd in commands().items():
        facts[key] = run(cmd).splitlines()
    facts.update(FAKE)
    return facts


def main() -> None:
    from dlrig.testing.pool import test_hosts

    with tempfile.TemporaryDirectory(prefix="dlrig-capture-") as tmp, test_hosts(1, Path(tmp)) as (host,):
        facts = capture(lambda cmd: host.ssh(cmd).stdout)
    OUT.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"{OUT}: {len(facts) - 1} facts")


if __name__ == "__main__":
    sys.exit(main())
