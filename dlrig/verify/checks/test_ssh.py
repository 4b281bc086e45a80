"""Checks of role ``ssh``: sshd's effective config (``sshd -T``) is what the settings ask for."""

from __future__ import annotations

import pytest

from dlrig.verify.hints import HINT_MARK, HINT_SEP

APPLY = "run `dlrig apply INVENTORY --roles ssh`"
DROPIN_DIR = "/etc/ssh/sshd_config.d"
DROPIN = f"{DROPIN_DIR}/00-dlrig.conf"


def _msg(reason: str, hint: str) -> str:
    return f"{reason}{HINT_SEP}{HINT_MARK}{hint}"


def _effective(host) -> dict[str, list[str]]:
    res = host.run("/usr/sbin/sshd -T 2>&1")
    assert res.rc == 0, _msg(f"sshd -T fails: {res.stdout.strip()[-300:]}",
                             "fix the line sshd names (sshd refuses to reload with it), then " + APPLY)
    out: dict[str, list[str]] = {}
    for line in res.stdout.splitlines():
        k, _, v = line.partition(" ")
        out.setdefault(k, []).append(v)
    return out


def test_dropin_sorts_first(host):
    assert host.file(DROPIN).exists, _msg(f"{DROPIN} is missing", APPLY)
    names = sorted(host.run(f"ls -1 {DROPIN_DIR}").stdout.split())
    confs = [n for n in names if n.endswith(".conf")]
    assert confs[0] == "00-dlrig.conf", _msg(
        f"{confs[0]} sorts before 00-dlrig.conf: sshd keeps its values, not dlrig's",
        f"rename or remove {DROPIN_DIR}/{confs[0]}")


def test_config_is_valid(host):
    res = host.run("/usr/sbin/sshd -t 2>&1")
    assert res.rc == 0, _msg(f"sshd -t: {res.stdout.strip()[-300:]}",
                             "fix the line sshd names; a restart with this config would fail")


def test_root_login_and_passwords_as_configured(host, settings):
    eff = _effective(host)
    want_root = settings.get("ssh_permit_root_login", "no")
    assert eff.get("permitrootlogin") == [want_root], _msg(
        f"sshd PermitRootLogin is {eff.get('permitrootlogin')}, ssh_permit_root_login is {want_root!r}", APPLY)
    want = settings.get("ssh_password_authentication")
    if want is None and settings.get("ssh_authorized_keys"):
        want = False
    if want is None:
        pytest.skip("ssh_password_authentication is None and no ssh_authorized_keys: left as it was")
    expect = "yes" if want else "no"
    assert eff.get("passwordauthentication") == [expect], _msg(
        f"sshd PasswordAuthentication is {eff.get('passwordauthentication')}, wanted {expect} "
        "(another file read before the drop-in, or a Match block?)", APPLY)
    if not want:
        assert eff.get("kbdinteractiveauthentication") == ["no"], _msg(
            "KbdInteractiveAuthentication is on: PAM can still ask for passwords", APPLY)


def test_extra_ports_configured(host, settings):
    ports = set(_effective(host).get("port", []))
    missing = [str(p) for p in settings.get("ssh_extra_ports") or [] if str(p) not in ports]
    assert not missing, _msg(f"sshd is not configured for port(s) {', '.join(missing)}", APPLY)


def test_authorized_keys_installed(host, settings, check_context):
    keys = settings.get("ssh_authorized_keys") or []
    if not keys:
        pytest.skip("no ssh_authorized_keys set")
    user = settings.get("workstation_user") or check_context.login_user
    if not user:
        pytest.skip("owner unknown (set workstation_user)")
    home = host.user(user).home
    text = host.run(f"cat {home}/.ssh/authorized_keys 2>/dev/null").stdout
    have = {" ".join(line.split()[:2]) for line in text.splitlines() if line.strip()}
    missing = [k for k in keys if " ".join(k.split()[:2]) not in have]
    assert not missing, _msg(f"{len(missing)} key(s) of ssh_authorized_keys not in {home}/.ssh/authorized_keys",
                             APPLY)
