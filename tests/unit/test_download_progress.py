"""The byte count of large downloads (dlrig.engine.download) run by a real /bin/sh, and how the
per-role progress (dlrig.cli.progress) shows it."""

from __future__ import annotations

import subprocess

from dlrig.cli.progress import RoleProgress
from dlrig.engine import download


def _run(cmd, tmp_path) -> subprocess.CompletedProcess:
    script = cmd.get_raw_value()
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_counts_what_the_command_writes_while_it_runs_and_keeps_its_exit_status(tmp_path):
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "old").write_bytes(b"x" * 5000)  # there before: not counted
    # 4 chunks of 300 kB, 1 s apart, then exit 3: counts every second, and the exit status is the command's
    writer = ("for i in 1 2 3 4; do head -c 300000 /dev/zero >> dl/partial; sleep 1; done; "
              "echo done-writing; exit 3")
    r = _run(download.watched(writer, ["dl"], total="echo 1200000", every=1), tmp_path)
    assert r.returncode == 3
    counts = [download.parse(line) for line in r.stdout.splitlines() if line.startswith(download.MARK)]
    assert "done-writing" in r.stdout
    assert len(counts) >= 3, r.stdout
    sizes = [n for _, n, _ in counts]
    assert sizes == sorted(sizes) and sizes[0] < 1200000 and sizes[-1] == 1200000
    assert {(label, total) for label, _, total in counts} == {("downloaded", 1200000)}


def test_a_folder_removed_at_the_end_keeps_the_largest_count_and_a_glob_expands_on_the_host(tmp_path):
    writer = "mkdir dl.abc; head -c 250000 /dev/zero > dl.abc/f; sleep 2; rm -rf dl.abc"
    r = _run(download.watched(writer, ["dl.*"], every=1), tmp_path)
    assert r.returncode == 0
    counts = [download.parse(line) for line in r.stdout.splitlines() if line.startswith(download.MARK)]
    assert counts and counts[-1][1] >= 250000 and counts[-1][2] == 0, r.stdout


def test_nothing_downloaded_prints_no_count(tmp_path):
    r = _run(download.watched("true", ["nothing-here"], every=1), tmp_path)
    assert r.returncode == 0 and download.MARK not in r.stdout


def test_progress_shows_the_count_under_the_role_at_most_every_interval_and_the_last_one(capsys):
    progress = RoleProgress(["base", "cuda"])
    progress.BYTES_EVERY = 3600.0
    progress("--> Starting operation: cuda | CUDA packages\n")
    progress("    [rig] Get:1 http://example.invalid cuda-toolkit 13.0 [2,000 MB]\n")
    progress("    [rig] dlrig-bytes downloaded 412300000 1210000000\n")
    progress("    [rig] dlrig-bytes downloaded 812300000 1210000000\n")  # within the interval: held back
    assert capsys.readouterr().err.splitlines()[-1].startswith("  rig: cuda: 412.3 MB of 1.21 GB downloaded (")
    progress("    [rig] dlrig-bytes downloaded 1000000000 1210000000\n")
    progress("    [rig] Success\n")  # any other line: the latest count is shown
    err = capsys.readouterr().err
    assert "rig: cuda: 1.00 GB of 1.21 GB downloaded" in err and "812.3 MB" not in err
    assert "Get:1" not in err  # apt's own lines stay in the log (and -v)
    progress.BYTES_EVERY = 0.0
    progress("    [rig] dlrig-bytes downloaded 1210000000 1210000000\n")  # the total: shown at once
    progress("    [rig] dlrig-bytes downloaded 1210000000 1210000000\n")  # unchanged while dpkg installs: not again
    progress("    [rig] Setting up cuda-toolkit\n")
    assert capsys.readouterr().err.count("1.21 GB of 1.21 GB downloaded") == 1


def test_human_sizes():
    assert [download.human(n) for n in (999, 1500, 412_300_000, 1_210_000_000)] == [
        "999 B", "1.5 kB", "412.3 MB", "1.21 GB"]
