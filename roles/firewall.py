"""Role ``firewall``: ufw, deny incoming by default, SSH rate-limited and allowed *before* enabling.

Order on the host: install ufw; add the SSH rule(s) for every port sshd may listen on (the port
this connection came in on, ``ssh_port``, ``ssh_extra_ports`` and what ``sshd -T`` reports); add
Jupyter's port only when ``jupyter_ip`` (the jupyter role's setting, when that role exists) is not
loopback; add ``firewall_allow``; set the default policies; enable last. ``ufw enable`` keeps
established connections (ufw's before.rules accept RELATED,ESTABLISHED), so the session running
the apply survives.

Rules are compared through ufw itself (``ufw --dry-run``), so converged hosts plan no change.
dlrig adds rules and never deletes any (a rule you drop from ``firewall_allow`` stays until you
``ufw delete`` it): deleting rules it cannot tell apart from yours could cut a path you rely on.
"""

from __future__ import annotations

import ipaddress

from dlrig.roles.settings.firewall import DEFAULTS
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from dlrig.engine import aptget
from dlrig.engine.facts import (
    SshConnection,
    SshdEffectivePorts,
    UfwRulesPresent,
    UfwState,
    fact,
)
from dlrig.engine.hostdata import setting
from dlrig.engine.settings import registry

COMMENT = "dlrig"


def is_loopback(ip: str | None) -> bool:
    """True for addresses only this machine can reach (``localhost``, 127/8, ::1)."""
    if ip is None:
        return True
    value = str(ip).strip().strip("[]")
    if value == "localhost":
        return True
    if value in ("", "*", "0.0.0.0", "::"):
        return False
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False  # a host name: assume reachable from outside


def jupyter_ip() -> str:
    """The jupyter role's ``jupyter_ip`` when that role is registered, else loopback."""
    return setting("jupyter_ip") if "jupyter_ip" in registry() else "127.0.0.1"


def jupyter_port() -> int:
    return int(setting("jupyter_port")) if "jupyter_port" in registry() else 8888


def ssh_ports() -> list[int]:
    conn = fact(SshConnection, _sudo=False)
    ports = {int(setting("ssh_port") or 22), *(int(p) for p in setting("ssh_extra_ports") or [])}
    if conn is not None:
        ports.add(conn["port"])
    ports.update(fact(SshdEffectivePorts) or [])
    return sorted(ports)


def wanted_rules() -> list[str]:
    """ufw rule commands (without the leading ``ufw``), SSH first."""
    action = "limit" if host.data.firewall_ssh_limit else "allow"
    rules = [f"{action} {p}/tcp comment '{COMMENT} ssh'" for p in ssh_ports()]
    if not is_loopback(jupyter_ip()):
        port = jupyter_port()
        src = host.data.firewall_jupyter_from
        spec = f"from {src} to any port {port} proto tcp" if src else f"{port}/tcp"
        rules.append(f"allow {spec} comment '{COMMENT} jupyter'")
    rules += [f"allow {spec} comment '{COMMENT}'" for spec in host.data.firewall_allow]
    return rules


@deploy("firewall", data_defaults=DEFAULTS)
def firewall():
    aptget.install("ufw", ["ufw"])

    rules = wanted_rules()
    present = set(fact(UfwRulesPresent, rules=tuple(rules)))
    for i, rule in enumerate(rules):
        if i not in present:
            server.shell(name=f"ufw {rule}", commands=[f"ufw {rule}"])

    state = fact(UfwState) or {}
    policy = state.get("policy", {})
    if policy.get("input") not in ("drop", "deny"):
        server.shell(name="ufw default deny incoming", commands=["ufw default deny incoming"])
    if policy.get("output") not in ("accept", "allow"):
        server.shell(name="ufw default allow outgoing", commands=["ufw default allow outgoing"])
    if not state.get("enabled"):
        server.shell(name="enable ufw (SSH already allowed)", commands=["ufw --force enable"])
