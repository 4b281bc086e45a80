"""Mutation testing of the modules where a silent bug strands a user: one command, a score, the survivors.

    python3 tools/mutation.py                 # every target (slow: minutes per module on 2 cores)
    python3 tools/mutation.py firewall report # some targets
    python3 tools/mutation.py --list
    python3 tools/mutation.py --relabel      # after editing justified.tsv: labels only, no run
    python3 tools/mutation.py --sample 0.5 resolver   # a new session runs a seeded half of the mutants
                                                      # (seeded per mutant: same code + F = same mutants)
    python3 tools/mutation.py --retest resolver       # survivors of the stored session again (after new tests)
    python3 tools/mutation.py --deadline 15 ssh_guards # stop each target after 15 minutes (resumable)
    python3 tools/mutation.py --report resolver       # rewrite survivors.md from the stored session, no run

Tool: cosmic-ray (PyPI; installed by `pip install -e '.[mutation]'`). Chosen over mutmut because it
mutates the files in place and runs any test command, which fits this repo's layout (roles/ and
deploys/ are installed as dlrig.roles / dlrig.deploys: mutmut 3 copies sources into mutants/ and
imports them from there, which those mapped packages never see), and because each target runs only
the tests that concern it. Sessions live in .mutation/ (ignored; resumable). Mutated files are
restored from git after each target, also on Ctrl-C.

Output: tools/mutation/survivors.md (in the repo): per target the score (killed / total) and every
surviving mutant (file, line, operator, diff), each marked with its one-line justification from
tools/mutation/justified.tsv (an equivalent mutant) or "NOT JUSTIFIED" (a missing test to write).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
OUT = ROOT / "tools" / "mutation" / "survivors.md"
JUSTIFIED = ROOT / "tools" / "mutation" / "justified.tsv"
PYTEST = f"{sys.executable} -m pytest -x -q -p no:cacheprovider -p no:randomly"

# target -> (module, tests that concern it, functions to mutate or None for the whole module)
TARGETS = {
    "ubuntu_packages": ("dlrig/gpu/packages.py", "tests/unit/test_ubuntu_packages.py -k 'not resolve_json'", None),
    "firewall": ("dlrig/verify/checks/test_firewall.py", "tests/unit/test_verify_firewall.py", None),
    "report": ("dlrig/verify/report.py", "tests/unit/test_verify.py -k 'summary or a_host_where or one_failure or counts_of'", ("summary",)),
    "torchprobe": ("dlrig/verify/torchprobe.py", "tests/unit/test_verify_gpu.py -k 'verdict or tolerance or zeroed "
                   "or nan or wrong'", ("matmul_tolerance", "matmul_verdict", "amp_verdict", "conv_verdict")),
    "gpu_checks": ("dlrig/verify/checks/test_gpu.py", "tests/unit/test_verify_gpu.py -k 'per_gpu or results'",
                   ("_per_gpu", "_assert_per_gpu")),
    "jupyter": ("dlrig/verify/checks/test_jupyter.py", "tests/unit/test_verify_jupyter.py",
                ("_http_code", "test_jupyterlab_answers_and_wants_credentials")),
    "settings": ("dlrig/engine/settings.py", "tests/unit/test_settings.py tests/unit/test_injection.py", None),
    "ssh_guards": ("roles/ssh.py", "tests/plans/test_remote_plans.py tests/unit/test_remote_roles.py", None),
    "resolver": ("dlrig/gpu/resolver.py", "tests/unit/test_resolver.py tests/unit/test_gpu_table.py", None),
}


def line_ranges(module: str, functions) -> list[str]:
    """'first-last' line ranges of the named top-level functions (found with ast: stable across edits)."""
    import ast

    tree = ast.parse((ROOT / module).read_text())
    found = {n.name: f"{n.lineno}-{n.end_lineno}" for n in tree.body if isinstance(n, ast.FunctionDef)}
    missing = [f for f in functions if f not in found]
    if missing:
        sys.exit(f"{module}: no function {', '.join(missing)}")
    return [found[f] for f in functions]


# Operators left out: swaps to bit-shift/bitwise/modulo/power operators on arithmetic that has none
# of those (they die with the plain arithmetic swaps and only multiply the run time).
EXCLUDE = [r"core/ReplaceBinaryOperator_.*_(RShift|LShift|BitOr|BitAnd|BitXor|Mod|Pow|FloorDiv)$"]


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, text=True, **kw)


def cr(tool: str) -> str:
    return str(Path(sys.executable).parent / tool)


def config(name: str, module: str, tests: str, functions=None) -> Path:
    path = WORK / f"{name}.toml"
    lines = (f"[cosmic-ray.filters.line-filter]\nlines = {{ \"{module}\" = {json.dumps(line_ranges(module, functions))} }}\n"
             if functions else "")
    path.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        "timeout = 60.0\n"
        "excluded-modules = []\n"
        f'test-command = "{PYTEST} {tests}"\n'
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = {json.dumps(EXCLUDE)}\n" + lines)
    return path


def justified() -> dict[str, str]:
    if not JUSTIFIED.exists():
        return {}
    out = {}
    for line in JUSTIFIED.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, why = line.partition("\t")
            out[key] = why
    return out


NOT_SAMPLED = "not sampled"
ANNOTATION = "in a type annotation"


def annotation_spans(module: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions of the type annotations of a module that has `from __future__ import
    annotations`: there they are strings never evaluated, so a mutant inside one changes no behaviour."""
    import ast

    tree = ast.parse((ROOT / module).read_text())
    if not any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
               for n in tree.body):
        return []
    nodes = []
    for n in ast.walk(tree):
        if isinstance(n, ast.arg) and n.annotation is not None:
            nodes.append(n.annotation)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns is not None:
            nodes.append(n.returns)
        elif isinstance(n, ast.AnnAssign):
            nodes.append(n.annotation)
    return [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in nodes]


