"""The Jupyter service check fed broken states. FAKE: the host (curl's status codes and whether
systemd runs, as given); the check against a real JupyterLab runs in tests/hosts/test_ml_hosts.py."""

from __future__ import annotations

import pytest

from dlrig.verify.checks import test_jupyter as J


class _Host:
    def __init__(self, api: str, login: str = "200", systemd: bool = True):
        self.api, self.login, self.systemd = api, login, systemd
        self.urls: list[str] = []

    def run(self, cmd: str):
        rc, out = 0, ""
        if cmd.startswith("test -d /run/systemd/system"):
            rc = 0 if self.systemd else 1
        elif "/api/status" in cmd:
            out = "".join(list(self.api))  # a new string, as curl's output is (never an interned literal)
            self.urls.append(cmd.split()[-1])
        elif "/login" in cmd:
            out = "".join(list(self.login))
        return type("R", (), {"rc": rc, "stdout": out})


@pytest.mark.parametrize("api", ["401", "403"])
def test_passes_when_credentials_are_wanted_and_login_works(api):
    host = _Host(api)
    J.test_jupyterlab_answers_and_wants_credentials(host, {"jupyter_ip": "0.0.0.0", "jupyter_port": 8899})
    assert host.urls == ["http://127.0.0.1:8899/api/status"]


@pytest.mark.parametrize("host, why", [
    (_Host("200"), "answered 200 without credentials"),
    (_Host("302"), "answered 302 without credentials"),
    (_Host("000"), "nothing answers"),
    (_Host("403", login="500"), "nobody can log in"),
    (_Host("403", login="000"), "nobody can log in"),
    (_Host("401", login="302"), "nobody can log in"),
])
def test_fails_each_broken_state(host, why):
    assert why in _failure(host, {})


def _failure(host, settings) -> str:
    """The check's AssertionError text; a skip (or a pass) here is a test failure."""
    try:
        J.test_jupyterlab_answers_and_wants_credentials(host, settings)
    except AssertionError as e:
        return str(e)
    except BaseException as e:  # pytest's Skipped is a BaseException
        pytest.fail(f"the check did not fail: {type(e).__name__}: {e}")
    pytest.fail("the check passed")


def test_skips_only_when_nothing_answers_and_systemd_is_not_running():
    with pytest.raises(pytest.skip.Exception):
        J.test_jupyterlab_answers_and_wants_credentials(_Host("000", systemd=False), {})
    assert "answered 200" in _failure(_Host("200", systemd=False), {})  # an open server answers: judged


def test_the_url_is_the_configured_address_and_port():
    for settings, url in (({}, "http://127.0.0.1:8888/api/status"),
                          ({"jupyter_ip": "10.1.2.3"}, "http://10.1.2.3:8888/api/status"),
                          ({"jupyter_ip": "::", "jupyter_port": 9000}, "http://127.0.0.1:9000/api/status")):
        host = _Host("403")
        J.test_jupyterlab_answers_and_wants_credentials(host, settings)
        assert host.urls == [url]
