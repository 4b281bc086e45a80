"""``dlrig files`` and the README table list what the roles write; ``dlrig revert`` refuses what it
cannot undo. (The host test tests/hosts/test_revert_hosts.py proves the list on a real host.)"""

from __future__ import annotations

import ast
import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlrig.engine.catalogue import ORDER
from dlrig.roles import footprint
from dlrig.roles.revert import dlrig_rules

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PREFIXES = ("/etc/", "/var/lib/dlrig", "/usr/local/share/ca-certificates")


def test_readme_table_is_the_footprint():
    text = (ROOT / "README.md").read_text()
    begin, end = "<!-- files: begin -->\n", "<!-- files: end -->"
    block = text[text.index(begin) + len(begin):text.index(end)]
    assert block == footprint.markdown_table(), "README table is stale: paste `footprint.markdown_table()`"


def _system_paths(module_path: Path) -> set[str]:
    """Every system path a role's source names: string constants and f-strings (``{...}`` as ``*``)."""
    out = set()
    tree = ast.parse(module_path.read_text())
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if id(node) in parts:
            continue  # a piece of an f-string: read whole below
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in node.values)
        else:
            continue
        if text.startswith(SYSTEM_PREFIXES) and " " not in text and "\n" not in text:
            out.add(text)
    return out


@pytest.mark.parametrize("role", ORDER)
def test_every_system_path_a_role_names_is_in_its_footprint(role):
    listed = [i.what for i in footprint.FOOTPRINT[role] if i.kind in ("file", "block", "mask", "apt source",
                                                                       "apt pin", "unit")]
    paths = _system_paths(ROOT / "roles" / f"{role}.py")
    # directories the role only creates or reads (not files it manages)
    missing = [p for p in paths
               if not any(fnmatch.fnmatchcase(p, w) or fnmatch.fnmatchcase(w, p) for w in listed)
               and not p.endswith("/") and p not in ("/etc/apt/keyrings", "/etc/systemd/system", "/var/lib/dlrig")
               and not p.startswith(("/etc/systemd/system/multi-user.target.wants/", "/etc/ssh/sshd_config",
                                     "/var/lib/dlrig/ssh", "/etc/ufw/", "/etc/default/ufw"))]
    # the exceptions above are covered by other entries (units enabled, ssh's files) or read only
    assert not missing, f"role {role} names {missing} but its footprint does not list them"


def test_files_command_lists_every_role_and_json_matches():
    r = subprocess.run([sys.executable, "-m", "dlrig", "files", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {row["role"] for row in rows} == set(ORDER)
    assert {row["role"] for row in rows if row["revert"]} == set(footprint.REVERTIBLE)
    masks = [row["what"] for row in rows if row["kind"] == "mask"]
    assert "/etc/systemd/system/suspend.target" in masks


def test_revert_refuses_software_roles_with_one_line():
    r = subprocess.run([sys.executable, "-m", "dlrig", "revert", "inventories/local.py", "--roles",
                        "ssh,nvidia_driver,conda", "--yes"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "nvidia_driver, conda" in lines[0] and "Undo by hand" in lines[0], r.stderr


def test_dlrig_rules_are_picked_by_comment():
    shown = ["ufw limit 22/tcp comment 'dlrig ssh'", "ufw allow 6006/tcp comment 'dlrig'",
             "ufw allow 80/tcp", "ufw allow 443/tcp comment 'dlrigx'", "ufw allow 9000/tcp comment 'mine'",
             "ufw allow from 10.0.0.0/8 to any port 8888 proto tcp comment 'dlrig jupyter'"]
    assert dlrig_rules(shown) == ["limit 22/tcp", "allow 6006/tcp",
                                  "allow from 10.0.0.0/8 to any port 8888 proto tcp"]
