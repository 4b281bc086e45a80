"""`dlrig init` on this machine. This machine has no GPU and no NTFS disk: `lspci` and `lsblk` are
FAKES here (scripts first on PATH printing a recorded RTX 2070 Super line and an NTFS partition);
everything else (the probe, the resolver, hashing, the written inventory, `dlrig check`) is real."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `lspci -nn` of the reference rig's card (RTX 2070 Super, 10de:1e84), as lspci prints it.
LSPCI = "09:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU104 [GeForce RTX 2070 SUPER] [10de:1e84] (rev a1)"
LSBLK = "0A1B2C3D4E5F6071 ntfs Shared\\x20Data 931.5G"


def _init(tmp_path, *args, stdin="", fakes=True):
    env = dict(os.environ)
    if fakes:
        bin_dir = tmp_path / "fakebin"
        bin_dir.mkdir(exist_ok=True)
        for name, line in (("lspci", LSPCI), ("lsblk", LSBLK)):
            (bin_dir / name).write_text(f"#!/bin/sh\nprintf '%s\\n' '{line}'\n")
            (bin_dir / name).chmod(0o755)
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return subprocess.run([sys.executable, "-m", "dlrig", "init", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, input=stdin, timeout=120)


def test_init_detects_the_gpu_resolves_hashes_the_password_and_notes_ntfs_disks(tmp_path):
    out = tmp_path / "my-rig.py"
    pub = tmp_path / "id_ed25519.pub"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1wYQ8ZbcvJjd2l8kqJ0n0m3dKc0JqSx2c2mFv4yV0a me@laptop\n")
    r = _init(tmp_path, "-o", str(out), "--jupyter-password-stdin", "--authorized-key", str(pub), "--yes",
              stdin="correct horse\n")
    assert r.returncode == 0, r.stderr
    assert "gpu     10de:1e84" in r.stderr and re.search(r"resolve driver \d+ ", r.stderr), r.stderr
    assert "NTFS Shared Data 931.5G UUID 0A1B2C3D4E5F6071" in r.stderr
    text = out.read_text()
    assert "correct horse" not in text
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    (name, data), = runpy.run_path(str(out))["hosts"]
    assert name == "@local"
    from dlrig.engine.passwords import verify_password

    assert verify_password(data["jupyter_password_hash"], "correct horse")
    assert data["ssh_authorized_keys"] == [pub.read_text().strip()]
    assert "cpu_only" not in data
    assert '# "data_disks": [{\'uuid\': \'0A1B2C3D4E5F6071\', \'mount\': \'/mnt/shared-data\', \'fs\': \'ntfs\'}],' in text
    assert "# lspci: 10de:1e84" in text
    check = subprocess.run([sys.executable, "-m", "dlrig", "check", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert check.returncode == 0, check.stderr


def test_init_without_a_gpu_writes_the_cpu_only_profile_and_never_overwrites(tmp_path):
    out = tmp_path / "my-rig.py"
    bin_dir = tmp_path / "nolspci"
    bin_dir.mkdir()
    (bin_dir / "lspci").write_text("#!/bin/sh\nprintf '%s\\n' '00:02.0 VGA compatible controller [0300]: Intel Corporation UHD Graphics [8086:9bc5]'\n")
    (bin_dir / "lspci").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, "-m", "dlrig", "init", "-o", str(out), "--no-jupyter-password",
                        "--no-authorized-key", "--yes"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    (_, data), = runpy.run_path(str(out))["hosts"]
    assert data["cpu_only"] is True and "jupyter_password_hash" not in data
    again = _init(tmp_path, "-o", str(out), "--no-jupyter-password", "--yes")
    assert again.returncode == 2
    assert again.stderr.strip() == f"dlrig: error: --output {out}: exists; choose another file or add --force"


def test_ctrl_c_at_a_prompt_exits_130_and_writes_nothing(tmp_path):
    """A real terminal (a pty): Ctrl-C at init's password prompt is an interruption (exit 130, one
    line), not click's "Aborted!"/exit 1, and no inventory is written."""
    import pty
    import select
    import time

    out = tmp_path / "my-rig.py"
    bin_dir = tmp_path / "fakebin"
    _init(tmp_path, "--help")  # writes the fakes
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execvpe(sys.executable, [sys.executable, "-m", "dlrig", "init", "-o", str(out), "--no-authorized-key"], env)
    seen, deadline = b"", time.monotonic() + 120
    while b"Jupyter password" not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    assert b"Jupyter password" in seen, seen
    os.write(fd, b"\x03")
    while select.select([fd], [], [], 30)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 130, seen
    assert b"interrupted" in seen and b"Aborted!" not in seen, seen
    assert not out.exists()
