"""The Miniforge installer downloads in the background while base's apt transaction runs
(dlrig.engine.prefetch), on Debian 12 test hosts over real SSH, through the real CLI.

REAL: sshd, pyinfra, apt and dpkg (base's transaction), the host's python3 (the downloader on a
minimal Debian, which has no curl before base installs it), the HTTP server on 127.0.0.1 and its
request log. STAND-IN: the Miniforge installer (tests/fixtures/miniforge_standin.py; conda-forge is
unreachable here). Proven: the installer's download started before base's apt transaction began
(the server's request time against apt's own history.log on the host); its bytes are counted under
conda; a failed or mis-checksummed background download is refused before anything runs it; Ctrl-C
in base leaves no download process and no spool on the host; a re-run changes nothing and answers
from the verified no-op.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlrig.engine.noop import HIT_NOTE
from dlrig.testing import image as IMAGE
from dlrig.testing import write_inventory
from tests.fixtures import pyindex
from tests.fixtures.miniforge_standin import build_installer

pytestmark = pytest.mark.hosts

MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))
PREFIX = f"/home/{IMAGE.USER}/miniforge3"
ROLES = "base,conda"
#: what is left of a background download on the host: spools and temp folders, watchdogs (named
#: dlrig-prefetch) and fetchers (python3 or curl writing into the spool)
LEFT = ("ls -d /tmp/dlrig-miniforge.* 2>/dev/null; "
        "ps -eo pid=,args= | grep -E 'dlrig-[p]refetch|dlrig-miniforge[.]prefetch'; true")


@pytest.fixture(scope="module")
def installer(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    path = build_installer(root / "miniforge")
    return root, path, hashlib.sha256(path.read_bytes()).hexdigest()


def cli(inv: Path, *args: str, env: dict | None = None, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlrig.cli", *args[:1], str(inv), "--roles", ROLES, *args[1:]],
                          capture_output=True, text=True, timeout=timeout, env=env)


def inventory(host, tmp_path: Path, url: str, sha256: str, name: str = "inv.py") -> Path:
    return write_inventory([host], tmp_path / name, data={
        "extra_ca_certificates": MACHINE_CAS, "base_packages": ["less"],
        "conda_installer_url": url, "conda_installer_sha256": sha256})


def apt_transaction(host, package: str) -> tuple[float, float]:
    """(start, end) in epoch seconds of the apt transaction whose command line names ``package``,
    from apt's own log on the host (whole seconds)."""
    log = host.ssh("cat /var/log/apt/history.log").stdout
    for block in log.split("\n\n"):
        if re.search(rf"^Commandline: .*install.* {re.escape(package)}\b", block, re.M):
            start = re.search(r"^Start-Date: (.+)$", block, re.M)[1]
            end = re.search(r"^End-Date: (.+)$", block, re.M)[1]
            s, e = host.ssh(f"date -d '{start}' +%s; date -d '{end}' +%s").stdout.split()
            return float(s), float(e)
    raise AssertionError(f"no apt transaction installing {package}:\n{log[-2000:]}")


def nothing_left(host, seconds: float = 10) -> str:
    """'' once no spool, temp folder, watchdog or fetcher is on the host (waits up to ``seconds``)."""
    end = time.monotonic() + seconds
    while True:
        left = host.ssh(LEFT).stdout.strip()
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.5)


