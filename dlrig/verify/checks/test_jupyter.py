"""Checks of role ``jupyter``: unit installed, valid and enabled; config with a password hash only;
JupyterLab answering on its port and refusing requests without credentials (where systemd runs)."""

from __future__ import annotations

import re

import pytest

from dlrig.engine import passwords, pyenv
from dlrig.verify.hints import HINT_MARK, HINT_SEP

APPLY = "run `dlrig apply INVENTORY --roles jupyter`"
UNIT = f"/etc/systemd/system/{pyenv.JUPYTER_UNIT}"


def _msg(reason: str, hint: str) -> str:
    return f"{reason}{HINT_SEP}{HINT_MARK}{hint}"


def test_unit_valid_and_enabled(host):
    assert host.file(UNIT).exists, _msg(f"{UNIT} is missing", APPLY)
    res = host.run(f"systemd-analyze verify {UNIT}")
    assert res.rc == 0, _msg(f"systemd-analyze verify {UNIT} fails: {(res.stderr or res.stdout).strip()[-300:]}",
                             APPLY)
    assert host.file(f"/etc/systemd/system/multi-user.target.wants/{pyenv.JUPYTER_UNIT}").is_symlink, _msg(
        f"{pyenv.JUPYTER_UNIT} is not enabled", f"systemctl enable {pyenv.JUPYTER_UNIT}")


def test_config_has_a_password_hash_and_no_token(host, owner_home, owner):
    user = owner
    cfg = host.file(f"{owner_home}/.jupyter/jupyter_server_config.py")
    assert cfg.exists, _msg("jupyter_server_config.py is missing", APPLY)
    assert cfg.user == user and cfg.mode == 0o600, _msg(
        f"jupyter_server_config.py is {cfg.user}'s with mode {oct(cfg.mode)}; want {user}'s, 0o600", APPLY)
    m = re.search(r'hashed_password = "([^"]*)"', cfg.content_string)
    assert m and passwords.check_password_hash(m.group(1)) is None, _msg(
        "no password hash in jupyter_server_config.py", "set jupyter_password_hash and " + APPLY)


def _http_code(host, url: str) -> str:
    return host.run(f"curl -s -o /dev/null -m 10 -w '%{{http_code}}' {url}").stdout.strip()


def test_jupyterlab_answers_and_wants_credentials(host, settings):
    """Whatever runs JupyterLab (the unit, or a hand start): the API refuses a request without
    credentials (401/403) and serves the login page (200). Nothing answering is a failure where
    systemd runs the unit, a skip where it does not (a chroot, an image: it starts at boot)."""
    ip, port = settings.get("jupyter_ip") or "127.0.0.1", settings.get("jupyter_port") or 8888
    target = "127.0.0.1" if ip in ("0.0.0.0", "::") else ip
    base = f"http://{target}:{port}"
    code = _http_code(host, f"{base}/api/status")
    if code in ("", "000") and host.run("test -d /run/systemd/system").rc != 0:
        pytest.skip(f"nothing answers on {target}:{port} and systemd is not running here: the service starts at boot")
    assert code not in ("", "000"), _msg(f"nothing answers on {target}:{port}",
                                        f"journalctl -u {pyenv.JUPYTER_UNIT}; systemctl restart {pyenv.JUPYTER_UNIT}")
    assert code in ("401", "403"), _msg(
        f"{base}/api/status answered {code} without credentials (want 401 or 403): anyone reaching the port "
        "runs code as this user", "set jupyter_password_hash and " + APPLY)
    login = _http_code(host, f"{base}/login")
    assert login == "200", _msg(f"{base}/login answered {login} (want 200): nobody can log in",
                                f"journalctl -u {pyenv.JUPYTER_UNIT}")
