"""``dlrig verify``: run the shipped testinfra checks (``dlrig/verify/checks``) against hosts, summarise.

For each host, one pytest subprocess runs over the checks directory with testinfra's
``--hosts`` (``paramiko://user@host:port?ssh_identity_file=KEY&ssh_config=FILE`` built from the
inventory's ``ssh_*`` data, or ``local://`` for ``--local``) and our small plugin
(:mod:`dlrig.verify.plugin`) writing one JSON line per result. The host's effective settings,
the roles whose checks run and the interpreter to test torch with travel to the checks'
``conftest.py`` in a JSON *context* file named by ``DLRIG_VERIFY_CONTEXT``.

Results become :class:`CheckResult` rows: check, host, result, reason, hint, info; printed as a
table, ``--json`` or JUnit XML by :mod:`dlrig.verify.report`. Exit 0 only when nothing failed (skips are not failures).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from dlrig.engine import sudopass
from dlrig.verify import sudopw
from dlrig.verify.hints import split_message

CHECKS_DIR = Path(__file__).resolve().parent / "checks"
CONTEXT_ENV = "DLRIG_VERIFY_CONTEXT"
RESULTS_ENV = "DLRIG_VERIFY_RESULTS"

#: Check modules named after something other than a role: ``test_gpu.py`` checks the GPU stack,
#: which the nvidia_driver role installs.
MODULE_ROLE = {"gpu": "nvidia_driver"}
#: Roles that a cpu_only rig does not have (their checks do not run there).
GPU_ROLES = ("nvidia_driver", "cuda", "cudnn")
#: Seconds one host's checks may take (a stuck SSH command must not hang verify forever).
HOST_TIMEOUT = 1800

PASSED, FAILED, SKIPPED, ERROR = "passed", "failed", "skipped", "error"


# ------------------------------------------------------------------------------- context

@dataclass
class CheckContext:
    """What the checks of one host need to know (written by verify, read by checks/conftest.py)."""

    host: str
    settings: dict[str, Any]
    roles: list[str]  # roles whose checks run on this host
    python: str | None = None  # --python PATH (None: the default, see default_python)
    login_user: str | None = None  # who we connect as (for the default conda prefix)

    @property
    def cpu_only(self) -> bool:
        return bool(self.settings.get("cpu_only"))

    def runs(self, role: str) -> bool:
        return role in self.roles

    def dump(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), default=_jsonable, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CheckContext":
        return cls(**json.loads(Path(path).read_text()))

    @classmethod
    def from_env(cls) -> "CheckContext":
        """The context verify wrote; without one (plain ``pytest dlrig/verify/checks``): all defaults."""
        path = os.environ.get(CONTEXT_ENV)
        if path:
            return cls.load(path)
        from dlrig.engine.preflight import effective_data

        settings = effective_data({})
        return cls("default", settings, selected_roles(settings))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def module_role(stem: str) -> str:
    """``test_ssh`` -> ``ssh``; ``test_gpu`` -> ``nvidia_driver``."""
    name = stem.removeprefix("test_")
    return MODULE_ROLE.get(name, name)


def check_roles() -> list[str]:
    """Roles that have shipped checks (from the files in dlrig/verify/checks)."""
    return sorted({module_role(p.stem) for p in CHECKS_DIR.glob("test_*.py")})


def known_roles() -> list[str]:
    from dlrig.engine.catalogue import ORDER

    return list(ORDER) + [r for r in check_roles() if r not in ORDER]


def parse_role_list(value: str | list | None) -> list[str] | None:
    """``--roles a,b`` for verify: dlrig roles, plus ``gpu`` for the GPU checks; None: all."""
    if value is None or value == "" or value == []:
        return None
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    names = [MODULE_ROLE.get(n, n) for n in names if n]
    unknown = [n for n in names if n not in known_roles()]
    if unknown:
        raise KeyError(f"unknown role(s) {', '.join(unknown)}; known: {', '.join(known_roles())}, gpu")
    return names


def selected_roles(settings: dict[str, Any], only: list[str] | None = None) -> list[str]:
    """The roles whose checks run on a host: its ``dlrig_roles`` (None: every role, including
    roles that ship checks but are not in ORDER yet), cut to ``only`` (``--roles``); a
    ``cpu_only`` host keeps ``nvidia_driver`` so its GPU checks show as skipped, not hidden."""
    from dlrig.engine.catalogue import ORDER

    wanted = settings.get("dlrig_roles")
    roles = list(wanted) if wanted else list(ORDER) + [r for r in check_roles() if r not in ORDER]
    if only is not None:
        roles = [r for r in only if r in roles or not wanted]
    if settings.get("cpu_only"):
        roles = [r for r in roles if r not in GPU_ROLES or r == "nvidia_driver"]
    return list(dict.fromkeys(roles))


def default_python(settings: dict[str, Any], login_user: str | None) -> str:
    """The interpreter torch is checked with: the conda env's python when the conda/pytorch
    settings exist (``conda_prefix``/``env_name``), else ``python3``."""
    env_name = settings.get("env_name")
    if not env_name or "conda_prefix" not in settings and "env_name" not in settings:
        return "python3"
    user = settings.get("workstation_user") or login_user or "root"
    from dlrig.engine import pyenv

    return pyenv.env_python(pyenv.conda_prefix(settings, user), env_name)


# ------------------------------------------------------------------------------- targets

@dataclass
class Target:
    """One host to verify: how testinfra reaches it and the settings its checks read."""

    name: str
    spec: str  # testinfra host spec
    data: dict[str, Any]
    sudo: bool = False
    login_user: str | None = None
    ssh_config: str | None = None  # a file we wrote (removed after the run)
    display: str = ""  # user@host:port, for messages

    def __post_init__(self) -> None:
        self.display = self.display or self.name


def _truthy_no(value: Any) -> bool:
    return value is False or str(value).lower() in ("no", "off", "false", "accept-new")


def ssh_config_text(data: dict[str, Any]) -> str:
    """An ssh_config for testinfra's paramiko backend from pyinfra ``ssh_*`` data."""
    lines = ["Host *"]
    if _truthy_no(data.get("ssh_strict_host_key_checking", "yes")) or data.get("ssh_known_hosts_file") == "/dev/null":
        lines.append("    StrictHostKeyChecking no")
    return "\n".join(lines) + "\n"


