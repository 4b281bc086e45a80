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
