"""Capture a real Debian test host's fact outputs into tests/plans/facts/debian-<N>.json.

Starts one Debian 12 (or 13: ``--suite trixie``) test host (dlrig.testing: a debootstrap root over
real SSH on 127.0.0.0/8),
runs the commands behind the facts the plan tier reads (pyinfra's own fact commands, so the keys
match what the plan harness looks up) and writes their raw output. What no test host can have is
kept as a named FAKE: the NVIDIA card in ``lspci`` and the kernel (the host shares this machine's
kernel; a Debian kernel name is needed for the headers package).

    sudo python3 tools/capture_facts.py            # needs what the host tests need (root, debootstrap)
    sudo python3 tools/capture_facts.py --suite trixie    # tests/plans/facts/debian-13.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACTS = ROOT / "tests" / "plans" / "facts"

LSPCI = ["0a:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [GeForce RTX 2070 SUPER] "
         "[10de:1e84] (rev a1)"]
# A Debian kernel name per suite: the kernel linux-image-amd64 depends on in that suite (bookworm's
# as recorded first; trixie's from `apt-cache depends linux-image-amd64` on the captured host).
KERNELS = {"bookworm": "6.1.0-27-amd64", "trixie": "6.12.118+deb13-amd64"}


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


def capture(run, suite: str = "bookworm") -> dict:
    from dlrig.testing.image import SUITES

    facts: dict = {
        "_source": (f"captured {datetime.date.today().isoformat()} by tools/capture_facts.py from a real "
                    f"{SUITES[suite]} ({suite}) test host (dlrig.testing golden image); FAKE: lspci (an RTX "
                    "2070 Super) and uname -r (a Debian kernel name: the test host shares the build "
                    "machine's kernel)"),
    }
    for key, cmd in commands().items():
        facts[key] = run(cmd).splitlines()
    facts.update({"lspci": LSPCI, "uname -r": [KERNELS[suite]]})
    return facts


def main(argv: list[str] | None = None) -> None:
    from dlrig.testing.image import SUITES, golden_image
    from dlrig.testing.pool import test_hosts

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=sorted(SUITES), default="bookworm")
    args = ap.parse_args(argv)
    out = FACTS / f"{SUITES[args.suite]}.json"
    with tempfile.TemporaryDirectory(prefix="dlrig-capture-") as tmp, \
            test_hosts(1, Path(tmp), image=golden_image(suite=args.suite)) as (host,):
        facts = capture(lambda cmd: host.ssh(cmd).stdout, args.suite)
    out.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"{out}: {len(facts) - 1} facts")


if __name__ == "__main__":
    sys.exit(main())
