"""Settings: every role's data keys, declared once, and their validation.

A role declares its keys with :func:`declare` (default, type, allowed values, one line of help).
The declarations give the role its pyinfra ``data_defaults`` and give ``dlrig plan/apply`` the
schema to check every host's data against *before* any connection is made.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# Keys pyinfra itself reads (connector data and global arguments) are discovered from pyinfra,
# so a typo in them (``ssh_usr``) is caught too while every real one passes.


class SettingsError(ValueError):
    """A host's data does not fit the schema; the message is one line meant for the user."""


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    kind: str  # str, int, bool, float, list, dict, port, path, ip, url
    help: str
    role: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    item_kind: str | None = None  # for lists: the kind of each item
    nullable: bool = False
    secret: bool = False  # never echo the value back (passwords, hashes, keys)
    shape: str | None = None  # a key of SHAPES: what a str (or each str item) must look like
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        parts = [_KIND_WORDS.get(self.kind, self.kind)]
        if self.kind == "list" and self.item_kind:
            parts = [f"a list of {_ITEM_WORDS.get(self.item_kind, self.item_kind)}"]
        if self.min is not None and self.max is not None:
            parts.append(f"from {self.min:g} to {self.max:g}")
        elif self.min is not None:
            parts.append(f">= {self.min:g}")
        elif self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.nullable:
            parts.append("or None")
        return " ".join(parts)


_KIND_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "True or False",
    "list": "a list",
    "dict": "a mapping",
    "port": "a TCP port",
    "path": "an absolute path",
    "ip": "an IP address",
    "url": "an http(s):// or file:// URL",
}

_ITEM_WORDS = {"str": "strings", "int": "integers", "path": "absolute paths", "ip": "IP addresses"}

# What strings may look like, for every setting that can reach a shell on the host (issue 11):
# checked before any connection, in addition to shlex.quote where the value meets the shell.
SHAPES: dict[str, tuple[str, str]] = {
    # POSIX portable user name (useradd's default NAME_REGEX on Debian/Ubuntu)
    "user": (r"[a-z_][a-z0-9_-]{0,31}", "a user name: lower-case letters, digits, _ and -, e.g. 'alice'"),
    "path": (r"/[A-Za-z0-9._+@%=:,/-]*", "an absolute path of letters, digits and ._+@%=:,/- (no spaces "
                                         "or shell characters)"),
    # a folder that may sit on a data disk mounted under a name with spaces ("/media/alice/My Data");
    # every use quotes it (shlex.quote, positional parameters, quoted apt/pip/conda config values)
    "spaced_path": (r"/[A-Za-z0-9._+@%=:,/ -]*", "an absolute path of letters, digits, spaces and "
                                                 "._+@%=:,/- (no shell characters)"),
    "url": (r"(?:https?|file)://[A-Za-z0-9._~:/?#@!%&+,=-]+",
            "an http(s):// or file:// URL without spaces or quotes"),
    # Debian Policy 5.6.1 package names, optionally =version or :arch (apt's syntax)
    "deb_package": (r"[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?(?:=[A-Za-z0-9.+~:-]+)?",
                    "a Debian package name (lower-case letters, digits, +.-), optionally =VERSION"),
    "conda_channel": (r"[A-Za-z0-9][A-Za-z0-9._-]*|(?:https?|file)://[A-Za-z0-9._~:/?#@!%&+,=-]+",
                      "a conda channel name (conda-forge) or an http(s)/file URL"),
    "interface": (r"[A-Za-z0-9_.:-]{1,15}", "a network interface name as `ip link` lists it, e.g. 'enp5s0'"),
    "hex": (r"[0-9A-Fa-f]{16,128}", "hexadecimal digits"),
    "gpu": (r"[A-Za-z0-9 ._:+/()-]{1,80}", "a PCI id (10de:2684) or a GPU name (letters, digits, spaces, ._:+/()-)"),
    "mok_password": (r"[\x21-\x7e]{8,64}", "8 to 64 printable ASCII characters, no spaces (you type it at boot)"),
}

_SHAPE_RES = {name: re.compile(rx) for name, (rx, _) in SHAPES.items()}
_DEFAULT_SHAPE = {"path": "path", "url": "url"}


def shape_of(s: "Setting") -> str | None:
    return s.shape or _DEFAULT_SHAPE.get(s.kind if s.kind != "list" else (s.item_kind or ""))


def _shape_error(s: "Setting", value: Any) -> str | None:
    shape = shape_of(s)
    if shape is None or s.choices is not None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, str) and not _SHAPE_RES[shape].fullmatch(item):
            return SHAPES[shape][1]
    return None


_REGISTRY: dict[str, Setting] = {}


def declare(role: str, *settings: Setting) -> dict[str, Any]:
    """Register a role's settings; returns its ``data_defaults`` for ``@deploy``."""
    defaults = {}
    for s in settings:
        s = Setting(**{**s.__dict__, "role": role})
        if s.key in _REGISTRY and _REGISTRY[s.key].role != role:
            raise RuntimeError(f"setting {s.key} declared by {_REGISTRY[s.key].role} and {role}")
        _REGISTRY[s.key] = s
        defaults[s.key] = s.default
    return defaults


def registry() -> dict[str, Setting]:
    """All declared settings (importing the roles declares them)."""
    from dlrig.engine.catalogue import load_all

    load_all()

    return dict(_REGISTRY)


PYINFRA_KEYS_FILE = Path(__file__).with_name("pyinfra_keys.json")


