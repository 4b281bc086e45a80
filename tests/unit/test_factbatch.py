"""The fact batch (dlrig.engine.factbatch): many fact commands in one shell run give each command
the stdout lines it gives when run by itself, split as paramiko splits them.

Run by a real /bin/sh here (no SSH: the batch is one shell script; tests/hosts/test_factbatch_hosts.py
runs it over SSH through the connector)."""

from __future__ import annotations

import subprocess

from dlrig.engine import factbatch

COMMANDS = [
    "printf 'a\\nb\\n'",                       # ends with a newline
    "printf 'a\\nb'",                          # does not
    "true",                                    # no output
    "printf '\\n\\nx\\n\\n'",                  # empty lines kept, as paramiko keeps them
    "echo to-stderr >&2; echo out",            # stderr is not stdout
    "echo kept # a trailing comment",          # cannot swallow the rest of the script
    "cat <<'EOF'\nheredoc line\nEOF",          # a heredoc in the command
    "echo partial; exit 3",                    # failed: not answered (run again by itself)
    "printf '\\377\\376'",                     # not UTF-8: not answered
    "printf 'd\\xc3\\xa9j\\xc3\\xa0 vu\\r\\n'",   # UTF-8 and a \r that paramiko keeps
    "sh -c 'echo \"$0\"' 'quoted arg'",       # quoting as pyinfra writes it
    "cat",                                     # stdin is /dev/null, as for a fact read
    # Under pyinfra's sudo: these run in one shared sudo (HOME and user as with their own).
    "sudo -H -n sh -c 'echo \"$HOME\"; id -un'",
    "sudo -H -n sh -c 'echo root-part; exit 4'",
    "sudo -H -n sh -c 'printf \"%s\\n\" \"$0\"' 'arg with '\"'\"'quote'",
]


def alone(command: str) -> list[str] | None:
    """What pyinfra gets from the command run by itself: its stdout lines (None when it failed)."""
    r = subprocess.run(["sh", "-c", command], capture_output=True, stdin=subprocess.DEVNULL, check=False)
    if r.returncode != 0:
        return None
    return factbatch.split_lines(r.stdout)


def test_each_command_gets_what_it_gets_alone():
    script, marker = factbatch.batch_script(COMMANDS)
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    answers = factbatch.parse_batch(r.stdout.split("\n"), COMMANDS, marker)
    expected = {c: alone(c) for c in COMMANDS}
    assert {c: v for c, v in expected.items() if v is not None} == answers
    assert answers["printf 'a\\nb\\n'"] == ["a", "b"] == answers["printf 'a\\nb'"]
    assert answers["true"] == [] and answers["cat"] == []
    assert answers["printf '\\n\\nx\\n\\n'"] == ["", "", "x", ""]
    assert answers["echo to-stderr >&2; echo out"] == ["out"]
    assert answers["sh -c 'echo \"$0\"' 'quoted arg'"] == ["quoted arg"]
    assert "echo partial; exit 3" not in answers and "printf '\\377\\376'" not in answers
    assert answers["sudo -H -n sh -c 'echo \"$HOME\"; id -un'"] == ["/root", "root"]
    assert "sudo -H -n sh -c 'echo root-part; exit 4'" not in answers
    assert script.count("sudo -H -n sh -c") == 1  # one sudo for the three


def test_forged_or_foreign_lines_are_ignored():
    script, marker = factbatch.batch_script(["echo hi"])
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    lines = r.stdout.split("\n")
    # A line with another marker, an index past the batch, or bad base64 answers nothing.
    noise = ["dlrig-batch-other 0 0 aGk=", f"{marker} 7 0 aGk=", f"{marker} 0 0 !!!"]
    assert factbatch.parse_batch(noise, ["echo hi"], marker) == {}
    assert factbatch.parse_batch(noise + lines, ["echo hi"], marker) == {"echo hi": ["hi"]}


def test_record_round_trip_is_private_and_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = factbatch.record_path("rig", "127.0.0.2", 22, "dlrig")
    assert path.parent == tmp_path / "dlrig" / "fact-batch"
    assert factbatch.load_record(path) == []
    factbatch.save_record(path, ["b", "a", "b"] + [f"c{i}" for i in range(factbatch.MAX_COMMANDS)])
    assert (path.stat().st_mode & 0o777) == 0o600
    got = factbatch.load_record(path)
    assert got[:2] == ["b", "a"] and len(got) == factbatch.MAX_COMMANDS
    path.write_text("{not json")
    assert factbatch.load_record(path) == []
    assert factbatch.record_path("rig", "127.0.0.2", 22, "dlrig") != factbatch.record_path("rig", "127.0.0.3", 22, "dlrig")
