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


def test_missing_torch_fails_when_ci_requires_it(tmp_path):
    """DLRIG_REQUIRE_TORCH=1 (.ci/run) turns 'could not import torch' skips into failures."""
    import os
    import subprocess
    import sys

    t = tmp_path / "test_needs_torch.py"
    t.write_text("import sys, pytest\nsys.modules['torch'] = None\n\n"
                 "def test_x():\n    pytest.importorskip('torch')\n")
    run = lambda env: subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", str(t)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=120)
    plain = run({"DLRIG_REQUIRE_TORCH": "0"})
    assert plain.returncode == 0 and "1 skipped" in plain.stdout, plain.stdout
    strict = run({"DLRIG_REQUIRE_TORCH": "1"})
    assert strict.returncode == 1 and "1 failed" in strict.stdout and "DLRIG_REQUIRE_TORCH=1" in strict.stdout