def _installed_pyinfra_version() -> str | None:
    """pyinfra's version from its dist-info folder's name, without importing pyinfra or importlib.metadata."""
    import importlib.util

    spec = importlib.util.find_spec("pyinfra")
    if spec is None or not spec.origin:
        return None
    found = sorted(Path(spec.origin).parent.parent.glob("pyinfra-*.dist-info"))
    return found[0].name[len("pyinfra-"):-len(".dist-info")] if len(found) == 1 else None


def recorded_pyinfra_keys() -> set[str] | None:
    """:func:`pyinfra_keys` as recorded for the installed pyinfra (tools/pyinfra_keys.py), else None."""
    import json

    try:
        record = json.loads(PYINFRA_KEYS_FILE.read_text())
    except (OSError, ValueError):
        return None
    return set(record["keys"]) if record.get("pyinfra") == _installed_pyinfra_version() else None


def pyinfra_keys() -> set[str]:
    """Data keys that pyinfra itself understands: connector data and global arguments (imports pyinfra)."""
    from importlib.metadata import entry_points

    from pyinfra.api.arguments import all_global_arguments

    keys = {name for name, _ in all_global_arguments()}
    for ep in entry_points(group="pyinfra.connectors"):
        try:
            keys.update(getattr(ep.load(), "data_meta", {}) or {})
        except Exception:  # a broken third-party connector must not break validation
            continue
    return keys


def _kind_error(kind: str, value: Any) -> bool:
    """True when ``value`` is not of ``kind``."""
    if kind in ("str", "path", "url"):
        return not isinstance(value, str)
    if kind in ("int", "port"):
        return isinstance(value, bool) or not isinstance(value, int)
    if kind == "float":
        return isinstance(value, bool) or not isinstance(value, (int, float))
    if kind == "bool":
        return not isinstance(value, bool)
    if kind == "list":
        return not isinstance(value, (list, tuple))
    if kind == "dict":
        return not isinstance(value, dict)
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return True
        return False
    raise RuntimeError(f"unknown setting kind {kind}")


def _check_value(s: Setting, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``s``, or None."""
    if s.choices is not None:
        return None if value in s.choices or (value is None and s.nullable) else repr(value)
    if value is None:
        return None if s.nullable else "None"
    if _kind_error(s.kind, value):
        return repr(value)
    if s.kind == "port" and not 1 <= value <= 65535:
        return repr(value)
    if s.kind == "path" and not value.startswith("/"):
        return repr(value)
    if s.kind == "url" and not value.startswith(("http://", "https://", "file://")):
        return repr(value)
    if s.min is not None and value < s.min or s.max is not None and value > s.max:
        return repr(value)
    if s.kind == "list" and s.item_kind:
        for item in value:
            if _kind_error(s.item_kind, item):
                return f"{value!r} (item {item!r})"
    return None


def validate_host_data(host: str, data: dict[str, Any]) -> list[str]:
    """Every problem in one host's data, each as one line naming host, key and fix."""
    known = registry()
    ours_and_pyinfra = set(known)
    unknown = set(data) - ours_and_pyinfra
    if unknown:
        # The recorded list needs no pyinfra import; a key it lacks is looked up in pyinfra itself
        # (a third-party connector's data, a newer pyinfra) before it is called unknown.
        theirs = recorded_pyinfra_keys() or set()
        ours_and_pyinfra |= theirs if unknown <= theirs else theirs | pyinfra_keys()
    errors = []
    for key in sorted(data):
        value = data[key]
        if key not in known:
            if key in ours_and_pyinfra:
                continue  # pyinfra's own (connector data, global arguments, private keys)
            close = difflib.get_close_matches(key, sorted(ours_and_pyinfra), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else "; see `dlrig settings` for the known keys"
            errors.append(f"{host}: unknown setting {key!r}{hint}")
            continue
        s = known[key]
        bad = _check_value(s, value)
        if bad is None and value is not None:
            why = _shape_error(s, value)
            if why:
                shown = f"{key} (value not shown)" if s.secret else f"{key} = {value!r}"
                errors.append(f"{host}: {shown} is not allowed: use {why}")
                continue
        shown = f"{key} = {bad if bad is not None else repr(value)}" if not s.secret else f"{key} (value not shown)"
        if bad is None and s.check is not None and value is not None:
            why = s.check(value)
            if why:
                errors.append(f"{host}: {shown} is not allowed: {why}")
                continue
        if bad is not None:
            errors.append(f"{host}: {shown} is not allowed; use {s.allowed()} ({s.help})")
    return errors


def commented_defaults(role: str | None = None, indent: str = "            ") -> str:
    """Every setting as a commented ``"key": default,`` line, grouped by role in apply order."""
    from dlrig.engine.catalogue import ORDER

    order = {name: i for i, name in enumerate(("dlrig", *ORDER))}
    lines: list[str] = []
    current = None
    for s in sorted(registry().values(), key=lambda s: (order.get(s.role, 99), s.key)):
        if role and s.role != role:
            continue
        if s.role != current:
            current = s.role
            lines.append(f"{indent}# --- {s.role} ---")
        lines.append(f'{indent}# "{s.key}": {s.default!r},  # {s.allowed()}: {s.help}')
    return "\n".join(lines)


BEGIN_MARK = "# >>> every setting with its default (generated: dlrig settings --python --write FILE) >>>"
END_MARK = "# <<< every setting <<<"


def write_commented_defaults(path: str) -> bool:
    """Refresh the generated block of an inventory file; True when it changed."""
    from pathlib import Path

    text = Path(path).read_text()
    start, end = text.index(BEGIN_MARK), text.index(END_MARK)
    indent = text[text.rindex("\n", 0, start) + 1 : start]
    new = text[: start + len(BEGIN_MARK)] + "\n" + commented_defaults(indent=indent) + "\n" + indent + text[end:]
    if new != text:
        Path(path).write_text(new)
    return new != text