def ssh_target(name: str, data: dict[str, Any], workdir: Path) -> Target:
    """A testinfra paramiko target from a pyinfra inventory host's data."""
    if name.startswith("@local"):
        return local_target(name, data, sudo=bool(data.get("_sudo")))
    hostname = data.get("ssh_hostname") or name
    user = data.get("ssh_user")
    port = int(data.get("ssh_port") or 22)
    cfg = workdir / f"ssh_config-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
    cfg.write_text(ssh_config_text(data))
    query = [f"ssh_config={quote(str(cfg), safe='/')}"]
    if data.get("ssh_key"):
        query.insert(0, f"ssh_identity_file={quote(os.path.expanduser(str(data['ssh_key'])), safe='/')}")
    auth = ""
    if user:
        auth = quote(str(user), safe="")
        if data.get("ssh_password"):
            auth += ":" + quote(str(data["ssh_password"]), safe="")
        auth += "@"
    host = f"[{hostname}]" if ":" in str(hostname) else str(hostname)
    spec = f"paramiko://{auth}{host}:{port}?" + "&".join(query)
    display = f"{user + '@' if user else ''}{hostname}:{port}"
    return Target(name, spec, data, sudo=bool(data.get("_sudo")), login_user=user,
                  ssh_config=str(cfg), display=display)


def local_target(name: str, data: dict[str, Any], sudo: bool = False) -> Target:
    import getpass

    return Target(name, "local://", data, sudo=sudo and os.geteuid() != 0, login_user=getpass.getuser(),
                  display="this machine")


# ------------------------------------------------------------------------------- results

@dataclass
class CheckResult:
    host: str
    check: str  # role::name[params]
    result: str  # passed failed skipped error
    reason: str = ""
    hint: str = ""
    info: str = ""
    role: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result in (PASSED, SKIPPED)


def check_name(module: str, name: str) -> str:
    """``test_gpu``, ``test_nvidia_smi_lists_gpus`` -> ``gpu::nvidia_smi_lists_gpus``."""
    return f"{module.removeprefix('test_')}::{name.removeprefix('test_')}"


def parse_results(host: str, lines: Iterable[str]) -> list[CheckResult]:
    """The plugin's JSON lines -> results (reason and hint split from ``reason -> HINT: hint``)."""
    out = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        outcome = rec.get("outcome", ERROR)
        message = rec.get("message") or ""
        props = rec.get("properties") or {}
        reason, hint = split_message(message)
        if outcome == PASSED:
            reason = ""
        hint = props.get("hint") or hint
        out.append(CheckResult(
            host=host,
            check=check_name(rec.get("module", "?"), rec.get("name", "?")),
            result=outcome if outcome in (PASSED, FAILED, SKIPPED, ERROR) else ERROR,
            reason=reason,
            hint=hint,
            info=str(props.get("info") or ""),
            role=module_role(rec.get("module", "")),
            duration=float(rec.get("duration") or 0),
        ))
    return out


# ------------------------------------------------------------------------------- running

def pytest_command(target: Target, ini: Path) -> list[str]:
    from dlrig.engine.launch import python_module

    cmd = [
        *python_module("pytest"), str(CHECKS_DIR),
        "-p", "dlrig.verify.plugin", "-p", "no:cacheprovider", "-p", "no:benchmark",
        "-c", str(ini), "--rootdir", str(CHECKS_DIR), "--confcutdir", str(CHECKS_DIR),
        "-q", "--no-header", "-rN", "--tb=no", "-o", "console_output_style=classic",
        f"--hosts={target.spec}",
    ]
    if target.sudo:
        cmd.append("--sudo")
    return cmd


