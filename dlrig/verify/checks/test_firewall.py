"""Checks of role ``firewall``: ufw enabled, deny incoming, SSH allowed, Jupyter only when exposed."""

from __future__ import annotations

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


def _added(host) -> str:
    return host.run("ufw show added 2>&1").stdout


def test_ssh_allowed(host, settings):
    added = _added(host)
    port = settings.get("ssh_port") or 22
    assert any(f"{port}/tcp" in line and ("limit" in line or "allow" in line)
               for line in added.splitlines()), _msg(
        f"no ufw rule lets SSH (port {port}) in: the next login would be refused", APPLY)


def test_jupyter_port_only_when_exposed(host, settings):
    ip, port = settings.get("jupyter_ip", "127.0.0.1"), settings.get("jupyter_port", 8888)
    rules = [line for line in _added(host).splitlines() if "dlrig jupyter" in line]
    if is_loopback(ip):
        assert not rules, _msg(f"Jupyter listens on {ip} but ufw opens port {port}",
                               f"`sudo ufw delete {rules[0].removeprefix('ufw ')}`" if rules else APPLY)
    else:
        assert any(str(port) in r for r in rules), _msg(
            f"jupyter_ip is {ip} but ufw has no rule for port {port}", APPLY)