def skip_annotations(db: Path, module: str) -> int:
    """Mark the mutants inside type annotations as skipped (ANNOTATION): left out of the score."""
    import sqlite3

    spans = annotation_spans(module)
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT job_id, start_pos_row, start_pos_col FROM mutation_specs WHERE job_id NOT IN "
                           "(SELECT job_id FROM work_results)").fetchall()
        inside = [j for j, r, c in rows if any(a <= (r, c) < b for a, b in spans)]
        con.executemany("INSERT INTO work_results (worker_outcome, output, test_outcome, diff, job_id) "
                        "VALUES ('SKIPPED', ?, NULL, NULL, ?)", [(ANNOTATION, j) for j in inside])
    return len(inside)


def sample(db: Path, fraction: float) -> None:
    """Keep a seeded `fraction` of a new session's mutants: the rest get a 'skipped' result marked NOT_SAMPLED
    (left out of the score; --retest leaves them alone, a new session without --sample runs them all)."""
    import random
    import sqlite3

    with sqlite3.connect(db) as con:
        # seeded by the mutant itself (file:line:operator:occurrence), not by cosmic-ray's random job id:
        # the same code and fraction pick the same mutants in every new session
        jobs = con.execute("SELECT job_id, module_path, start_pos_row, operator_name, occurrence FROM mutation_specs "
                           "WHERE job_id NOT IN (SELECT job_id FROM work_results)").fetchall()
        left = [j for j, *key in jobs if random.Random("dlrig:" + ":".join(map(str, key))).random() >= fraction]
        con.executemany("INSERT INTO work_results (worker_outcome, output, test_outcome, diff, job_id) "
                        "VALUES ('SKIPPED', ?, NULL, NULL, ?)", [(NOT_SAMPLED, j) for j in left])


def retest(db: Path) -> int:
    """Forget the stored outcome of every surviving mutant, so the next exec runs them against today's tests."""
    import sqlite3

    with sqlite3.connect(db) as con:
        return con.execute("DELETE FROM work_results WHERE upper(test_outcome) = 'SURVIVED'").rowcount


