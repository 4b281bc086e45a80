"""Settings of role ``jupyter``: JupyterLab from the pytorch role's environment, a systemd service of the user.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/jupyter.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from dlrig.engine import passwords
from dlrig.engine.settings import Setting, declare

# Data that `dlrig plan` sends pyinfra (a dry run): a missing password hash is not a refusal there.
PLAN_ONLY = "dlrig_plan_only"


DEFAULTS = declare(
    "jupyter",
    Setting("jupyter_ip", "127.0.0.1", "ip", "address JupyterLab listens on (127.0.0.1: over an SSH tunnel)"),
    Setting("jupyter_port", 8888, "port", "JupyterLab's port"),
    Setting(
        "jupyter_password_hash",
        None,
        "str",
        "JupyterLab password hash (jupyter_server.auth.passwd()); or apply --jupyter-password-prompt",
        nullable=True,
        secret=True,
        check=passwords.check_password_hash,
    ),
    Setting(
        "jupyter_root_dir",
        None,
        "path",
        "folder JupyterLab shows (e.g. a data disk); None: the user's home",
        nullable=True,
    ),
)


# --- the laptop side: the SSH tunnel line `apply` ends with -------------------------------------

def _forward_target(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    return "localhost" if addr.is_unspecified or str(addr) in ("127.0.0.1", "::1") else ip


def tunnel_hint(host_name: str, data: dict[str, Any]) -> str:
    """The laptop side: an ``ssh -N -L`` line and a ``~/.ssh/config`` stanza for JupyterLab."""
    port = int(data.get("jupyter_port") or 8888)
    target = _forward_target(str(data.get("jupyter_ip") or "127.0.0.1"))
    address = data.get("ssh_hostname") or host_name
    user = data.get("ssh_user") or data.get("workstation_user")
    dest = f"{user}@{address}" if user else address
    ssh_port = data.get("ssh_port")
    key = data.get("ssh_key")
    extra = (f" -p {ssh_port}" if ssh_port and int(ssh_port) != 22 else "") + (f" -i {key}" if key else "")
    alias = re.sub(r"[^A-Za-z0-9._-]+", "-", host_name.removeprefix("@")) + "-jupyter"
    stanza = [f"Host {alias}", f"    HostName {address}"]
    if user:
        stanza.append(f"    User {user}")
    if ssh_port and int(ssh_port) != 22:
        stanza.append(f"    Port {ssh_port}")
    if key:
        stanza.append(f"    IdentityFile {key}")
    stanza += [f"    LocalForward {port} {target}:{port}", "    ExitOnForwardFailure yes"]
    return "\n".join([
        f"JupyterLab on {host_name}: open http://localhost:{port}/ after starting the tunnel:",
        f"  ssh -N -L {port}:{target}:{port}{extra} {dest}",
        "or add to ~/.ssh/config on your laptop, then run `ssh -N " + alias + "`:",
        *("  " + line for line in stanza),
    ])
