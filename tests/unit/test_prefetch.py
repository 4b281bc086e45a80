"""Background downloads (dlrig.engine.prefetch) run by a real /bin/sh with real curl and a real HTTP
server on 127.0.0.1, and the conda role's install step joining them.

The one FAKE: the SSH connection. On a host the watchdog ties itself to the nearest ``sshd``
ancestor of the start command; here that ancestor is a copy of /bin/sh named ``sshd`` that runs
the start command and then waits on its stdin. Closing its stdin ends it, as a dropped
connection ends sshd's session process (tests/hosts/test_prefetch_hosts.py does it with real
sshd and a real interrupted ``dlrig apply``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dlrig.engine import download, prefetch
from dlrig.roles import conda
from tests.fixtures.pyindex import serve

INSTALLER = b'#!/bin/sh\n# a stand-in installer: -b -p PREFIX\nmkdir -p "$3/conda-meta"; echo ran > "$3/ran"\n'


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "installer.sh").write_bytes(INSTALLER)
    (root / "big.bin").write_bytes(os.urandom(1 << 20))
    return root


class Connection:
    """The fake sshd session process: runs ``script`` (the start command) and stays until closed."""

    def __init__(self, tmp_path: Path, script: str, env: dict) -> None:
        sshd = tmp_path / "sshd"
        shutil.copy("/bin/sh", sshd)
        self.proc = subprocess.Popen([str(sshd), "-c", 'sh -c "$START"; echo started; read x'],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**env, "START": script})
        self.out = ""
        for line in self.proc.stdout:
            self.out += line
            if line.strip() == "started":
                break

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def env_for(tmp_path: Path, fetcher: str = "curl") -> dict:
    """TMPDIR in tmp_path; ``fetcher`` "python3": a PATH without curl and wget (a minimal Debian)."""
    (tmp_path / "t").mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp_path / "t")}
    if fetcher == "python3":
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for d in os.environ["PATH"].split(os.pathsep)[::-1]:
            for tool in Path(d).glob("*") if Path(d).is_dir() else []:
                if tool.name not in ("curl", "wget") and os.access(tool, os.X_OK) and not tool.is_dir():
                    link = bin_dir / tool.name
                    link.unlink(missing_ok=True)
                    link.symlink_to(tool)
        env["PATH"] = str(bin_dir)
    return env


def spool_path(tmp_path: Path, key: str = "k1") -> Path:
    return tmp_path / "t" / f"dlrig-miniforge.prefetch-{key}"


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def gone_within(paths_or_pids, seconds: float = 8.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not any(alive(x) if isinstance(x, int) else x.exists() for x in paths_or_pids):
            return True
        time.sleep(0.2)
    return False


def sh(script: str, env: dict, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env, timeout=timeout)


def join(spool: str, env: dict, what: str = "the thing") -> subprocess.CompletedProcess:
    return sh("set -eu; tmp=$(mktemp -d); " + prefetch.join_script(spool, '"$tmp/got"', what)
              + '\n[ -f "$tmp/got" ] && sha256sum "$tmp/got" || echo NOTHING; rm -rf "$tmp"', env)


@pytest.mark.parametrize("fetcher", ["curl", "python3"])
def test_started_download_is_joined_and_nothing_is_left(tmp_path, site, fetcher):
    env = env_for(tmp_path, fetcher)
    spool = prefetch.spool("miniforge", "k1")
    with serve(site) as url:
        conn = Connection(tmp_path, prefetch.start_command(f"{url}/big.bin", spool), env)
        assert "in the background (watchdog" in conn.out, conn.out
        watchdog = int((spool_path(tmp_path) / "pid").read_text())
        assert alive(watchdog)
        r = join(spool, env)
        conn.close()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == hashlib.sha256((site / "big.bin").read_bytes()).hexdigest()
    assert gone_within([watchdog, spool_path(tmp_path)]), "watchdog or spool left behind"


@pytest.mark.parametrize("fetcher,rc,message", [
    ("curl", 22, "curl: (22) The requested URL returned error: 404"),  # curl -f's status for an HTTP error
    ("python3", 1, "dlrig: downloading {url}/missing.sh failed: HTTP Error 404"),
])
def test_a_failed_background_download_is_reported_with_the_downloaders_message_and_status(
        tmp_path, site, fetcher, rc, message):
    env = env_for(tmp_path, fetcher)
    spool = prefetch.spool("miniforge", "k1")
    with serve(site) as url:
        conn = Connection(tmp_path, prefetch.start_command(f"{url}/missing.sh", spool), env)
        r = join(spool, env, what=f"{url}/missing.sh")
        conn.close()
    assert r.returncode == rc, (r.returncode, r.stderr)
    assert message.format(url=url) in r.stderr
    assert f"dlrig: downloading {url}/missing.sh (started in the background) failed (exit {rc})" in r.stderr
    assert "NOTHING" not in r.stdout and not spool_path(tmp_path).exists()


def test_a_dropped_connection_kills_the_download_and_removes_the_spool(tmp_path, site):
    env = env_for(tmp_path)
    spool = prefetch.spool("miniforge", "k1")
    with serve(site, delay=0.5) as url:  # 16 pieces, 0.5 s apart: still running when the connection drops
        conn = Connection(tmp_path, prefetch.start_command(f"{url}/big.bin", spool), env)
        watchdog = int((spool_path(tmp_path) / "pid").read_text())
        time.sleep(1.5)
        children = subprocess.run(["pgrep", "-P", str(watchdog)], capture_output=True, text=True).stdout.split()
        fetchers = [int(p) for p in children if Path(f"/proc/{p}/comm").read_text().strip() == "curl"]
        assert fetchers, "no curl under the watchdog"
        assert (spool_path(tmp_path) / "file.part").exists()
        conn.close()
        assert gone_within([watchdog, *fetchers, spool_path(tmp_path)]), "a process or the spool outlived the run"


def test_without_an_ssh_connection_nothing_starts_and_the_join_does_nothing(tmp_path, site):
    env = env_for(tmp_path)
    spool = prefetch.spool("miniforge", "k1")
    with serve(site) as url:
        r = sh(prefetch.start_command(f"{url}/big.bin", spool), env)
    assert r.returncode == 0 and "no SSH connection" in r.stdout
    assert not spool_path(tmp_path).exists()
    j = join(spool, env)
    assert j.returncode == 0 and "NOTHING" in j.stdout


def test_a_cached_copy_or_a_spool_that_is_not_ours_starts_nothing(tmp_path, site):
    env = env_for(tmp_path)
    spool = prefetch.spool("miniforge", "k1")
    cached = tmp_path / "cache.sh"
    cached.write_bytes(INSTALLER)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with serve(site) as url:
        conn = Connection(tmp_path, prefetch.start_command(f"{url}/big.bin", spool, skip_if=str(cached)), env)
        conn.close()
        assert not spool_path(tmp_path).exists()
        spool_path(tmp_path).symlink_to(elsewhere)  # someone else's link where the spool goes
        conn = Connection(tmp_path, prefetch.start_command(f"{url}/big.bin", spool), env)
        conn.close()
    assert "is not ours" in conn.out and list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("good", [True, False])
def test_conda_install_step_checks_the_background_download_before_running_it(tmp_path, site, good):
    env = env_for(tmp_path)
    sha = hashlib.sha256(INSTALLER).hexdigest() if good else "0" * 64
    key = sha[:16]
    prefix = tmp_path / "miniforge3"
    with serve(site) as url:
        conn = Connection(tmp_path, prefetch.start_command(f"{url}/installer.sh", conda.spool(sha)), env)
        assert spool_path(tmp_path, key).exists()
        # the install step as the role runs it: with its byte count; the URL it would fetch itself is dead
        cmd = download.watched(conda.install_command("http://127.0.0.1:9/dead.sh", sha, str(prefix), None,
                                                     conda.spool(sha)),
                               ['"${TMPDIR:-/tmp}"/dlrig-miniforge.*'], already=prefetch.spooled_bytes(conda.spool(sha)))
        time.sleep(1)  # the download is done before the step starts, as in a run
        r = sh(cmd.get_raw_value(), env)
        conn.close()
    counts = [download.parse(line) for line in r.stdout.splitlines() if line.startswith(download.MARK)]
    assert counts and counts[-1][1] >= len(INSTALLER), r.stdout  # the background bytes are counted
    if good:
        assert r.returncode == 0, r.stderr
        assert (prefix / "ran").exists() and f"sha256={sha}" in (prefix / conda.MARKER).read_text()
    else:
        assert r.returncode == 1
        assert "conda_installer_sha256 mismatch" in r.stderr and "refusing to run it" in r.stderr
        assert not prefix.exists()
    assert list((tmp_path / "t").iterdir()) == []  # no spool, no temp folder


def test_a_url_is_data_never_shell(tmp_path, site):
    env = env_for(tmp_path)
    spool = prefetch.spool("miniforge", "k1")
    with serve(site) as url:
        evil = f"{url}/x$(touch {tmp_path}/pwned)`touch {tmp_path}/pwned2`.sh"
        conn = Connection(tmp_path, prefetch.start_command(evil, spool), env)
        r = join(spool, env, what=evil)
        conn.close()
    assert f"dlrig: downloading {evil} in the background" in conn.out
    assert r.returncode != 0 and f"dlrig: downloading {evil} (started in the background) failed" in r.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
