"""Load a pyinfra inventory and validate every host's data before anything connects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlrig.engine.settings import validate_host_data


class UserError(Exception):
    """Bad input: printed as its lines, exit code 2, nothing run on any host."""

    def __init__(self, lines: str | list[str]):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


@dataclass
class HostSpec:
    name: str
    data: dict[str, Any] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)


def _looks_like_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec and not spec.startswith("@")


def load_inventory(spec: str, override_data: dict | None = None) -> list[HostSpec]:
    """The hosts of an inventory (file, ``@local``, ``@fake/x``, host names) with merged data.

    An inventory file of the usual shape is read here without pyinfra (``dlrig check`` stays
    light; see :func:`read_inventory_file`); anything else goes through ``pyinfra_cli``, whose
    import gevent-monkey-patches the process (as pyinfra's own CLI does): call it from a
    command-line process, not from a long-lived one with threads.
    """
    if _looks_like_file(spec) and not Path(spec).exists():
        raise UserError(f"inventory {spec}: file not found; give a pyinfra inventory file such as inventories/example.py")
    try:
        hosts = read_inventory_file(spec, override_data)
    except SyntaxError as e:
        raise UserError(f"inventory {spec}: syntax error at line {e.lineno}: {e.msg}; fix the file") from None
    except Exception as e:  # the user's Python raised: one line for them
        raise UserError(f"inventory {spec}: cannot be loaded: {_reason(e, spec)}") from None
    if hosts is None:
        hosts = _pyinfra_inventory(spec, override_data)
    _check_duplicates(spec)
    if not hosts:
        raise UserError(f"inventory {spec}: no hosts in it; {_no_hosts_fix(spec)}")
    return hosts


def _no_hosts_fix(spec: str) -> str:
    """The fix for an inventory without hosts; a group written as a plain string is the usual slip."""
    import ast

    path = Path(spec)
    if path.suffix == ".py" and path.is_file():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, str):
                names = [t.id for t in node.targets if isinstance(t, ast.Name) and not t.id.startswith("_")]
                if names:
                    return f"`{names[0]}` is a string, not a list: write `{names[0]} = [{node.value.value!r}]`"
    return "list them in `hosts = [...]`"


def _pyinfra_inventory(spec: str, override_data: dict | None) -> list[HostSpec]:
    from pyinfra.api.state import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    try:
        with ctx_state.use(State()):  # pyinfra executes inventory files inside a state
            inventory = make_inventory(spec, override_data=override_data or {}, cwd=str(Path.cwd()))
    except SyntaxError as e:
        raise UserError(f"inventory {spec}: syntax error at line {e.lineno}: {e.msg}; fix the file") from None
    except Exception as e:  # pyinfra raises many kinds here; the user needs one line
        raise UserError(f"inventory {spec}: cannot be loaded: {_reason(e, spec)}") from None
    return [HostSpec(h.name, h.data.dict(), list(dict.fromkeys(h.groups))) for h in inventory]


# --- inventory files without pyinfra ------------------------------------------------------------
# pyinfra's rules (pyinfra_cli.inventory.make_inventory_from_files and pyinfra.api.inventory, 3.x),
# for the shapes dlrig's inventories use; anything else returns None and pyinfra reads the file.
# tests/unit/test_inventory_reader.py holds this to pyinfra's own result on every shape it takes.

# host name prefix -> (the name pyinfra gives the host, its connector data, its connector groups)
_CONNECTOR_NAMES = {
    "@dlrig-ssh/": lambda arg: (arg, {"ssh_hostname": arg}, []),
    "@ssh/": lambda arg: (f"@ssh/{arg}", {"ssh_hostname": arg}, []),
}


def _connector_host(name: str):
    if name == "@local":
        return "@local", {}, ["@local"]
    if not name.startswith("@"):
        return name, {}, []
    for prefix, make in _CONNECTOR_NAMES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return make(name[len(prefix):])
    return None


def _group_entries(key: str, value: Any):
    """(host entries, group data) of a module-level value that pyinfra takes as a group, else None."""
    if key.startswith("_"):
        return None
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list) and isinstance(value[1], dict):
        entries, data = value
    elif isinstance(value, list):
        entries, data = value, {}
    else:
        return None
    return entries, data


def _exec_python(path: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    return namespace


def _uses_pyinfra(path: Path) -> bool:
    """Whether the file imports pyinfra anywhere (pyinfra's context objects need pyinfra's loader)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "pyinfra" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pyinfra":
            return True
    return False


def _imported_names(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(a.asname or a.name.split(".")[0] for a in node.names if a.name != "*")
    return names


def read_inventory_file(spec: str, override_data: dict | None = None) -> list[HostSpec] | None:
    """An inventory file's hosts as pyinfra would load them, without importing pyinfra.

    None when pyinfra must read it: not a file, code that uses pyinfra, a host name with a
    connector other than ``@local``, ``@ssh/`` and ``@dlrig-ssh/``, or a group of another shape.
    """
    path = Path(spec)
    if not (spec.endswith(".py") and path.is_file()):
        return None
    cwd = Path.cwd()
    folders = [cwd / "group_data"]
    if path.parent.resolve() != cwd:
        folders.append(path.parent.resolve() / "group_data")
    data_files = [f for d in folders if d.is_dir() for f in sorted(d.iterdir()) if f.suffix == ".py"]
    if any(_uses_pyinfra(f) for f in [path, *data_files]):
        return None

    groups: dict[str, tuple[list, dict]] = {}
    for key, value in _exec_python(path).items():
        if key.startswith("__") or not isinstance(value, (list, tuple)):
            continue
        group = _group_entries(key, value)
        if group is None or not all(isinstance(e, (str, tuple)) for e in group[0]):
            if key.startswith("_"):
                continue
            return None
        groups[key] = group
    all_hosts, all_data = groups.pop("all", (None, {}))
    if all_hosts is None:
        all_hosts = list(dict.fromkeys(e[0] if isinstance(e, tuple) else e for g in groups.values() for e in g[0]))
    groups.setdefault(path.name.rsplit(".", 1)[0], (list(all_hosts), {}))

    group_data: dict[str, dict] = {}
    for f in data_files:
        attrs = _exec_python(f)
        keys = attrs["__all__"] if "__all__" in attrs else [k for k in attrs if k not in _imported_names(f)]
        group_data.setdefault(f.stem, {}).update(
            {k: v for k, v in attrs.items() if k in keys and not k.startswith("__")})
    all_data = {**all_data, **group_data.pop("all", {})}
    for name, (entries, data) in groups.items():
        groups[name] = (entries, {**data, **group_data.get(name, {})})

    entry_data: dict[str, dict] = {}
    member_of: dict[str, list[str]] = {}
    for gname, (entries, _) in groups.items():
        for e in entries:
            if isinstance(e, tuple) and not (len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], dict)):
                return None
            name, data = e if isinstance(e, tuple) else (e, {})
            entry_data.setdefault(name, {}).update(data)
            member_of.setdefault(name, []).append(gname)
    hosts = []
    for inv_name in all_hosts:
        made = _connector_host(inv_name)
        if made is None or any(h.name == made[0] for h in hosts):  # pyinfra merges such twins
            return None
        name, connector_data, connector_groups = made
        names_groups = member_of.get(inv_name, [])
        host_groups = names_groups + connector_groups + (names_groups if inv_name != name else [])
        data = dict(all_data)
        for g in host_groups:
            data.update(groups.get(g, ([], {}))[1])
        data.update({**connector_data, **entry_data.get(inv_name, {})})
        data.update(override_data or {})
        hosts.append(HostSpec(name, data, list(dict.fromkeys(host_groups))))
    return hosts


