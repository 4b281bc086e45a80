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

    This imports ``pyinfra_cli``, whose import gevent-monkey-patches the process (as pyinfra's own
    CLI does): call it from a command-line process, not from a long-lived one with threads.
    """
    if _looks_like_file(spec) and not Path(spec).exists():
        raise UserError(f"inventory {spec}: file not found; give a pyinfra inventory file such as inventories/example.py")
    from pyinfra.api.state import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    try:
        with ctx_state.use(State()):  # pyinfra executes inventory files inside a state
            inventory = make_inventory(spec, override_data=override_data or {}, cwd=str(Path.cwd()))
    except SyntaxError as e:
        raise UserError(f"inventory {spec}: syntax error at line {e.lineno}: {e.msg}; fix the file") from None
    except Exception as e:  # pyinfra raises many kinds here; the user needs one line
        raise UserError(f"inventory {spec}: cannot be loaded: {type(e).__name__}: {e}") from None
    hosts = [HostSpec(h.name, h.data.dict(), list(dict.fromkeys(h.groups))) for h in inventory]
    if not hosts:
        raise UserError(f"inventory {spec}: no hosts in it; list them in `hosts = [...]`")
    return hosts


def validate(hosts: list[HostSpec]) -> None:
    """Raise :class:`UserError` with every bad setting of every host."""
    errors = [line for h in hosts for line in validate_host_data(h.name, h.data)]
    if errors:
        raise UserError(errors)