def test_installer_downloads_during_base_apt_counted_and_a_rerun_is_a_noop(make_hosts, installer, tmp_path):
    root, path, sha = installer
    (h,) = make_hosts(1)
    counter: dict = {}
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    with pyindex.serve(root, counter=counter, delay=0.02) as url:
        inv = inventory(h, tmp_path, f"{url}/miniforge/{path.name}", sha)
        r = cli(inv, "apply", "--yes", env=env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
        log = list(counter.get("log", []))
        assert [p for p, _ in log] == [f"/miniforge/{path.name}"], log  # one download: the background one
        requested = log[0][1]
        start, end = apt_transaction(h, "less")  # base's transaction
        print(f"\ninstaller requested at {requested:.1f}; base's apt transaction {start:.0f}-{end:.0f} "
              f"({start - requested:+.1f} s / {end - requested:+.1f} s after the request)")
        assert requested < start + 1 <= end + 1, (requested, start, end)  # before it began (whole seconds)
        # the bytes are counted under conda (the default output, no -v)
        counts = re.findall(rf"{re.escape(h.name)}: conda: ([\d.]+) (kB|MB) downloaded", r.stderr)
        assert counts, r.stderr[-3000:]
        n, unit = counts[-1]
        # (shown to 0.1 MB)
        assert float(n) * {"kB": 1e3, "MB": 1e6}[unit] >= path.stat().st_size * 0.95, (counts, path.stat().st_size)
        assert h.ssh(f"{PREFIX}/bin/conda --version").stdout.strip() == "conda 24.11.3"
        assert f"sha256={sha}" in h.ssh(f"cat {PREFIX}/conda-meta/dlrig-installer").stdout
        assert nothing_left(h) == ""

        # a re-run changes nothing, downloads nothing, and the verified no-op answers
        plan = cli(inv, "plan", "--json", env=env)
        assert plan.returncode == 0 and json.loads(plan.stdout)["changes"] == [], plan.stdout[-2000:]
        hit = False
        for _ in range(3):
            again = cli(inv, "apply", "--yes", "--json", env=env)
            assert again.returncode == 0, again.stderr[-3000:]
            assert json.loads(again.stdout)["hosts"][h.name]["changed"] == 0, again.stdout[-2000:]
            if HIT_NOTE.format(mode="apply") in again.stderr:
                hit = True
                break
        assert hit, "the verified no-op never answered"
        assert len(counter["log"]) == 1


def test_failed_or_mismatched_background_download_is_refused_before_running(make_hosts, installer, tmp_path):
    root, path, sha = installer
    (h,) = make_hosts(1)
    counter: dict = {}
    with pyindex.serve(root, counter=counter) as url:
        missing = f"{url}/miniforge/nothing-here.sh"
        r = cli(inventory(h, tmp_path, missing, sha, "missing.py"), "apply", "--yes")
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert f"dlrig: downloading {missing} failed: HTTP Error 404" in out, out[-3000:]  # python3's message
        assert f"dlrig: downloading {missing} (started in the background) failed (exit 1)" in out
        assert nothing_left(h) == ""

        r = cli(inventory(h, tmp_path, f"{url}/miniforge/{path.name}", "0" * 64, "bad.py"), "apply", "--yes")
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert "conda_installer_sha256 mismatch" in out and "refusing to run it" in out, out[-3000:]
        assert h.ssh(f"test -e {PREFIX} && echo left || echo gone").stdout.strip() == "gone"
        assert [p for p, _ in counter["log"]].count(f"/miniforge/{path.name}") == 1  # the background download
        assert nothing_left(h) == ""


def test_ctrl_c_in_base_leaves_no_download_behind(make_hosts, installer, tmp_path):
    root, path, sha = installer
    (h,) = make_hosts(1)
    counter: dict = {}
    with pyindex.serve(root, counter=counter, delay=0.5) as url:  # ~45 pieces 0.5 s apart: still downloading
        inv = inventory(h, tmp_path, f"{url}/miniforge/{path.name}", sha)
        proc = subprocess.Popen([sys.executable, "-m", "dlrig.cli", "apply", str(inv), "--roles", ROLES, "--yes",
                                 "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen, running, deadline = [], "", time.monotonic() + 900
        for line in proc.stderr:
            seen.append(line)
            started = any("Starting operation: base | start downloading the Miniforge" in x for x in seen[:-1])
            if not running and started and "Starting operation: base |" in line:  # base's next step
                running = h.ssh(LEFT).stdout  # the download is under way: spool, watchdog, python3 fetcher
                proc.send_signal(signal.SIGINT)
            assert time.monotonic() < deadline
        rc = proc.wait(timeout=300)
        err = "".join(seen)
        assert running, "the apply never got past the start of the download:\n" + err[-3000:]
        assert rc == 130, f"exit {rc}\n{err[-3000:]}"
        assert "/tmp/dlrig-miniforge.prefetch-" in running and "dlrig-prefetch" in running, running
        assert "/file.part" in running, running  # the fetcher
        assert nothing_left(h) == "", "left on the host after Ctrl-C"
        # the re-run downloads again and installs
        r = cli(inv, "apply", "--yes")
        assert r.returncode == 0, r.stderr[-3000:]
        assert h.ssh(f"{PREFIX}/bin/conda --version").stdout.strip() == "conda 24.11.3"
