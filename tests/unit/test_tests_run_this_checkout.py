"""Subprocess tests run this checkout (``sys.executable -m dlrig``), never whatever ``dlrig`` is first on PATH."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def path_dlrig_calls(source: str) -> list[int]:
    """Line numbers of calls whose argv list starts with the bare string "dlrig"."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.List) and node.args[0].elts:
            first = node.args[0].elts[0]
            if isinstance(first, ast.Constant) and first.value == "dlrig":
                lines.append(node.lineno)
    return lines


def test_the_scan_finds_a_path_dlrig_call():
    assert path_dlrig_calls('subprocess.run(["dlrig", "verify"])') == [1]
    assert path_dlrig_calls('subprocess.run([sys.executable, "-m", "dlrig", "verify"])') == []


def test_no_test_runs_dlrig_from_path():
    found = {str(p.relative_to(ROOT)): lines for p in (ROOT / "tests").rglob("*.py")
             if (lines := path_dlrig_calls(p.read_text()))}
    assert found == {}, "use [sys.executable, '-m', 'dlrig', ...]"
