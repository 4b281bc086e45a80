"""In the pyinfra child: what a run read, for dlrig's verified no-op (:mod:`dlrig.engine.noop`).

``@dlrig-ssh`` keeps one :class:`Collector` per host (every fact command and the stdout lines
pyinfra got for it) and, when dlrig asked for it (:data:`dlrig.engine.noop.ENV`), an audit hook
notes every local file the run opens for reading (a CA certificate to upload, a lock file, a
template) with its stat, so the record can name them with their digests.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from dlrig.engine.noop import ENV, VERSION, _sha, file_digest, reads_digest, state_dir


_LOCAL_FILES: dict[str, tuple | None] = {}  # path -> its stat when first opened for reading
_WRITTEN: set[str] = set()  # paths the run opened for writing before reading them
_SKIP_PREFIXES = ("/proc/", "/sys/", "/dev/")


def _audit(event: str, args: tuple) -> None:
    """Audit hook: every local regular file opened for reading (a CA certificate to upload, the
    inventory, a lock file) is remembered with its stat at that moment. Python's own modules are
    left out: they are covered by the code digest and the versions."""
    if event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    mode = args[1] if len(args) > 1 else "r"
    flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
    if any(c in mode for c in "wax+") if isinstance(mode, str) else flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        if path not in _LOCAL_FILES:  # made by the run (a fact's scratch file): an output, not an input
            _WRITTEN.add(path)
        return
    if path in _LOCAL_FILES or path.endswith((".pyc", ".so")) or path.startswith(_SKIP_PREFIXES) \
            or path.startswith(_SKIPPED[0]):
        return
    try:
        st = os.stat(path)
    except OSError:
        return
    import stat as STAT

    if STAT.S_ISREG(st.st_mode):
        _LOCAL_FILES[path] = (st.st_size, st.st_mtime_ns, st.st_ino)


def _skipped() -> tuple[str, ...]:
    """Folders whose files are not noted: where Python and its packages live (the software, covered
    by the versions) and dlrig's own code (covered by the code digest)."""
    import site

    from dlrig.engine.noop import code_roots

    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages(),
            *code_roots()}
    return tuple(os.path.join(d, "") for d in dirs if d)


_SKIPPED: list[tuple[str, ...]] = [()]


_HOOKED = [False]


def start_collecting() -> bool:
    """In the pyinfra child, when dlrig asked for it (:data:`ENV`): watch local file reads."""
    if not os.environ.get(ENV):
        return False
    if not _HOOKED[0]:
        _SKIPPED[0] = _skipped()
        sys.addaudithook(_audit)
        _HOOKED[0] = True
    return True


class Collector:
    """Per host, in the child: the fact reads of the run, in order; ``ok`` turns False for good
    when the run did anything the record cannot replay (a read run another way, a failed read, a
    command outside the preparation, a file transfer)."""

    def __init__(self) -> None:
        self.reads: dict[str, list[str]] = {}
        self.ok = True

    def read(self, command: str, lines: list[str]) -> None:
        if self.reads.setdefault(command, list(lines)) != list(lines):
            self.ok = False  # the same read answered two ways in one run: the host changed under it

    def spoil(self) -> None:
        self.ok = False

    def write(self, host: str) -> None:
        out = os.environ.get(ENV)
        if not out:
            return
        from dlrig.engine.factbatch import record_dir

        own = (str(state_dir()) + os.sep, str(record_dir()) + os.sep)  # dlrig's own records
        files = {}
        for path, st in sorted(_LOCAL_FILES.items()):
            if path.startswith(own) or path in _WRITTEN:
                continue
            try:
                now = os.stat(path)
            except OSError:
                now = None
            if now is None or (now.st_size, now.st_mtime_ns, now.st_ino) != st:  # changed while read
                self.ok = False
                break
            files[path] = file_digest(path)
        payload = {"v": VERSION, "ok": self.ok, "commands": list(self.reads),
                   "outputs": reads_digest(list(self.reads.items())), "files": files}
        try:
            Path(out, _sha(host.encode())[:32] + ".json").write_text(json.dumps(payload))
        except OSError:
            pass
