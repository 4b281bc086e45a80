"""The firewall checks read ``ufw show added`` as rules, not substrings: 2222/tcp never satisfies 22/tcp.

FAKE: the host object (only ``run`` answering ``ufw show added`` with text in ufw's own format);
ufw itself runs for real in tests/hosts/test_remote_firewall.py.
"""

from __future__ import annotations

import pytest

from dlrig.verify.checks import test_firewall as F


class _Host:
    def __init__(self, added: str):
        self.added = "Added user rules (see 'ufw status' for running firewall):\n" + added

    def run(self, cmd):
        class R:
            stdout = self.added
            rc = 0
        return R


@pytest.mark.parametrize("added", [
    "ufw allow 2222/tcp",
    "ufw limit 2222/tcp comment 'dlrig ssh'",
    "ufw allow 122/tcp",
    "ufw allow 220/tcp",
    "ufw allow 22/udp",
    "ufw deny 22/tcp",
    "ufw allow out 22/tcp",
    "ufw allow 80,443/tcp comment 'web 22'",
    "ufw allow 2200:2300/tcp",
    "ufw route allow 22/tcp",
    "ufw allow from 10.0.0.0/8 to any port 2222 proto tcp",
])
def test_ssh_check_fails_when_no_rule_lets_port_22_in(added):
    with pytest.raises(AssertionError) as e:
        F.test_ssh_allowed(_Host(added), {"ssh_port": 22})
    assert "port 22/tcp" in str(e.value)


@pytest.mark.parametrize("added, port", [
    ("ufw limit 22/tcp comment 'dlrig ssh'", 22), ("ufw allow 22", 22), ("ufw allow OpenSSH", 22),
    ("ufw allow in on eth0 to any port 22 proto tcp", 22), ("ufw allow 2222/tcp", 2222),
    ("ufw allow 20:30/tcp", 22), ("ufw allow 80,22/tcp", 22), ("ufw allow from 10.0.0.0/8", 22),
    ("ufw allow from 10.0.0.0/8 to any port 2222 proto tcp comment 'dlrig ssh'", 2222)])
def test_ssh_check_passes_rules_that_let_the_port_in(added, port):
    F.test_ssh_allowed(_Host(added), {"ssh_port": port})


def test_parse_rule():
    r = F.parse_rule("ufw limit 22/tcp comment 'dlrig ssh'")
    assert (r.action, r.ports, r.proto, r.comment) == ("limit", frozenset({22}), "tcp", "dlrig ssh")
    assert F.parse_rule("Added user rules (see 'ufw status' for running firewall):") is None
    assert F.parse_rule("ufw allow nosuchservice") is None
    assert F.parse_rule("ufw allow 'unbalanced") is None


def test_jupyter_rule_matched_by_port_not_substring():
    exposed = {"jupyter_ip": "0.0.0.0", "jupyter_port": 8888}
    with pytest.raises(AssertionError):  # 18888 contains "8888" but is another port
        F.test_jupyter_port_only_when_exposed(_Host("ufw allow 18888/tcp comment 'dlrig jupyter'"), exposed)
    F.test_jupyter_port_only_when_exposed(_Host("ufw allow 8888/tcp comment 'dlrig jupyter'"), exposed)
    with pytest.raises(AssertionError):  # loopback Jupyter with the port open
        F.test_jupyter_port_only_when_exposed(_Host("ufw allow 8888/tcp comment 'dlrig jupyter'"),
                                             {"jupyter_ip": "127.0.0.1", "jupyter_port": 8888})
    F.test_jupyter_port_only_when_exposed(_Host("ufw allow 22/tcp"), {"jupyter_ip": "127.0.0.1"})


@pytest.mark.parametrize("line, want", [
    ("ufw allow 22/tcp", ("allow", True, {22}, "tcp")),
    ("ufw limit in 22/tcp", ("limit", True, {22}, "tcp")),
    ("ufw allow out 22/tcp", ("allow", False, {22}, "tcp")),
    ("ufw allow in on eth0 22/tcp", ("allow", True, {22}, "tcp")),
    ("ufw allow log 22/tcp", ("allow", True, {22}, "tcp")),
    ("ufw allow log-all in on eth0 to any port 22 proto udp", ("allow", True, {22}, "udp")),
    ("ufw allow proto tcp from any to any port 22", ("allow", True, {22}, "tcp")),
    ("ufw deny 22", ("deny", True, {22}, None)),
    ("ufw reject 6000:6002/udp", ("reject", True, {6000, 6001, 6002}, "udp")),
    ("ufw allow 22,80/tcp comment 'a b'", ("allow", True, {22, 80}, "tcp")),
    ("ufw allow ssh", ("allow", True, {22}, "tcp")),
    ("ufw allow from 10.0.0.0/8", ("allow", True, set(), None)),
])
def test_parse_rule_fields(line, want):
    r = F.parse_rule(line)
    assert (r.action, r.incoming, set(r.ports), r.proto) == want


