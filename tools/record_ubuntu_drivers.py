"""Record Ubuntu's NVIDIA driver binary package names per branch and release (data, not code).

Reads the packaging branches ``<branch>[-server]-<series>`` of a local git mirror of
``canonical/nvidia-graphics-drivers`` (one branch per source package and Ubuntu series) and writes,
per branch, the ``Package:`` names of its ``debian/control`` with the branch's commit and changelog
version: tools/sources/ubuntu/nvidia-graphics-drivers.tsv. Nothing here runs on Ubuntu; the file is
the recorded fact the package table (tools/gen_ubuntu_packages.py) and the plan tests read.

    python3 tools/record_ubuntu_drivers.py /path/to/canonical+nvidia-graphics-drivers/repo
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "sources" / "ubuntu" / "nvidia-graphics-drivers.tsv"
SERIES = {"jammy": "ubuntu-22.04", "noble": "ubuntu-24.04"}
BRANCH = re.compile(r"^(\d{3})(-server)?-(jammy|noble)$")


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def main(repo: str) -> None:
    rows = []
    for ref in sorted(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()):
        m = BRANCH.match(ref)
        if not m:
            continue
        commit, date = git(repo, "log", "-1", "--format=%H %ad", "--date=short", ref).split()
        changelog = git(repo, "show", f"{ref}:debian/changelog").splitlines()[0]
        version = re.search(r"\(([^)]+)\)", changelog).group(1)
        control = git(repo, "show", f"{ref}:debian/control")
        names = re.findall(r"^Package:\s*(\S+)", control, re.M)
        rows.append("\t".join([SERIES[m.group(3)], ref, version, commit, date, " ".join(names)]))
    header = ("# Ubuntu NVIDIA driver binary packages per packaging branch, recorded from "
              "github.com/canonical/nvidia-graphics-drivers (debian/control, debian/changelog of each branch).\n"
              "# release\tbranch\tversion\tcommit\tdate\tpackages\n")
    OUT.write_text(header + "\n".join(rows) + "\n")
    print(f"{OUT}: {len(rows)} branches")


if __name__ == "__main__":
    main(sys.argv[1])
