"""verify --local --sudo with a password (dlrig.verify.sudopw) on testinfra's local backend.

FAKE: ``sudo`` here is a script put first on PATH that records its arguments and what it read on
stdin, then runs the command: this machine's tests run as root, where the real sudo never asks.
The SSH backend is proven with the real sudo in tests/hosts/test_sudo_password_hosts.py."""

from __future__ import annotations

import os
import stat

import testinfra

from dlrig.verify import sudopw

FAKE_SUDO = """#!/bin/sh
printf '%s\\n' "$*" > "$SUDO_LOG"
if [ "$1" = -k ] && [ "$2" = -S ]; then IFS= read -r pw; printf 'password=%s\\n' "$pw" >> "$SUDO_LOG"; fi
while [ "$1" != /bin/sh ]; do shift; done
exec "$@"
"""


def _fake_sudo(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sudo = bin_dir / "sudo"
    sudo.write_text(FAKE_SUDO)
    sudo.chmod(sudo.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SUDO_LOG", str(tmp_path / "sudo.log"))
    return tmp_path / "sudo.log"


def test_the_password_goes_to_sudo_on_stdin_and_the_command_gets_none(tmp_path, monkeypatch):
    log = _fake_sudo(tmp_path, monkeypatch)
    host = testinfra.get_host("local://", sudo=True)
    sudopw.give(host, "pw with spaces")
    r = host.run("echo ran; cat")  # cat: the command's stdin is empty (sudo took the only line)
    assert r.rc == 0 and r.stdout == "ran\n"
    args, read = log.read_text().splitlines()
    assert args.startswith("-k -S -p  /bin/sh -c ") and "pw with spaces" not in args
    assert read == "password=pw with spaces"


def test_without_a_password_or_without_sudo_testinfra_is_unchanged(tmp_path, monkeypatch):
    log = _fake_sudo(tmp_path, monkeypatch)
    host = testinfra.get_host("local://?sudo=true", sudo=True)
    assert host.run("true").rc == 0
    assert log.read_text().startswith("/bin/sh -c ")  # testinfra's own `sudo /bin/sh -c CMD`
    plain = testinfra.get_host("local://")
    sudopw.give(plain, "pw")
    log.unlink()
    assert plain.run("echo hi").stdout == "hi\n" and not log.exists()  # no sudo at all
