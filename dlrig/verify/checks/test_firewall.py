"""Checks of role ``firewall``: ufw enabled, deny incoming, SSH allowed, Jupyter only when exposed."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from dlrig.roles.firewall import is_loopback
from dlrig.verify.hints import HINT_MARK, HINT_SEP

APPLY = "run `dlrig apply INVENTORY --roles firewall`"


def _msg(reason: str, hint: str) -> str:
    return f"{reason}{HINT_SEP}{HINT_MARK}{hint}"


def test_ufw_enabled_and_denies_incoming(host):
    assert host.package("ufw").is_installed, _msg("ufw is not installed", APPLY)
    conf = host.file("/etc/ufw/ufw.conf").content_string
    assert "ENABLED=yes" in conf, _msg("ufw is not enabled (/etc/ufw/ufw.conf)", APPLY)
    status = host.run("ufw status verbose 2>&1").stdout
    assert "Status: active" in status, _msg(f"ufw is not running: {status.strip()[:200]}",
                                            "`sudo ufw enable` (SSH is allowed), or " + APPLY)
    assert "deny (incoming)" in status, _msg("ufw's default incoming policy is not deny", APPLY)


# ufw application profiles and service names a rule may use instead of a port (ufw app info, /etc/services)
NAMED = {"openssh": ({22}, "tcp"), "ssh": ({22}, "tcp")}


@dataclass(frozen=True)
class Rule:
    action: str  # allow | limit | deny | reject
    incoming: bool
    ports: frozenset  # empty: every port
    proto: str | None  # tcp | udp | None (both)
    comment: str = ""

    def lets_in(self, port: int, proto: str = "tcp") -> bool:
        return (self.action in ("allow", "limit") and self.incoming and (not self.ports or port in self.ports)
                and self.proto in (None, proto))


def _ports(spec: str) -> frozenset:
    """``22``, ``6000:6007``, ``22,80`` as the set of ports; ValueError for anything else."""
    out: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?::(\d+))?", part)
        if not m:
            raise ValueError(spec)
        out.update(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    return frozenset(out)


ACTIONS = ("allow", "limit", "deny", "reject")
TAKES_VALUE = ("on", "from", "to", "port", "proto", "app")  # `ufw` keywords followed by their value


def parse_rule(line: str):
    """One line of ``ufw show added`` (``ufw allow 22/tcp``, ``ufw limit in on eth0 to any port 22
    proto tcp comment 'x'``, ``ufw allow OpenSSH``...) as a Rule; None for what is not a rule on
    traffic to this host (``ufw route ...``, text, a rule with no port and no source)."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if "comment" in words:
        at = words.index("comment")
        words, comment = words[:at], " ".join(words[at + 1:])
    else:
        comment = ""
    if words[:1] != ["ufw"] or words[1:2] == [] or words[1] not in ACTIONS:
        return None
    action, rest = words[1], words[2:]
    incoming, value, simple = True, {}, []
    while rest:
        word, rest = rest[0], rest[1:]
        if word in ("in", "out"):
            incoming = word == "in"
        elif word in TAKES_VALUE:
            value[word], rest = (rest[0] if rest else ""), rest[1:]
        elif word not in ("log", "log-all"):
            simple.append(word)
    if len(simple) > 1:
        return None
    spec, _, proto = (simple[0] if simple else value.get("port", "")).partition("/")
    proto = value.get("proto", proto) or None
    try:
        if spec.lower() in NAMED:
            ports, proto = NAMED[spec.lower()]
        elif spec:
            ports = _ports(spec)
        elif "from" in value:  # `ufw allow from X`: every port, from X
            ports = frozenset()
        else:
            return None
    except ValueError:
        return None
    return Rule(action, incoming, frozenset(ports), proto, comment)


def parse_added(text: str) -> list[Rule]:
    return [r for line in text.splitlines() if (r := parse_rule(line.strip()))]


def _added(host) -> list[Rule]:
    return parse_added(host.run("ufw show added 2>&1").stdout)


def test_ssh_allowed(host, settings):
    rules = _added(host)
    port = int(settings.get("ssh_port") or 22)
    assert any(r.lets_in(port) for r in rules), _msg(
        f"no ufw rule lets SSH (port {port}/tcp) in: the next login would be refused", APPLY)


def test_jupyter_port_only_when_exposed(host, settings):
    ip, port = settings.get("jupyter_ip", "127.0.0.1"), settings.get("jupyter_port", 8888)
    rules = [r for r in _added(host) if "dlrig jupyter" in r.comment]
    if is_loopback(ip):
        assert not rules, _msg(f"Jupyter listens on {ip} but ufw opens {sorted(rules[0].ports) or 'every port'}",
                               "`sudo ufw status numbered`, then `sudo ufw delete N` for the 'dlrig jupyter' rule")
    else:
        assert any(r.lets_in(int(port)) for r in rules), _msg(
            f"jupyter_ip is {ip} but ufw has no rule letting port {port}/tcp in", APPLY)
