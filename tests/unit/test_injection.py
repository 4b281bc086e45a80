"""No shell injection (issue 11): a hostile value for every string setting is refused before any
connection, table-driven over the whole settings registry, so a new setting is covered (or must
be listed below with the reason it is safe) the day it is declared."""

from __future__ import annotations

import pytest

from dlrig.engine.settings import registry, validate_host_data

HOSTILE = ["x; touch /tmp/dlrig-pwned", "$(touch /tmp/dlrig-pwned)", "`id`", "a'b", 'a"b',
           "ok\nrm -rf /", "x && reboot", "x | sh", "../../etc/shadow; id"]

# Strings that never meet a shell, and why (each is still type-checked).
NO_SHELL = {
    "ssh_extra_config": ("written to the sshd drop-in over SFTP (never a shell), one line per item, then "
                         "judged by sshd -t and the lock-out proof", ["ok\nForceCommand /bin/true"]),
    "grub_default": ("written inside double quotes in a /etc/default/grub.d file (sourced by sh): what could "
                     "leave the quotes is refused", ['a"; id; "', "$(id)", "`id`", "a\\", "a\nb"]),
    "unattended_upgrades_blacklist": ("regexes written into an apt.conf file, never a shell: what could leave "
                                      "apt.conf's quoted string is refused", ['a"; x', "a;b", "a\nb"]),
}


def _string_settings():
    for key, s in sorted(registry().items()):
        if s.choices is not None:
            continue
        if s.kind in ("str", "path", "url") or (s.kind == "list" and s.item_kind in ("str", "path")):
            yield key, s


@pytest.mark.parametrize("key", [k for k, _ in _string_settings()])
def test_every_string_setting_refuses_hostile_values_before_connecting(key):
    s = registry()[key]
    if key in NO_SHELL:
        for hostile in NO_SHELL[key][1]:
            value = [hostile] if s.kind == "list" else hostile
            assert validate_host_data("h", {key: value}), f"{key} = {value!r} was accepted"
        return
    for hostile in HOSTILE:
        value = [hostile] if s.kind == "list" else ("/" + hostile if s.kind == "path" else
                                                    "https://x/" + hostile if s.kind == "url" else hostile)
        errors = validate_host_data("h", {key: value})
        assert errors, f"{key} = {value!r} was accepted"
        assert all(e.startswith(f"h: {key}") for e in errors), errors
        if s.secret:
            assert not any(hostile in e for e in errors), f"{key}: the secret was echoed: {errors}"


def test_defaults_pass_their_own_shapes():
    for key, s in _string_settings():
        if s.default is not None:
            assert validate_host_data("h", {key: s.default}) == [], key


def test_good_values_still_pass():
    ok = {"workstation_user": "alice", "base_extra_packages": ["htop", "libc6:amd64", "g++=4:12.2.0-3"],
          "conda_prefix": "/opt/conda", "jupyter_root_dir": "/home/alice/work", "driver_gpus": ["10de:2684",
          "RTX 4090"], "nvidia_repo_key_sha256": "ab" * 32, "driver_mok_password": "0ne-Time!",
          "pip_index_url": "https://pypi.example/simple?x=1&y=2"}
    assert validate_host_data("h", ok) == []
