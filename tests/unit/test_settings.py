"""Settings validation: the schema, the error texts, and the CLI's exit 2 with nothing run."""

from __future__ import annotations

import json

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dlrig.engine.settings import Setting, registry, validate_host_data

ROOT_DIR = Path(__file__).resolve().parents[2]


def test_every_setting_has_help_and_a_valid_default():
    for key, s in registry().items():
        assert s.help and s.role, key
        assert validate_host_data("h", {key: s.default}) == [], key


def test_unknown_key_suggests_the_closest_known_key():
    (err,) = validate_host_data("rig", {"apt_lock_timout": 5})
    assert err == "rig: unknown setting 'apt_lock_timout'; did you mean 'apt_lock_timeout'?"


def test_unknown_key_without_a_close_one_points_at_the_list():
    (err,) = validate_host_data("rig", {"zzqx": 1})
    assert "unknown setting 'zzqx'" in err and "dlrig settings" in err


def test_pyinfra_keys_pass_and_their_typos_do_not():
    assert validate_host_data("rig", {"ssh_user": "me", "ssh_key": "/k", "_sudo": True, "fake_delay": 0}) == []
    (err,) = validate_host_data("rig", {"ssh_usr": "me"})
    assert "did you mean 'ssh_user'" in err
    (err,) = validate_host_data("rig", {"_sudoo": True})
    assert "did you mean '_sudo'" in err


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("apt_lock_timeout", "ten", "apt_lock_timeout = 'ten' is not allowed; use an integer from 0 to 7200"),
        ("apt_lock_timeout", 99999, "apt_lock_timeout = 99999 is not allowed; use an integer from 0 to 7200"),
        ("apt_lock_timeout", True, "apt_lock_timeout = True is not allowed"),
        ("base_extra_packages", ["ok", 3], "base_extra_packages = ['ok', 3] (item 3) is not allowed; use a list of strings"),
        ("ubuntu_enable_universe", "yes", "ubuntu_enable_universe = 'yes' is not allowed; use True or False"),
        ("dlrig_roles", ["base", "nope"], "unknown role(s) ['nope']"),
    ],
)
def test_wrong_type_or_range_names_host_key_value_and_what_is_allowed(key, value, fragment):
    (err,) = validate_host_data("rig-1", {key: value})
    assert err.startswith("rig-1: ")
    assert fragment in err


def test_extra_ca_certificates_must_exist_and_be_pem(tmp_path):
    not_pem = tmp_path / "x.crt"
    not_pem.write_text("hello")
    (err,) = validate_host_data("rig", {"extra_ca_certificates": [str(tmp_path / "missing.crt")]})
    assert "does not exist on this machine" in err
    (err,) = validate_host_data("rig", {"extra_ca_certificates": [str(not_pem)]})
    assert "not a PEM certificate" in err


def test_setting_kinds_and_bounds():
    s = Setting("p", 22, "port", "a port", role="t")
    from dlrig.engine.settings import _check_value

    assert _check_value(s, 22) is None
    assert _check_value(s, 0) == "0"
    assert _check_value(s, 70000) == "70000"
    assert _check_value(Setting("a", "/x", "path", "h"), "rel/x") == "'rel/x'"
    assert _check_value(Setting("u", "", "url", "h"), "ftp://x") == "'ftp://x'"
    assert _check_value(Setting("i", "", "ip", "h"), "127.0.0.1") is None
    assert _check_value(Setting("i", "", "ip", "h"), "127.0.0.300") == "'127.0.0.300'"
    assert _check_value(Setting("c", "a", "str", "h", choices=("a", "b")), "c") == "'c'"



def test_setting_kinds_the_schema_supports_beyond_todays_settings():
    """Kinds and flags no declared setting uses today still judge values (the schema is shared)."""
    from dlrig.engine.settings import _check_value

    f = Setting("f", 1.0, "float", "h")
    assert _check_value(f, 1.5) is None and _check_value(f, 2) is None
    assert _check_value(f, "1.5") == "'1.5'" and _check_value(f, True) == "True"
    nullable = Setting("n", "a", "str", "h", choices=("a", "b"), nullable=True)
    assert _check_value(nullable, None) is None and _check_value(nullable, "c") == "'c'"
    untyped = Setting("l", [], "list", "h")  # a list of anything
    assert _check_value(untyped, [1, "x", None]) is None and _check_value(untyped, "x") == "'x'"


def test_bounds_include_the_limits_themselves():
    from dlrig.engine.settings import _check_value

    s = registry()["apt_lock_timeout"]
    assert (s.min, s.max) == (0, 7200)
    assert _check_value(s, 0) is None and _check_value(s, 7200) is None
    assert _check_value(s, -1) == "-1" and _check_value(s, 7201) == "7201"


def test_a_choice_setting_says_which_values_it_takes():
    (err,) = validate_host_data("rig", {"ssh_permit_root_login": "yes"})
    assert err.startswith("rig: ssh_permit_root_login = 'yes' is not allowed; use one of 'no', 'prohibit-password' (")