def _check_ssh_key(h: HostSpec) -> list[str]:
    """``ssh_key`` must be a readable private key file (never echoing what is in it)."""
    import os

    key = h.data.get("ssh_key")
    if not key or not isinstance(key, str):
        return []
    path = Path(os.path.expanduser(key))
    if not path.is_file():
        return [f"{h.name}: ssh_key {key}: no such file; give the path of your private key, e.g. ~/.ssh/id_ed25519"]
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as e:
        return [f"{h.name}: ssh_key {key}: cannot be read ({e.strerror}); fix its permissions (chmod 600) "
                "or run dlrig as its owner"]
    if not head.lstrip().startswith(b"-----BEGIN ") or b"PRIVATE KEY" not in head + path.read_bytes()[:200]:
        hint = " (that is the public half: drop the .pub)" if head.startswith((b"ssh-", b"ecdsa-", b"sk-")) else ""
        return [f"{h.name}: ssh_key {key}: not a private key file{hint}; give e.g. ~/.ssh/id_ed25519"]
    return []


def _check_duplicates(spec: str) -> None:
    """A host listed twice (pyinfra silently keeps one, then reports "No hosts remaining")."""
    if not _looks_like_file(spec):
        return
    import ast

    try:
        tree = ast.parse(Path(spec).read_text())
    except (OSError, SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            names = []
            for elt in node.elts:
                if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                    names.append((elt.value, elt.lineno))
                elif isinstance(elt, ast.Tuple) and elt.elts and isinstance(elt.elts[0], ast.Constant) \
                        and isinstance(elt.elts[0].value, str):
                    names.append((elt.elts[0].value, elt.lineno))
            seen: dict[str, int] = {}
            for name, line in names:
                if name in seen:
                    raise UserError(f"inventory {spec} line {line}: host {name!r} is listed twice (first on line "
                                    f"{seen[name]}); list each host once")
                seen[name] = line


def _reason(e: BaseException, spec: str) -> str:
    """One line for an inventory that raised: the inventory file's line, the exception, no traceback.
    pyinfra wraps what the file raised (UnexpectedExternalError, whose str() itself fails)."""
    import traceback

    inner = getattr(e, "exception", None) or e
    where = ""
    tb = getattr(inner, "_traceback", None) or inner.__traceback__
    target = str(Path(spec).resolve()) if _looks_like_file(spec) else None
    for frame in traceback.extract_tb(tb) if tb else []:
        if target and str(Path(frame.filename).resolve()) == target:
            where = f"line {frame.lineno}: "
    try:
        text = str(inner)
    except Exception:
        text = ""
    if isinstance(inner, ModuleNotFoundError):
        return f"{where}imports {inner.name!r}, which is not installed here; install it or remove the import"
    return f"{where}{type(inner).__name__}" + (f": {text}" if text else "")


def validate(hosts: list[HostSpec]) -> None:
    """Raise :class:`UserError` with every bad setting of every host."""
    errors = [line for h in hosts for line in validate_host_data(h.name, h.data)]
    errors += [line for h in hosts for line in _check_ssh_key(h)]
    if errors:
        raise UserError(errors)
