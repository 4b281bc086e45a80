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
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(spec)
        out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


def parse_rule(line: str) -> Rule | None:
    """One line of ``ufw show added`` (``ufw allow 22/tcp``, ``ufw limit in on eth0 to any port 22
    proto tcp comment 'x'``, ``ufw allow OpenSSH``...) as a Rule; None for what is not a rule."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if len(words) < 2 or words[0] != "ufw":
        return None
    words = words[1:]
    comment = ""
    if "comment" in words:
        i = words.index("comment")
        comment = " ".join(words[i + 1:])
        words = words[:i]
    if words and words[0] == "route":
        return None  # forwarded traffic, not connections to this host
    if not words or words[0] not in ("allow", "limit", "deny", "reject"):
        return None
    action, rest = words[0], words[1:]
    incoming = True
    if rest and rest[0] in ("in", "out"):
        incoming = rest[0] == "in"
        rest = rest[1:]
    if len(rest) >= 2 and rest[0] == "on":
        rest = rest[2:]
    if rest and rest[0] == "log" or rest and rest[0] == "log-all":
        rest = rest[1:]
    proto = rest[rest.index("proto") + 1] if "proto" in rest and rest.index("proto") + 1 < len(rest) else None
    try:
        if "port" in rest:  # full syntax: [from X] [to Y] port P [proto T]
            ports = _ports(rest[rest.index("port") + 1])
        elif rest and rest[0] not in ("from", "to"):  # simple syntax: PORT[/PROTO] or an app/service name
            spec, _, p = rest[0].partition("/")
            if spec.lower() in NAMED:
                ports, proto = NAMED[spec.lower()][0], NAMED[spec.lower()][1]
            else:
                ports, proto = _ports(spec), (p or None)
        else:  # from X [to Y] with no port: every port
            ports = frozenset()
    except (ValueError, IndexError):
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