def test_pyinfra_version_unknown_when_pyinfra_is_not_importable(monkeypatch):
    import importlib.util

    from dlrig.engine import settings as mod

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert mod._installed_pyinfra_version() is None and mod.recorded_pyinfra_keys() is None


def test_a_connector_that_fails_to_load_does_not_break_validation(monkeypatch):
    """A broken third-party connector (its entry point raises on load) is skipped; pyinfra's own keys stay."""
    import importlib.metadata

    from dlrig.engine import settings as mod

    real = importlib.metadata.entry_points

    class Broken:
        def load(self):
            raise ImportError("a broken third-party connector")

    # the broken one first: the connectors after it are still read
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [Broken(), *real(group=group)])
    keys = mod.pyinfra_keys()
    assert {"ssh_user", "_sudo"} <= keys


def test_commented_defaults_of_one_role_and_one_header_per_role():
    from dlrig.engine.catalogue import ORDER
    from dlrig.engine.settings import commented_defaults

    ssh = commented_defaults(role="ssh", indent="")
    keys = {k for k, s in registry().items() if s.role == "ssh"}
    assert ssh.splitlines()[0] == "# --- ssh ---"
    assert {line.split('"')[1] for line in ssh.splitlines()[1:]} == keys
    headers = [line for line in commented_defaults(indent="").splitlines() if line.startswith("# --- ")]
    roles = [r for r in ("dlrig", *ORDER) if any(s.role == r for s in registry().values())]
    assert headers == [f"# --- {r} ---" for r in roles]


def test_write_commented_defaults_refreshes_the_block_once(tmp_path):
    """The block between the marks is replaced at the marks' indent; a second run writes nothing."""
    import os

    from dlrig.engine.settings import BEGIN_MARK, END_MARK, commented_defaults, write_commented_defaults

    inv = tmp_path / "inventory.py"
    inv.write_text(f"\n    {BEGIN_MARK}\n    zz stale line\n    {END_MARK}\n")
    assert write_commented_defaults(str(inv)) is True
    assert inv.read_text() == (f"\n    {BEGIN_MARK}\n{commented_defaults(indent='    ')}\n    {END_MARK}\n")
    os.utime(inv, ns=(0, 0))
    assert write_commented_defaults(str(inv)) is False
    assert os.stat(inv).st_mtime_ns == 0  # not rewritten

