"""The layers of the dlrig package point down only, and no module imports itself in a circle.

Every ``import`` and ``from ... import`` of the package's own modules is read with ``ast`` (those
inside functions too: a late import is still a dependency). Roles are loaded by name through
:mod:`dlrig.engine.catalogue` (``importlib``), the one sanctioned way for the engine to reach them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Highest first: a module may import its own layer (without a cycle) or any layer below it.
LAYERS = ("cli", "testing", "verify", "deploys", "roles", "engine", "gpu", "base")
RANK = {name: len(LAYERS) - i for i, name in enumerate(LAYERS)}

# Where each installed package's source lives in the clone (pyproject's package-dir).
SOURCES = {"dlrig": ROOT / "dlrig", "dlrig.roles": ROOT / "roles", "dlrig.deploys": ROOT / "deploys"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    if module == "dlrig.__main__":
        return "cli"
    if len(parts) > 1 and parts[1] in RANK:
        return parts[1]
    return "base"  # dlrig/__init__.py: the version


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from pkg import mod` imports pkg.mod when that is a module; else names from pkg.
            names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
        for name in names:
            while name and name not in known:  # `import dlrig.engine.settings` -> the module itself
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def test_every_module_sits_in_a_known_layer():
    assert {layer(m) for m in modules()} <= set(RANK)
    for name in ("cli", "engine", "gpu", "verify", "testing"):
        assert (ROOT / "dlrig" / name / "__init__.py").is_file(), f"dlrig/{name}/ is a package"


def test_no_import_points_up_a_layer():
    upward = sorted(
        f"{m} ({layer(m)}) imports {d} ({layer(d)})"
        for m, deps in graph().items()
        for d in deps
        if RANK[layer(d)] > RANK[layer(m)] and not (layer(d) == "base")
    )
    assert upward == [], "imports from a lower layer into a higher one:\n" + "\n".join(upward)


def test_nothing_imports_the_cli():
    users = sorted(m for m, deps in graph().items() if layer(m) != "cli" and any(layer(d) == "cli" for d in deps))
    assert users == []


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(graph()) == []


def test_the_checker_sees_an_upward_import_and_a_cycle():
    """The checks above can fail: a cycle and an upward edge are found in a made-up graph."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert RANK[layer("dlrig.gpu.resolver")] < RANK[layer("dlrig.engine.stack")] < RANK[layer("dlrig.cli.run")]


@pytest.mark.parametrize("path", sorted(p for p in modules().values()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_400_lines_without_a_reason(path):
    lines = path.read_text().count("\n")
    if lines > 400:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "over 400 lines" in doc.lower(), f"{path.relative_to(ROOT)} has {lines} lines: split it or say why in its docstring"
