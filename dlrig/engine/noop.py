"""The verified no-op: a re-run that changes nothing, answered in one SSH command without pyinfra.

pyinfra decides what to change from two things only: what it is given (dlrig's code, roles and
templates, pyinfra itself, the host's data and the command's options, local files such as a CA
certificate to upload) and what it reads on the host (facts). With both the same, it plans the same.

So after a run in which a host showed **no change** (plan: no change and none conditional; apply:
every operation unchanged, none failed), dlrig keeps a record of that host (:func:`record_path`,
``$XDG_STATE_HOME/dlrig/noop``): a digest of those inputs (:func:`inputs_digest`), the local files
the run read with their digests, and the exact command lines of every fact the run read with a
digest of their outputs. The pyinfra child writes the part only it knows (``@dlrig-ssh``:
:class:`dlrig.engine.noopread.Collector`, into :data:`ENV`'s folder); dlrig adds the inputs after
the run (:func:`recording`).

On the next ``plan``/``apply`` of that host (:func:`check`), dlrig, in its own process and without
importing pyinfra, compares the inputs and local files, connects once (the connection the apply
lock makes, TCP_NODELAY) and runs every recorded fact command in one SSH command
(:func:`dlrig.engine.factbatch.batch_script`, the batch the connector already uses). When every read
succeeds and the outputs hash to the recorded digest, pyinfra would read the same facts, plan the
same operations and find nothing to change: the host is reported converged with the recorded
operation count. Anything else (no record, other inputs, a changed local file or fact output, a
failed read, no connection, a non-SSH host) is a miss, and the host goes through pyinfra as always.
For ``apply`` the reads run holding the host's apply lock (``flock -n``, never waiting): a host
that another apply is changing is a miss too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "DLRIG_NOOP_OUT"  # the folder where the pyinfra child writes what it read, per host
VERSION = 1  # of the record's format and of what goes into its digests


def state_dir() -> Path:
    """``$XDG_STATE_HOME/dlrig/noop`` (default ``~/.local/state/dlrig/noop``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dlrig" / "noop"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def host_key(name: str, data: dict[str, Any]) -> str:
    """What identifies a host's connection: its name, address, port and login."""
    ident = [name, data.get("ssh_hostname"), data.get("ssh_port"), data.get("ssh_user")]
    return _sha("\0".join(map(str, ident)).encode())[:32]


def record_path(name: str, data: dict[str, Any], mode: str) -> Path:
    return state_dir() / f"{host_key(name, data)}-{mode}.json"


# --- what shapes the deploy, on this machine ----------------------------------------------------

def code_roots() -> list[str]:
    """The folders of the dlrig package, its roles, deploys and templates (in a checkout: dlrig/,
    roles/, deploys/, templates/)."""
    import importlib.util

    found: list[str] = []
    for pkg in ("dlrig", "dlrig.roles", "dlrig.deploys"):
        spec = importlib.util.find_spec(pkg)
        found += [os.path.realpath(loc) for loc in (spec.submodule_search_locations if spec else None) or []]
        if pkg == "dlrig.roles":  # templates/ is roles/'s sibling (dlrig.roles.TEMPLATES)
            found += [os.path.join(os.path.dirname(loc), "templates") for loc in found[-1:]]
    roots: list[str] = []
    for loc in sorted(found, key=len):
        if os.path.isdir(loc) and not any(loc == r or loc.startswith(r + os.sep) for r in roots):
            roots.append(loc)
    return roots


def code_digest() -> str:
    """sha256 over every file of the dlrig package, its roles, deploys and templates (paths and
    contents), with the versions of dlrig, pyinfra and Python."""
    from importlib.metadata import PackageNotFoundError, version

    roots = code_roots()
    h = hashlib.sha256()
    for pkg in ("dlrig", "pyinfra", "paramiko"):
        try:
            h.update(f"{pkg} {version(pkg)}\n".encode())
        except PackageNotFoundError:
            h.update(f"{pkg} -\n".encode())
    h.update(sys.version.encode())
    for root in sorted(roots):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                if f.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(dirpath, f)
                with open(path, "rb") as fh:
                    h.update(f"{os.path.relpath(path, root)}\0".encode() + fh.read() + b"\0")
    return h.hexdigest()


def _environment() -> dict[str, str]:
    """The controller's environment variables that pyinfra or dlrig read."""
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith(("PYINFRA", "DLRIG")) and k != ENV and k != "DLRIG_SUDO_PASSWORD"}


def inputs_digest(code: str, name: str, data: dict[str, Any], pyinfra_data: dict[str, Any], mode: str) -> str:
    """One digest of what is given to pyinfra for this host: code, host data, options, mode.

    Not the host's groups: a group shapes a plan only through its data (group data is in ``data``)
    or through code that reads ``host.groups``, which no role or deploy does
    (tests/unit/test_noop.py guards it). pyinfra names a group after the inventory file, so with the
    groups in, the same host in two inventories (one.py, four.py) kept replacing its record and
    never hit."""
    payload = {"v": VERSION, "code": code, "host": name, "data": data,
               "options": pyinfra_data, "mode": mode, "env": _environment()}
    return _sha(json.dumps(payload, sort_keys=True, default=repr).encode())


def file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return _sha(fh.read())
    except OSError:
        return None


def reads_digest(reads: list[tuple[str, list[str]]]) -> str:
    """The digest of fact reads: each command line with the stdout lines pyinfra got for it."""
    return _sha(json.dumps(reads, separators=(",", ":")).encode())


# --- in dlrig's process: keep a record after a run that changed nothing ---------------------------

