"""No orphaned qemu: a VM's qemu (real qemu-system-x86_64, its own process group) ends with the
process that started it, however that process ends: a signal (``timeout``'s SIGTERM, SIGKILL),
or an exit that never called ``stop()``; and ``stop()`` ends the whole group.

Real: qemu, the VM class's own launch path (watcher thread, ``setpriv --pdeathsig``), the kernel's
process groups. The disk is a blank qcow2 (nothing to boot: SeaBIOS waits), so no boot is timed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dlrig.testing import vm as VMMOD

pytestmark = pytest.mark.vm

#: a child Python that powers on a VM (blank disk), prints qemu's pid, then ends as told
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dlrig.testing.vm import VM
    d = Path(sys.argv[1])
    v = VM(name="orphan-test", address="127.0.0.1", key_path=d / "none", root=d, hostdir=d,
           port=1, disk=d / "disk.qcow2", forwards={})
    v._power_on()
    print(v.pid, flush=True)
    if sys.argv[2] == "exit":
        sys.stdin.readline()  # told to go on
        sys.exit(0)  # never calls v.stop()
    if sys.argv[2] == "stop":
        v.stop()
        print("stopped", flush=True)
    time.sleep(600)
""")


def _group(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(d.name))
    return found


def _gone(pgid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while _group(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL", "exit", "stop"])
def test_qemu_process_group_ends_with_the_process_that_started_it(how, tmp_path):
    reason = VMMOD.missing_requirements()
    if reason:
        pytest.skip(f"VMs unavailable: {reason}")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "disk.qcow2"), "16M"], check=True)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), how], stdout=subprocess.PIPE,
                             stdin=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        qemu = int(child.stdout.readline())
        deadline = time.monotonic() + 20
        while not (cmdline := Path(f"/proc/{qemu}/cmdline").read_bytes().split(b"\0"))[0].endswith(
                b"qemu-system-x86_64"):  # setpriv exec's qemu in place (same pid)
            assert time.monotonic() < deadline, cmdline
            time.sleep(0.1)
        assert os.getpgid(qemu) == qemu  # its own process group
        if how == "stop":
            assert child.stdout.readline().strip() == "stopped"
            assert _gone(qemu), f"stop() left {_group(qemu)}"
            return
        time.sleep(1)
        assert _group(qemu) == [qemu]  # running until the child ends
        if how == "exit":
            child.stdin.write("go\n")
            child.stdin.flush()
        else:
            child.send_signal(getattr(signal, how))
        child.wait(timeout=30)
        assert _gone(qemu), f"qemu group {qemu} outlived its parent ({how}): {_group(qemu)}"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pid in _group(qemu) if "qemu" in dir() else ():
            os.kill(pid, signal.SIGKILL)
