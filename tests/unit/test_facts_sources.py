"""Every canned facts file states its source and carries its release's real versions, read from the
recorded outside sources (tools/sources/ubuntu/runner-images-*.md), never from our code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FACTS = ROOT / "tests" / "plans" / "facts"
SOURCES = ROOT / "tools" / "sources" / "ubuntu"


def _recorded(release: str) -> dict[str, str]:
    """name -> version from the recorded runner-images inventory, plus 'OS Version' and 'Python'."""
    text = (SOURCES / f"runner-images-{release}.md").read_text()
    out = {m.group(1): m.group(2) for m in re.finditer(r"^\|\s*(\S+)\s*\|\s*(\S+)\s*\|", text, re.M)}
    out["OS Version"] = re.search(r"OS Version: (.+)", text).group(1).strip()
    out["Python"] = re.search(r"^- Python (\S+)", text, re.M).group(1)
    return out


def _dpkg(facts: dict) -> dict[str, str]:
    return {f[1]: f[2] for line in facts["dpkg -l"] if (f := line.split()) and f[0] == "ii"}


@pytest.mark.parametrize("path", sorted(FACTS.glob("*.json")), ids=lambda p: p.stem)
def test_every_facts_file_states_its_source(path):
    facts = json.loads(path.read_text())
    assert len(facts.get("_source", "")) > 40, f"{path.name}: say where these outputs come from"
    assert "FAKE" in facts["_source"]  # what could not be real (the GPU) is named


@pytest.mark.parametrize("release", ["ubuntu-22.04", "ubuntu-24.04"])
def test_ubuntu_facts_carry_the_recorded_versions(release):
    facts = json.loads((FACTS / f"{release}.json").read_text())
    rec = _recorded(release)
    installed = _dpkg(facts)
    shared = set(installed) & set(rec)
    assert {"openssh-client", "ssh", "dpkg"} <= shared
    assert {n: installed[n] for n in shared} == {n: rec[n] for n in shared}
    assert installed["openssh-server"] == rec["ssh"]  # the ssh metapackage's own source version
    release_lines = facts["for file in $(ls -pdL *-release"]
    assert f'PRETTY_NAME="Ubuntu {rec["OS Version"]}"' in release_lines


def test_the_releases_differ_as_recorded():
    """24.04 has OpenSSH 9.6 and Python 3.12, 22.04 OpenSSH 8.9 and Python 3.10 (recorded, not ours)."""
    new, old = _recorded("ubuntu-24.04"), _recorded("ubuntu-22.04")
    assert new["openssh-client"].startswith("1:9.6p1") and new["Python"].startswith("3.12")
    assert old["openssh-client"].startswith("1:8.9p1") and old["Python"].startswith("3.10")
    f24 = _dpkg(json.loads((FACTS / "ubuntu-24.04.json").read_text()))
    assert f24["openssh-server"].startswith("1:9.6p1")


def test_debian_facts_are_a_captured_host():
    facts = json.loads((FACTS / "debian-12.json").read_text())
    assert "tools/capture_facts.py" in facts["_source"]
    installed = _dpkg(facts)
    assert installed["openssh-server"].startswith("1:9.2p1") and installed["python3"].startswith("3.11")