def promote(out_dir: str, name: str, data: dict[str, Any], mode: str, inputs: str, report: Any) -> bool:
    """Turn the child's account of host ``name`` into its record, with ``report`` (what the command
    printed for the host: apply's operation count, plan's conditional steps); False (and no record)
    when the child wrote none or found the run not replayable."""
    path = record_path(name, data, mode)
    try:
        got = json.loads(Path(out_dir, _sha(name.encode())[:32] + ".json").read_text())
    except (OSError, ValueError):
        got = None
    if not isinstance(got, dict) or got.get("v") != VERSION or not got.get("ok") or not got.get("commands"):
        forget(name, data, mode)
        return False
    record = {"v": VERSION, "inputs": inputs, "commands": got["commands"], "outputs": got["outputs"],
              "files": got["files"], "report": report}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # commands name paths on the host
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def forget(name: str, data: dict[str, Any], mode: str) -> None:
    try:
        record_path(name, data, mode).unlink()
    except OSError:
        pass


# --- in dlrig's process: the check ----------------------------------------------------------------

HIT_NOTE = "unchanged since its last {mode} that changed nothing"


@dataclass
class Hit:
    host: str
    report: Any  # what the recorded run reported for the host (see :func:`promote`)
    reads: int  # the fact reads replayed


def ssh_host(name: str) -> bool:
    """Hosts reached over SSH by pyinfra: plain names, ``@ssh/``, ``@dlrig-ssh/``."""
    return not name.startswith("@") or name.startswith(("@ssh/", "@dlrig-ssh/"))


def load(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("v") != VERSION or not isinstance(record.get("commands"), list):
        return None
    return record


# The apply lock's file (dlrig.engine.applylock.LOCK_FILE), taken without waiting while the
# reads run: a host another apply holds is a miss (that apply is changing it).
def _locked(script: str, lock_file: str) -> str:
    import shlex

    return f"exec flock -n {shlex.quote(lock_file)} sh -c {shlex.quote(script)}"


def check_one(h, record: dict, *, hold_lock: bool, connect=None, lock_file: str | None = None) -> Hit | None:
    """Replay one host's recorded reads; a :class:`Hit` when each succeeds with the recorded output.
    ``connect(h)``: a connected paramiko client (default: as the apply lock connects)."""
    from dlrig.engine import factbatch

    commands = record["commands"]
    script, marker = factbatch.batch_script(commands)
    if hold_lock:
        if lock_file is None:
            from dlrig.engine.applylock import LOCK_FILE as lock_file
        script = _locked(script, lock_file)
    if connect is None:
        from dlrig.engine.applylock import _connect_ssh as connect
    client = connect(h)
    try:
        _, stdout, _ = client.exec_command(script, timeout=factbatch.TIMEOUT)
        stdout.channel.shutdown_write()
        raw = stdout.read()
        rc = stdout.channel.recv_exit_status()
    finally:
        client.close()
    if rc != 0:
        return None
    answers = factbatch.parse_batch(raw.decode("utf-8", "replace").split("\n"), commands, marker)
    if len(answers) != len(set(commands)):  # a read failed, or the batch stopped short
        return None
    reads = [(c, answers[c]) for c in commands]
    if reads_digest(reads) != record["outputs"]:
        return None
    return Hit(h.name, record.get("report"), len(commands))


def check(hosts: list, mode: str, pyinfra_data: dict[str, Any], connect=None) -> dict[str, Hit]:
    """{host name: Hit} for the hosts whose recorded no-op still holds; the rest are left out.
    ``mode``: "plan" or "apply"; never raises (a host that cannot be checked is a miss)."""
    candidates = []
    code = None
    for h in hosts:
        if not ssh_host(h.name):
            continue
        record = load(record_path(h.name, h.data, mode))
        if record is None:
            continue
        if code is None:
            code = code_digest()
        if inputs_digest(code, h.name, h.data, pyinfra_data, mode) != record.get("inputs"):
            continue
        if any(file_digest(p) != d for p, d in (record.get("files") or {}).items()):
            continue
        candidates.append((h, record))
    if not candidates:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    def one(item):
        h, record = item
        try:
            return check_one(h, record, hold_lock=(mode == "apply"), connect=connect)
        except Exception:  # noqa: BLE001 (no connection, a timeout: the full run reports it)
            return None

    with ThreadPoolExecutor(max_workers=min(16, len(candidates))) as pool:
        hits = list(pool.map(one, candidates))
    return {hit.host: hit for hit in hits if hit is not None}


def remember(out_dir: str, hosts: list, mode: str, pyinfra_data: dict[str, Any], converged: dict[str, Any]) -> None:
    """After a run through pyinfra: a record for each host in ``converged`` ({name: its report});
    the records of the run's other hosts go (they changed or failed)."""
    code = None
    for h in hosts:
        if not ssh_host(h.name):
            continue
        if h.name not in converged:
            forget(h.name, h.data, mode)
            continue
        if code is None:
            code = code_digest()
        promote(out_dir, h.name, h.data, mode,
                inputs_digest(code, h.name, h.data, pyinfra_data, mode), converged[h.name])


@contextlib.contextmanager
def recording(hosts: list, mode: str, pyinfra_data: dict[str, Any]):
    """Around a pyinfra run on ``hosts``: its children report what they read (:data:`ENV`); yields a
    dict the caller fills with {host: report} for the hosts that came out with no change, whose
    records are then written (:func:`remember`)."""
    import tempfile

    converged: dict[str, Any] = {}
    old = os.environ.get(ENV)
    with tempfile.TemporaryDirectory(prefix="dlrig-noop-") as out:
        os.environ[ENV] = out
        try:
            yield converged
        finally:
            if old is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = old
        remember(out, hosts, mode, pyinfra_data, converged)
