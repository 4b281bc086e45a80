"""A small pytest plugin (``-p dlrig.verify.plugin``) that writes one JSON line per check result.

``dlrig verify`` runs pytest over the shipped checks (``dlrig/verify/checks``) in a subprocess, one per
host, with ``DLRIG_VERIFY_RESULTS`` naming the file to append to. Each line:
``{"nodeid", "module", "name", "outcome": passed|failed|skipped|error, "message", "properties"}``.
``message`` is the assert message (the checks write ``reason -> HINT: what to do``), the skip
reason, or ``ExceptionType: text`` for a crash in a check; ``properties`` are what the check
recorded with ``record_property`` (e.g. ``info``: tensor cores per card).

Before each check it sets TCP_NODELAY on testinfra's paramiko connection (see
docs/tcp-nodelay.md): a check's commands then cost a few ms each instead of ~50 ms; and, when
``DLRIG_SUDO_PASSWORD`` is set (by the runner, for a host whose sudo asks for one), lets its sudo
commands answer the prompt (dlrig.verify.sudopw).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dlrig.engine.sudopass import ENV as ENV_SUDO_PASSWORD
from dlrig.engine.tcp import set_nodelay
from dlrig.verify import sudopw

ENV_RESULTS = "DLRIG_VERIFY_RESULTS"


def _message(excinfo) -> str:
    if excinfo is None:
        return ""
    exc = excinfo.value
    if isinstance(exc, AssertionError):
        text = str(exc)
        # assertion rewriting appends "\nassert <expression>": keep the author's message only
        head = text.split("\nassert ", 1)[0].strip()
        return head or text.strip() or "assertion failed"
    if excinfo.errisinstance(pytest.skip.Exception) or excinfo.errisinstance(pytest.fail.Exception):
        return str(getattr(exc, "msg", exc)).strip()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def _write(record: dict) -> None:
    path = os.environ.get(ENV_RESULTS)
    if not path:
        return
    with Path(path).open("a") as f:
        f.write(json.dumps(record, default=str) + "\n")


def nodelay(host) -> bool:
    """TCP_NODELAY on a testinfra host's paramiko connection (connecting it if needed)."""
    backend = getattr(host, "backend", None)
    if getattr(backend, "NAME", None) != "paramiko":
        return False
    return set_nodelay(backend.client)  # testinfra's cached SSHClient (reconnects when dropped)


def pytest_runtest_setup(item) -> None:
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("_testinfra_host") if callspec is not None else None
    if host is not None:
        sudopw.give(host, os.environ.get(ENV_SUDO_PASSWORD))  # with --sudo only (dlrig.verify.sudopw)
        nodelay(host)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report._dlrig_message = _message(call.excinfo)  # type: ignore[attr-defined]
    report._dlrig_name = display_name(item)  # type: ignore[attr-defined]


def display_name(item) -> str:
    """``test_x[paramiko://u@h:22-fp16]`` -> ``test_x[fp16]``: the host is a column of its own."""
    callspec = getattr(item, "callspec", None)
    name = getattr(item, "originalname", None) or item.name
    if callspec is None:
        return name
    ident = callspec.id
    host = callspec.params.get("_testinfra_host")
    if host is not None:
        try:
            ident = ident.replace(host.backend.get_pytest_id(), "").replace("--", "-").strip("-")
        except Exception:  # a backend without pytest ids: keep the full id
            pass
    return f"{name}[{ident}]" if ident else name


def pytest_runtest_logreport(report) -> None:
    msg = getattr(report, "_dlrig_message", "")
    if report.when == "call":
        outcome = report.outcome
    elif report.when == "setup" and report.outcome != "passed":
        outcome = "skipped" if report.skipped else "error"
    elif report.when == "teardown" and report.failed:
        outcome = "error"
    else:
        return
    if report.skipped and not msg and isinstance(report.longrepr, tuple):
        msg = str(report.longrepr[2]).removeprefix("Skipped: ")
    module, _, name = report.nodeid.partition("::")
    name = getattr(report, "_dlrig_name", name)
    _write({
        "nodeid": report.nodeid,
        "module": Path(module).stem,
        "name": name,
        "outcome": outcome,
        "when": report.when,
        "message": msg,
        "properties": dict(report.user_properties),
        "duration": round(report.duration, 3),
    })


def pytest_collectreport(report) -> None:
    if report.failed:
        text = str(report.longrepr).strip().splitlines()
        _write({
            "nodeid": report.nodeid,
            "module": Path(report.nodeid.partition("::")[0]).stem or "collection",
            "name": "(collect)",
            "outcome": "error",
            "when": "collect",
            "message": text[-1] if text else "collection failed",
            "properties": {},
            "duration": 0,
        })