@pytest.mark.parametrize("line", [
    "ufw", "ufw allow", "ufw route allow 22/tcp", "ufw status", "sudo ufw allow 22/tcp", "ufw allow 22/tcp 80/tcp",
    "ufw allow to any port", "ufw allow 2x/tcp", "ufw allow 22:/tcp", "ufw allow :22/tcp", "ufw allow port",
    "Added user rules (see 'ufw status' for running firewall):", "ufw allow 'unbalanced", ""])
def test_parse_rule_rejects_what_is_not_a_rule(line):
    assert F.parse_rule(line) is None


def test_parse_rule_keeps_the_comment():
    assert F.parse_rule("ufw limit 22/tcp comment 'dlrig ssh'").comment == "dlrig ssh"
    assert F.parse_rule("ufw limit 22/tcp").comment == ""
    assert [r.ports for r in F.parse_added("ufw allow 22/tcp\nnoise\nufw allow 80/tcp\n")] == [{22}, {80}]


def test_lets_in():
    r = F.parse_rule("ufw allow 22")
    assert r.lets_in(22, "tcp") and r.lets_in(22, "udp") and not r.lets_in(23)
    assert not F.parse_rule("ufw allow 22/udp").lets_in(22, "tcp")
    assert not F.parse_rule("ufw deny 22/tcp").lets_in(22) and not F.parse_rule("ufw reject 22/tcp").lets_in(22)
    assert F.parse_rule("ufw limit 22/tcp").lets_in(22) and not F.parse_rule("ufw limit out 22/tcp").lets_in(22)


class _Ufw:
    """FAKE host for the enabled/deny check: package, ufw.conf and `ufw status verbose` as given."""

    def __init__(self, installed=True, conf="ENABLED=yes\n", status="Status: active\nDefault: deny (incoming), allow (outgoing)"):
        self.installed, self.conf, self.status = installed, conf, status

    def package(self, name):
        return type("P", (), {"is_installed": self.installed})

    def file(self, path):
        return type("F", (), {"content_string": self.conf})

    def run(self, cmd):
        return type("R", (), {"stdout": self.status, "rc": 0})


@pytest.mark.parametrize("broken, why", [
    (dict(installed=False), "ufw is not installed"),
    (dict(conf="ENABLED=no\n"), "ufw is not enabled"),
    (dict(status="Status: inactive"), "ufw is not running"),
    (dict(status="Status: active\nDefault: allow (incoming), allow (outgoing)"), "incoming policy is not deny"),
])
def test_ufw_check_fails_each_broken_state(broken, why):
    with pytest.raises(AssertionError) as e:
        F.test_ufw_enabled_and_denies_incoming(_Ufw(**broken))
    assert why in str(e.value) and "HINT" in str(e.value)
    F.test_ufw_enabled_and_denies_incoming(_Ufw())


def test_only_lines_of_ufw_itself_are_rules():
    for line in ("abc allow 22/tcp", "xyz allow 22/tcp", "ufwx allow 22/tcp"):
        assert F.parse_rule(line) is None


def test_rules_are_immutable_values():
    r = F.parse_rule("ufw allow 22/tcp")
    assert hash(r) == hash(F.parse_rule("ufw allow 22/tcp")) and r == F.parse_rule("ufw allow 22/tcp")


def test_defaults_ssh_22_and_jupyter_8888():
    F.test_ssh_allowed(_Host("ufw allow 22/tcp"), {})
    with pytest.raises(AssertionError):
        F.test_ssh_allowed(_Host("ufw allow 23/tcp"), {})
    with pytest.raises(AssertionError):
        F.test_ssh_allowed(_Host("ufw allow 21/tcp"), {})
    exposed = {"jupyter_ip": "0.0.0.0"}
    F.test_jupyter_port_only_when_exposed(_Host("ufw allow 8888/tcp comment 'dlrig jupyter'"), exposed)
    for other in (8887, 8889):
        with pytest.raises(AssertionError):
            F.test_jupyter_port_only_when_exposed(_Host(f"ufw allow {other}/tcp comment 'dlrig jupyter'"), exposed)


def test_messages_name_what_is_open_and_what_ufw_said():
    two = "ufw allow 8888/tcp comment 'dlrig jupyter'\nufw allow 9999/tcp comment 'dlrig jupyter'"
    with pytest.raises(AssertionError) as e:
        F.test_jupyter_port_only_when_exposed(_Host(two), {"jupyter_ip": "127.0.0.1"})
    assert "ufw opens [8888]" in str(e.value)
    with pytest.raises(AssertionError) as e:
        F.test_ufw_enabled_and_denies_incoming(_Ufw(status="Status: inactive" + "y" * 300))
    assert "y" * 184 in str(e.value) and "y" * 185 not in str(e.value)  # ufw's answer, cut at 200 characters
