"""Fixtures of dlrig's shipped checks (testinfra; run by ``dlrig verify``).

- ``settings``: the host's effective dlrig settings (every default filled in), a dict.
- ``python``: the interpreter torch is checked with: ``dlrig verify --python PATH``, else the
  conda env's python (``conda_prefix``/``env_name``) when those settings exist, else ``python3``.
- ``python_given``: True when ``--python`` named it (torch checks then run whatever the roles).
- ``host_roles``: the roles whose checks run on this host.
- ``owner`` / ``owner_home``: the rig's owner and their home from the host's passwd (``getent``).
- ``run_json(host, python, code)``: run a Python snippet on the host, parse the JSON it prints.

Only the check modules of roles the host has are collected (``test_<role>.py``;
``test_gpu.py`` belongs to ``nvidia_driver``). ``dlrig verify`` passes all of this in a JSON file
named by ``DLRIG_VERIFY_CONTEXT``; run by plain ``pytest --hosts=... dlrig/verify/checks`` every
setting has its default.

A check says what to do when it fails: ``assert ok, fail_message(Finding(reason, hint))`` or
``f"{reason} -> HINT: {hint}"``; the verify table shows the hint in its own column.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from dlrig.verify.runner import CheckContext, default_python, module_role

_CONTEXT: CheckContext | None = None


def context() -> CheckContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = CheckContext.from_env()
    return _CONTEXT


def pytest_ignore_collect(collection_path: Path, config):
    """Skip the modules of roles this host does not have (they are not reported at all)."""
    name = collection_path.name
    if collection_path.suffix == ".py" and name.startswith("test_"):
        if not context().runs(module_role(collection_path.stem)):
            return True
    return None


@pytest.fixture(scope="session")
def check_context() -> CheckContext:
    return context()


@pytest.fixture(scope="session")
def settings() -> dict:
    return context().settings


@pytest.fixture(scope="session")
def owner(settings, check_context) -> str:
    return settings.get("workstation_user") or check_context.login_user or "root"


@pytest.fixture
def owner_home(host, owner) -> str:
    from dlrig.engine import pyenv

    u = host.user(owner)  # testinfra reads getent passwd
    return pyenv.home_of(owner, u.home if u.exists else None)


@pytest.fixture(scope="session")
def host_roles() -> list[str]:
    return list(context().roles)


@pytest.fixture(scope="session")
def python_given() -> bool:
    return bool(context().python)


@pytest.fixture(scope="session")
def python() -> str:
    ctx = context()
    return ctx.python or default_python(ctx.settings, ctx.login_user)


def run_json(host, python: str, code: str, timeout: int = 600) -> tuple[dict | None, str]:
    """Run ``code`` with ``python`` on the host; (the last JSON object it printed, or None; output)."""
    cmd = f"timeout {int(timeout)} {shlex.quote(python)} -c {shlex.quote(code)}"
    res = host.run(cmd)
    text = (res.stdout or "") + (res.stderr or "")
    for line in reversed((res.stdout or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line), text
            except json.JSONDecodeError:
                continue
    return None, f"exit {res.rc}: {text.strip()}"


@pytest.fixture(scope="session")
def run_python():
    return run_json