def _dlrig(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dlrig.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def listener():
    """A real TCP listener standing in for a host's sshd: counts connection attempts."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    yield srv
    srv.close()


def _attempts(srv) -> int:
    n = 0
    while True:
        try:
            conn, _ = srv.accept()
        except (socket.timeout, BlockingIOError):
            return n
        conn.close()
        n += 1


def _inventory(tmp_path, port: int, data: str) -> Path:
    inv = tmp_path / "inv.py"
    inv.write_text(
        f'hosts = [("rig", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}, {data}}})]\n'
    )
    return inv


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_cli_bad_settings_exit_2_with_lines_and_touch_no_host(tmp_path, listener, command):
    port = listener.getsockname()[1]
    inv = _inventory(tmp_path, port, '"apt_lock_timout": 5, "base_packages": "git"')
    r = _dlrig(command, str(inv), "--yes" if command == "apply" else "--json")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "dlrig: error: rig: unknown setting 'apt_lock_timout'; did you mean 'apt_lock_timeout'?",
        "dlrig: error: rig: base_packages = 'git' is not allowed; use a list of strings "
        "(essential packages on every rig)",
    ]
    if command == "apply":
        assert r.stdout == ""
    else:  # --json carries the same reason (issue 11)
        payload = json.loads(r.stdout)
        assert payload["ok"] is False and "apt_lock_timout" in payload["error"] and "base_packages" in payload["error"]
    assert _attempts(listener) == 0, "dlrig connected to a host despite invalid settings"


def test_cli_missing_and_broken_inventory(tmp_path):
    r = _dlrig("plan", str(tmp_path / "nope.py"))
    assert r.returncode == 2
    assert "file not found" in r.stderr and "Traceback" not in r.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("hosts = [\n")
    r = _dlrig("apply", str(broken), "--yes")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"dlrig: error: inventory {broken}: syntax error at line 1: '[' was never closed; fix the file"
    )
    empty = tmp_path / "empty.py"
    empty.write_text("hosts = []\n")
    r = _dlrig("plan", str(empty))
    assert r.returncode == 2 and "no hosts in it" in r.stderr


def test_cli_unknown_role_and_bad_data_option():
    r = _dlrig("plan", "@local", "--roles", "base,gpu_magic")
    assert r.returncode == 2 and "unknown role(s) gpu_magic" in r.stderr
    r = _dlrig("plan", "@local", "--data", "noequals")
    assert r.returncode == 2 and "use KEY=VALUE" in r.stderr
    r = _dlrig("plan", "@local", "--data", "apt_lock_timeout=-1")
    assert r.returncode == 2 and "apt_lock_timeout = -1 is not allowed" in r.stderr


def test_apply_without_yes_and_without_a_terminal_refuses():
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", "apply", "@local", "--roles", "base"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "add --yes" in r.stderr


@pytest.mark.parametrize("raw", ["true", "True"])
def test_data_accepts_json_and_python_literals_alike(raw):
    """pyinfra's own --data is JSON (`true`), Python users write `True`: both mean the bool."""
    r = _dlrig("check", "inventories/example.py", "--data", f"cpu_only={raw}", "--data", "dlrig_roles=null",
               cwd=ROOT_DIR)
    assert r.returncode == 0, r.stderr
    from dlrig.cli.common import parse_data

    assert parse_data((f"cpu_only={raw}", "driver_gpus=[\"10de:1e84\"]", "env_name=dl", "x=null")) == {
        "cpu_only": True, "driver_gpus": ["10de:1e84"], "env_name": "dl", "x": None}


def test_recorded_pyinfra_keys_match_the_installed_pyinfra():
    """dlrig check tells pyinfra's keys from typos without importing pyinfra: the recorded list
    must be the installed pyinfra's (refresh it with `python3 tools/pyinfra_keys.py`)."""
    from dlrig.engine.settings import pyinfra_keys, recorded_pyinfra_keys

    recorded = recorded_pyinfra_keys()
    assert recorded is not None, "dlrig/engine/pyinfra_keys.json is for another pyinfra: run tools/pyinfra_keys.py"
    assert recorded == pyinfra_keys(), "run `python3 tools/pyinfra_keys.py`"


def test_validating_known_pyinfra_keys_does_not_import_pyinfra():
    """Keys in the recorded pyinfra list are accepted without importing pyinfra (checked in a fresh
    interpreter); only a key the record lacks makes validation ask pyinfra itself."""
    code = ("import sys; from dlrig.engine.settings import validate_host_data; "
            "assert validate_host_data('h', {'ssh_user': 'me', '_sudo': True}) == []; "
            "print('pyinfra' in sys.modules); "
            "validate_host_data('h', {'no_such_key_anywhere': 1}); print('pyinfra' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT_DIR)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_a_key_declared_by_two_roles_is_a_programming_error(monkeypatch):
    from dlrig.engine import settings as mod

    monkeypatch.setattr(mod, "_REGISTRY", {})
    assert mod.declare("one", Setting("k", 1, "int", "h")) == {"k": 1}
    assert mod.declare("one", Setting("k", 2, "int", "h")) == {"k": 2}  # the same role again: fine
    with pytest.raises(RuntimeError, match="setting k declared by one and two"):
        mod.declare("two", Setting("k", 1, "int", "h"))
    with pytest.raises(RuntimeError, match="setting j declared by two and one"):  # whichever role sorts first
        mod.declare("two", Setting("j", 1, "int", "h"))
        mod.declare("one", Setting("j", 1, "int", "h"))


def test_a_list_of_paths_takes_the_path_shape_for_each_item():
    from dlrig.engine.settings import _shape_error, shape_of

    paths = Setting("l", [], "list", "h", item_kind="path")
    assert shape_of(paths) == "path" and shape_of(Setting("p", "/x", "path", "h")) == "path"
    assert shape_of(Setting("i", 1, "int", "h")) is None and shape_of(Setting("s", [], "list", "h", item_kind="str")) is None
    assert _shape_error(paths, ["/ok", "/also/ok"]) is None and _shape_error(paths, ["/ok", "/bad\nline"])


def test_cache_dir_may_have_spaces_but_no_shell_characters():
    """A data disk mounted as "/media/alice/My Data": cache_dir takes spaces (every use quotes it);
    quotes, $, ; and newlines stay refused, with the shape's words."""
    from dlrig.engine.settings import _shape_error
    from dlrig.engine.settings import registry

    s = registry()["cache_dir"]
    assert _shape_error(s, "/media/alice/My Data/dlrig cache") is None
    for bad in ("/media/x;rm -rf /", "/a/$(id)", "/a'b", "/a\nb", "relative/path"):
        assert "no shell characters" in (_shape_error(s, bad) or ""), bad


@pytest.mark.parametrize("text", ["not json {", None])
def test_an_unreadable_pyinfra_keys_record_counts_as_none(tmp_path, monkeypatch, text):
    """A corrupt (ValueError) or missing (OSError) dlrig/engine/pyinfra_keys.json: no recorded keys, no crash."""
    from dlrig.engine import settings as mod

    record = tmp_path / "pyinfra_keys.json"
    if text is not None:
        record.write_text(text)
    monkeypatch.setattr(mod, "PYINFRA_KEYS_FILE", record)
    assert mod.recorded_pyinfra_keys() is None


def test_every_badly_shaped_setting_is_reported_not_only_the_first():
    from dlrig.engine.settings import shape_of

    shaped = sorted(k for k, st in registry().items() if shape_of(st) and st.kind == "str" and st.choices is None)[:2]
    assert len(shaped) == 2
    errors = validate_host_data("rig", {k: "x; rm -rf /" for k in shaped})
    assert [e.split(" ")[1] for e in errors] == shaped and all("is not allowed: use" in e for e in errors)
