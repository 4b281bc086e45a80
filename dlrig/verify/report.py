"""How ``dlrig verify`` shows its results: the per-host summary, ``--json``, the table a person reads
(skips of one reason collapsed) and JUnit XML for CI systems."""

from __future__ import annotations

import textwrap
from dataclasses import asdict
from typing import Any
from xml.etree import ElementTree as ET

from dlrig.verify.runner import ERROR, FAILED, PASSED, SKIPPED, CheckResult


NOTHING_RAN = "no check ran (every check was skipped or none was selected): a host is verified only by checks that pass"


def summary(results: list[CheckResult], hosts_expected: list[str] | None = None) -> dict[str, Any]:
    """Per host: counts and ``ok``. A host is ok when no check failed or errored AND at least one
    passed: a host with no result at all, or only skips, is not verified (``reason`` says so)."""
    hosts: dict[str, dict[str, Any]] = {}
    for name in hosts_expected or []:
        hosts.setdefault(name, {PASSED: 0, FAILED: 0, SKIPPED: 0, ERROR: 0})
    for r in results:
        h = hosts.setdefault(r.host, {PASSED: 0, FAILED: 0, SKIPPED: 0, ERROR: 0})
        h[r.result] += 1
    for h in hosts.values():
        h["ok"] = h[FAILED] == 0 and h[ERROR] == 0 and h[PASSED] > 0
        if h[FAILED] == 0 and h[ERROR] == 0 and h[PASSED] == 0:
            h["reason"] = NOTHING_RAN
    return {"ok": bool(hosts) and all(h["ok"] for h in hosts.values()), "hosts": hosts}


# The file every apply writes first (role base): a host without it has not been provisioned.
PROVISIONED_MARK = "base::apt_waits_for_dpkg_lock"


def unprovisioned(results: list[CheckResult]) -> list[str]:
    """Hosts that look never provisioned by dlrig: base's first file is missing and no check of
    another role passed (a stock OS already passes a few of base's own checks)."""
    out = []
    for host in dict.fromkeys(r.host for r in results):
        mine = [r for r in results if r.host == host]
        mark = [r for r in mine if r.check.startswith(PROVISIONED_MARK)]
        if mark and all(r.result == FAILED for r in mark) and not any(
                r.result == PASSED and r.role != "base" for r in mine):
            out.append(host)
    return out


def as_json(results: list[CheckResult], hosts_expected: list[str] | None = None) -> dict[str, Any]:
    s = summary(results, hosts_expected)
    return {
        "ok": s["ok"],
        "hosts": s["hosts"],
        "unprovisioned": unprovisioned(results),
        "results": [{k: v for k, v in asdict(r).items() if k != "duration"} | {"duration": round(r.duration, 3)}
                    for r in results],
    }


_MARK = {PASSED: "pass", FAILED: "FAIL", SKIPPED: "skip", ERROR: "ERROR"}


def _collapse_skips(results: list[CheckResult]) -> list[tuple[CheckResult, int]]:
    """Runs of 3+ consecutive skips with the same host and reason -> (first, count)."""
    runs: list[list[CheckResult]] = []
    for r in results:
        prev = runs[-1][0] if runs else None
        if prev is not None and r.result == SKIPPED and prev.result == SKIPPED and prev.host == r.host \
                and prev.reason == r.reason and not r.info and not prev.info:
            runs[-1].append(r)
        else:
            runs.append([r])
    out: list[tuple[CheckResult, int]] = []
    for run in runs:
        out += [(run[0], len(run))] if len(run) >= 3 else [(x, 1) for x in run]
    return out


def format_table(results: list[CheckResult], width: int = 110, hosts_expected: list[str] | None = None) -> str:
    """check, host, result, hint; the reason (and info) under the row, indented. Runs of
    identical skips fold into one row ("+N more"); --json and --junit keep every check."""
    if not results:
        return "".join(f"{h}: {NOTHING_RAN}  -> FAILED\n" for h in hosts_expected or []) or f"{NOTHING_RAN}\n"
    rows = _collapse_skips(results)
    names = [r.check + (f" (+{n - 1} more)" if n > 1 else "") for r, n in rows]
    cw = min(max(len(x) for x in names), 48)
    hw = min(max(max(len(r.host) for r in results), 4), 24)
    head = f"{'check':{cw}}  {'host':{hw}}  {'result':6}  hint"
    lines = [head, "-" * min(width, max(len(head), 60))]
    indent = " " * (cw + hw + 4 + 8)
    for (r, n), name in zip(rows, names):
        hint = r.hint if r.result in (FAILED, ERROR) else ""
        first, *rest = textwrap.wrap(hint, max(30, width - len(indent))) or [""]
        lines.append(f"{name:{cw}}  {r.host:{hw}}  {_MARK.get(r.result, r.result):6}  {first}".rstrip())
        lines += [indent + x for x in rest]
        if r.result != PASSED and r.reason:
            label = "why: " if r.result in (FAILED, ERROR) else "skipped: "
            lines += textwrap.wrap(r.reason, width - 4, initial_indent="    " + label,
                                   subsequent_indent="    " + " " * len(label))
        if r.info:
            lines += textwrap.wrap(r.info, width - 4, initial_indent="    ", subsequent_indent="      ")
    s = summary(results, hosts_expected)
    lines.append("")
    for host, h in s["hosts"].items():
        status = "ok" if h["ok"] else "FAILED"
        lines.append(f"{host}: {h[PASSED]} passed, {h[FAILED]} failed, {h[SKIPPED]} skipped"
                     + (f", {h[ERROR]} error(s)" if h[ERROR] else "") + f"  -> {status}"
                     + (f" ({h['reason']})" if "reason" in h else ""))
    return "\n".join(lines) + "\n"


def junit_xml(results: list[CheckResult]) -> str:
    """JUnit XML: one testsuite per host, one testcase per check."""
    suites = ET.Element("testsuites", name="dlrig verify")
    by_host: dict[str, list[CheckResult]] = {}
    for r in results:
        by_host.setdefault(r.host, []).append(r)
    for host, rs in by_host.items():
        suite = ET.SubElement(suites, "testsuite", name=host, tests=str(len(rs)),
                              failures=str(sum(r.result == FAILED for r in rs)),
                              errors=str(sum(r.result == ERROR for r in rs)),
                              skipped=str(sum(r.result == SKIPPED for r in rs)),
                              time=f"{sum(r.duration for r in rs):.3f}")
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=f"{host}.{r.check.split('::')[0]}",
                                 name=r.check, time=f"{r.duration:.3f}")
            text = r.reason + (f"\nhint: {r.hint}" if r.hint else "")
            if r.result == FAILED:
                ET.SubElement(case, "failure", message=r.reason).text = text
            elif r.result == ERROR:
                ET.SubElement(case, "error", message=r.reason).text = text
            elif r.result == SKIPPED:
                ET.SubElement(case, "skipped", message=r.reason)
            if r.info:
                ET.SubElement(case, "system-out").text = r.info
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