def sudo_password(target: Target) -> str | None:
    """The password sudo asks for on ``target`` (dlrig.engine.sudopass), when its checks use sudo."""
    return sudopass.password_for(target.data) if target.sudo else None


def probe(target: Target) -> str | None:
    """None when the host answers (and sudo works, if used); else one line: what and the fix."""
    import testinfra

    try:
        from dlrig.verify.plugin import nodelay

        host = testinfra.get_host(target.spec, sudo=False)
        nodelay(host)
        res = host.run("true")
        if res.rc != 0:
            return f"cannot run commands on {target.display}: exit {res.rc}: {res.stderr.strip()[:200]}"
        password = sudo_password(target)
        if password:
            sudo_host = testinfra.get_host(target.spec, sudo=True)
            sudopw.give(sudo_host, password)
            if sudo_host.run("true").rc != 0:
                return sudopass.refused_message(target.display, target.data).replace("nothing was changed",
                                                                                    "no check ran")
        elif target.sudo:
            res = host.run("sudo -n true")
            if res.rc != 0:
                return (f"sudo needs a password on {target.display} ({res.stderr.strip()[:120]}): set "
                        f"{sudopass.ENV} or use --sudo-password-prompt (or give the login user passwordless "
                        "sudo, or remove _sudo from the inventory)")
    except Exception as e:  # paramiko raises many kinds; the user needs one line
        text = " ".join(str(e).split()) or type(e).__name__
        return (f"cannot connect to {target.display}: {type(e).__name__}: {text[:200]}; check ssh_hostname, "
                "ssh_port, ssh_user and ssh_key in the inventory")
    return None


def run_target(target: Target, context: CheckContext, workdir: Path,
               timeout: float = HOST_TIMEOUT) -> list[CheckResult]:
    """Run every selected check on one host; never raises for a host-side problem."""
    problem = probe(target)
    if problem:
        return [CheckResult(target.name, "connect", ERROR, problem,
                            "fix the connection, then run dlrig verify again")]
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", target.name)
    ctx_file = context.dump(workdir / f"context-{slug}.json")
    results_file = workdir / f"results-{slug}.jsonl"
    results_file.write_text("")
    ini = workdir / "pytest.ini"
    if not ini.exists():
        ini.write_text("[pytest]\naddopts =\n")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env[CONTEXT_ENV] = str(ctx_file)
    env[RESULTS_ENV] = str(results_file)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop(sudopass.ENV, None)
    password = sudo_password(target)
    if password:  # to the plugin (dlrig.verify.sudopw), in the environment: on no command line
        env[sudopass.ENV] = password
    try:
        proc = subprocess.run(pytest_command(target, ini), capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=workdir)
    except subprocess.TimeoutExpired:
        results = parse_results(target.name, results_file.read_text().splitlines())
        return results + [CheckResult(target.name, "(timeout)", ERROR,
                                      f"checks did not finish within {timeout:.0f} s",
                                      "a command on the host hangs: run the checks with -v to see which")]
    results = parse_results(target.name, results_file.read_text().splitlines())
    # pytest exit codes: 0 ok, 1 tests failed, 5 nothing collected; anything else is our problem
    if proc.returncode not in (0, 1, 5) or (proc.returncode == 1 and not any(not r.ok for r in results)):
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
        results.append(CheckResult(target.name, "(runner)", ERROR,
                                   f"pytest exit {proc.returncode}: " + " | ".join(tail)[-600:],
                                   "a bug in a shipped check or its fixtures: report it with this line"))
    if not results:
        results.append(CheckResult(target.name, "(none)", SKIPPED, "no checks selected for this host"))
    return results


def verify_targets(targets: list[Target], contexts: dict[str, CheckContext],
                   jobs: int = 8) -> list[CheckResult]:
    """Run every host's checks (hosts in parallel) and return the results in target order."""
    with tempfile.TemporaryDirectory(prefix="dlrig-verify-") as tmp:
        workdir = Path(tmp)

        def one(t: Target) -> list[CheckResult]:
            try:
                return run_target(t, contexts[t.name], workdir)
            except Exception as e:  # never crash the whole run for one host
                return [CheckResult(t.name, "(runner)", ERROR, f"{type(e).__name__}: {e}",
                                    "a bug in dlrig verify: report it with this line")]

        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(targets)))) as pool:
            per_host = list(pool.map(one, targets))
    return [r for rs in per_host for r in rs]


def shell_quote(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


__all__ = [
    "CHECKS_DIR", "CheckContext", "CheckResult", "Target", "check_name", "default_python",
    "local_target", "module_role", "parse_results", "parse_role_list",
    "run_target", "selected_roles", "ssh_target", "verify_targets",
]
