"""Plan a deploy against @fake hosts (pyinfra's fake connector) and collect the commands.

FAKES: the hosts do not exist. Their facts are canned outputs from ``facts/<os>.json`` (Ubuntu
22.04/24.04 and Debian 12 boxes with an RTX 2070 Super); every other command "succeeds" with no
output. This tier proves which operations and commands dlrig would run on systems this machine
cannot be (Ubuntu), never that they work: that is the host tests' job.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.context import ctx_host, ctx_state

FACTS = Path(__file__).parent / "facts"


def fake_host(name: str, os: str, facts: dict[str | re.Pattern, Any] | None = None, **data) -> tuple:
    """A @fake host entry: the OS's canned facts, with ``facts`` overriding (matched first)."""
    canned = {k: v for k, v in json.loads((FACTS / f"{os}.json").read_text()).items() if not k.startswith("_")}
    responses = {**(facts or {}), **{k: v for k, v in canned.items() if k not in (facts or {})}}
    return (f"@fake/{name}", {"fake_responses": responses, "fake_delay": 0, "fake_delay_jitter": 0, **data})


def plan(hosts: list[tuple], roles: list[str] | str | None = None) -> dict[str, list[dict]]:
    """Per host name, the planned operations in order: ``{"role", "operation", "commands"}``.

    Operations that would change nothing (no commands) are left out, as pyinfra leaves them out.
    Each host is planned in its own state: pyinfra's API mode numbers operations per host in call
    order, so hosts that branch differently would otherwise share operation names.
    """
    return {entry[0].removeprefix("@fake/"): _plan_one(entry, roles) for entry in hosts}


def _plan_one(entry: tuple, roles) -> list[dict]:
    from dlrig.deploys import run_roles

    inventory = Inventory(([entry], {}))
    state = State(inventory, Config())
    (host,) = list(inventory)
    out = []
    with ctx_state.use(state):
        connect_all(state)
        add_deploy(state, run_roles, roles)
        for op_hash in state.get_op_order():
            op_data = state.ops[host].get(op_hash)
            if op_data is None:
                continue
            (name,) = state.op_meta[op_hash].names
            role, _, opname = name.partition(" | ")
            with ctx_host.use(host):
                commands = [_text(c) for c in op_data.command_generator()]
            if commands:
                out.append({"role": role, "operation": opname, "commands": commands})
    return out


def run_deploy_file(entry: tuple, path: str) -> None:
    """Execute a deploy file (``deploys/doctor.py``) for one @fake host, as ``pyinfra`` would."""
    import runpy

    inventory = Inventory(([entry], {}))
    state = State(inventory, Config())
    (host,) = list(inventory)
    with ctx_state.use(state):
        connect_all(state)
        with ctx_host.use(host):
            runpy.run_path(path)


def _text(command) -> str:
    """A command as text; an upload shows its destination and the uploaded text; a watched download
    the command it watches (the watcher is proven in tests/unit/test_download_progress.py)."""
    src = getattr(command, "src", None)
    if src is not None and hasattr(command, "dest"):
        body = src.getvalue() if hasattr(src, "getvalue") else Path(src).read_text(errors="replace")
        return f"UPLOAD {command.dest}\n{body}"
    watched = getattr(command, "watched", None)  # a download with a byte count (dlrig.engine.download)
    if watched is not None:
        return watched
    get = getattr(command, "get_raw_value", None)
    return get() if get else str(command)


def commands(ops: list[dict], role: str | None = None) -> str:
    """Every command of ``ops`` (optionally one role's) as one newline-joined text to search."""
    return "\n".join(c for op in ops if role is None or op["role"] == role for c in op["commands"])