def exec_until(cfg: Path, db: Path, minutes: float | None) -> None:
    """cosmic-ray exec, stopped with SIGINT (it restores the file it mutated) after `minutes`: the
    mutants not reached stay pending, reported as not run; the session resumes on the next call."""
    import signal

    proc = subprocess.Popen([cr("cosmic-ray"), "exec", str(cfg), str(db)], cwd=ROOT, text=True)
    try:
        proc.wait(timeout=None if minutes is None else minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        print(f"stopped at the {minutes}-minute deadline", file=sys.stderr)
    except BaseException:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise


def run_target(name: str, fraction: float | None = None, again: bool = False, minutes: float | None = None,
               report_only: bool = False) -> dict:
    module, tests, functions = TARGETS[name]
    if run("git", "diff", "--quiet", "--", module).returncode != 0:
        sys.exit(f"{module} has uncommitted changes: commit them first (mutants are undone with git checkout)")
    WORK.mkdir(exist_ok=True)
    # the tests must pass unmutated, or every mutant would count as killed
    if not report_only and run("sh", "-c", f"{PYTEST} {tests}", capture_output=True).returncode != 0:
        sys.exit(f"{name}: `{PYTEST} {tests}` fails without any mutation: fix the tests first")
    cfg, db = config(name, module, tests, functions), WORK / f"{name}.sqlite"
    try:
        if not db.exists():
            run(cr("cosmic-ray"), "init", str(cfg), str(db), check=True)
            run(cr("cr-filter-operators"), str(db), str(cfg), check=True)
            if functions:
                run(cr("cr-filter-lines"), "--config", str(cfg), str(db), check=True)
            skip_annotations(db, module)
            if fraction is not None:
                sample(db, fraction)
        elif again:
            print(f"{name}: {retest(db)} survivor(s) run again")
        if not report_only:
            exec_until(cfg, db, minutes)
    finally:
        run("git", "checkout", "--", module)
    dump = run(cr("cosmic-ray"), "dump", str(db), capture_output=True, check=True).stdout
    total = killed = unsampled = annotated = pending = 0
    survivors = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if item.get("mutations") is None:
            continue
        if result is None:  # not reached before a deadline or an interruption
            pending += 1
            continue
        if result.get("worker_outcome") == "skipped" or result.get("test_outcome") is None:
            unsampled += result.get("output") == NOT_SAMPLED
            annotated += result.get("output") == ANNOTATION
            continue
        total += 1
        if result["test_outcome"] == "survived":
            m = item["mutations"][0]
            survivors.append({"key": f"{m['module_path']}:{m['start_pos'][0]}:{m['operator_name']}:{m['occurrence']}",
                              "diff": (result.get("diff") or "").strip()})
        else:
            killed += 1
    return {"name": name, "module": module + (f" ({', '.join(functions)})" if functions else ""), "tests": tests, "total": total, "killed": killed,
            "unsampled": unsampled, "annotations": annotated, "pending": pending, "survivors": survivors}


def write(results: list[dict]) -> None:
    why = justified()
    lines = ["# Surviving mutants (written by `python3 tools/mutation.py`; cosmic-ray)", ""]
    for r in results:
        score = 100.0 * r["killed"] / r["total"] if r["total"] else 0.0
        lines += [f"## {r['name']}: {r['module']}", f"tests: `{r['tests']}`",
                  f"score: {r['killed']}/{r['total']} killed = {score:.1f}%"
                  + (f" (a random sample: {r['unsampled']} more mutants not run)" if r.get("unsampled") else "")
                  + (f"; {r['pending']} mutants of the sample not reached before the deadline" if r.get("pending") else "")
                  + (f"; {r['annotations']} mutants inside type annotations left out (never evaluated)"
                     if r.get("annotations") else ""), ""]
        for s in r["survivors"]:
            lines += [f"- `{s['key']}`: {why.get(s['key'], 'NOT JUSTIFIED')}", "", "```diff", s["diff"], "```", ""]
    previous = OUT.read_text() if OUT.exists() else ""
    blocks = previous.split("\n## ")
    if previous:  # the hand-written intro above the first target stays
        lines = blocks[0].rstrip("\n").splitlines() + [""] + lines[2:]
    kept = [b for b in blocks[1:] if b.split(":")[0] not in {r["name"] for r in results}]
    OUT.write_text("\n".join(lines) + "".join("\n## " + b for b in kept))


def relabel() -> None:
    """Re-read tools/mutation/justified.tsv into the labels of tools/mutation/survivors.md (no run)."""
    import re

    why = justified()
    OUT.write_text(re.sub(r"^- `([^`]+)`: .*$", lambda m: f"- `{m.group(1)}`: {why.get(m.group(1), 'NOT JUSTIFIED')}",
                          OUT.read_text(), flags=re.M))


def main(argv: list[str]) -> int:
    if "--relabel" in argv:
        relabel()
        return 0
    if "--list" in argv:
        for n, (m, t, f) in TARGETS.items():
            print(f"{n:16} {m:40} {' '.join(f or ['(all)'])}  <- {t}")
        return 0
    fraction = None
    if "--sample" in argv:
        i = argv.index("--sample")
        try:
            fraction = float(argv[i + 1])
            assert 0 < fraction <= 1
        except (IndexError, ValueError, AssertionError):
            print("--sample: give a fraction of the mutants to run, e.g. --sample 0.5", file=sys.stderr)
            return 2
        argv = argv[:i] + argv[i + 2:]
    minutes = None
    if "--deadline" in argv:
        i = argv.index("--deadline")
        try:
            minutes = float(argv[i + 1])
        except (IndexError, ValueError):
            print("--deadline: give minutes per target, e.g. --deadline 15", file=sys.stderr)
            return 2
        argv = argv[:i] + argv[i + 2:]
    names = [a for a in argv if not a.startswith("-")] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown target(s) {', '.join(unknown)}: see --list", file=sys.stderr)
        return 2
    results = []
    for n in names:
        results.append(run_target(n, fraction, "--retest" in argv, minutes, "--report" in argv))
        write(results[-1:])  # after each target: an interrupted run keeps what it measured
    for r in results:
        print(f"{r['name']}: {r['killed']}/{r['total']} killed, {len(r['survivors'])} survived")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
