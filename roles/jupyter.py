"""Role ``jupyter``: JupyterLab from the pytorch role's environment, a systemd service of the user.

Bound to ``jupyter_ip`` (default 127.0.0.1: reach it over an SSH tunnel, see
:func:`tunnel_hint`) on ``jupyter_port``; password only as a hash
(``jupyter_password_hash``, or ``dlrig apply --jupyter-password-prompt`` hashing on the
controller), no token; root_dir the user's home or ``jupyter_root_dir``. The config is
``~USER/.jupyter/jupyter_server_config.py`` (mode 600), the unit ``dlrig-jupyter.service``; the
service is restarted only when one of them changed. Where systemd is not PID 1 (chroots,
containers, dlrig's test hosts) the unit is enabled, not started.
"""

from __future__ import annotations

import re
import shlex

from dlrig.roles import ROOT_OWNED, template
from dlrig.roles.pytorch import packages_command, wheelhouse
from dlrig.roles.settings.jupyter import DEFAULTS, PLAN_ONLY
from pyinfra import host, logger
from pyinfra.api import DeployError, deploy
from pyinfra.facts.files import Directory, FindInFile, Link
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from dlrig.engine import passwords, pyenv
from dlrig.engine.facts import PythonEnv, SystemdBooted, fact
from dlrig.engine.hostdata import owned_by, owner, owner_home, setting

_PASSWORD_FIX = ("set jupyter_password_hash (python -c 'from jupyter_server.auth import passwd; print(passwd())') "
                 "or run `dlrig apply --jupyter-password-prompt`")


def installed_hash(lines: list[str] | None) -> str | None:
    """The password hash in an installed jupyter_server_config.py (FindInFile lines), or None."""
    for line in lines or []:
        m = re.search(r'hashed_password\s*=\s*"([^"]+)"', line)
        if m and passwords.check_password_hash(m.group(1)) is None:
            return m.group(1)
    return None


@deploy("jupyter", data_defaults=DEFAULTS)
def jupyter():
    user, home, prefix, env_name, envp, python = pyenv.env_layout(
        owner(), setting("conda_prefix"), setting("env_name"), owner_home())
    as_user = pyenv.as_user(user)
    config_path = f"{home}/.jupyter/jupyter_server_config.py"
    # No hash given: keep the installed one (set once with --jupyter-password-prompt), else refuse.
    password_hash = setting("jupyter_password_hash") or installed_hash(
        fact(FindInFile, path=config_path, pattern="hashed_password"))
    if not password_hash:
        if not host.data.get(PLAN_ONLY):
            raise DeployError(f"jupyter_password_hash is not set and {config_path} holds none: {_PASSWORD_FIX}")
        password_hash = "(set before apply)"  # `dlrig plan` plans on; its report says apply needs a hash
    root_dir = setting("jupyter_root_dir") or home
    if root_dir != home and not fact(Directory, path=root_dir):
        raise DeployError(f"jupyter_root_dir {root_dir} does not exist on the host: mount or create it first")

    env = fact(PythonEnv, python=python)
    selected = setting("dlrig_roles") or []
    if env is None and selected and "pytorch" not in selected:
        raise DeployError(f"no environment at {envp}: apply the pytorch role first (--roles pytorch,jupyter)")
    pkgs_changed = None
    locked = bool(setting("dlrig_lock_file"))  # apply --locked: JupyterLab is one of the locked pip set
    if not locked and (env is None or pyenv.unsatisfied(pyenv.JUPYTER_PACKAGES, env.get("dists", {}))):
        pkgs_changed = server.shell(
            name=f"JupyterLab in {env_name}",
            commands=[packages_command(python, list(pyenv.JUPYTER_PACKAGES),
                                       tuple(setting("pip_find_links") or ()), uv=setting("use_uv"),
                                       wheelhouse=wheelhouse())],
            **as_user,
        )

    files.directory(name="the user's ~/.jupyter", path=f"{home}/.jupyter", **owned_by(user))
    config = files.template(
        name="jupyter_server_config.py (password hash only)",
        src=template("jupyter_server_config.py.j2"),
        dest=config_path,
        ip=str(setting("jupyter_ip")),
        port=int(setting("jupyter_port")),
        root_dir=root_dir,
        password_hash=password_hash,
        mode="600",
        **owned_by(user),
    )
    unit = files.template(
        name=f"systemd unit {pyenv.JUPYTER_UNIT}",
        src=template("jupyter.service.j2"),
        dest=f"/etc/systemd/system/{pyenv.JUPYTER_UNIT}",
        mode="644",
        **_unit_vars(user, env_name, envp, root_dir, config_path),
        **ROOT_OWNED,
    )

    wants = f"/etc/systemd/system/multi-user.target.wants/{pyenv.JUPYTER_UNIT}"
    if not fact(Link, path=wants):
        server.shell(
            name=f"enable {pyenv.JUPYTER_UNIT} at boot",
            commands=[f"systemctl enable {shlex.quote(pyenv.JUPYTER_UNIT)}"],
        )

    if fact(SystemdBooted):
        server.shell(
            name="systemctl daemon-reload (unit changed)",
            commands=["systemctl daemon-reload"],
            _if=unit.did_change,
        )
        systemd.service(name=f"{pyenv.JUPYTER_UNIT} running", service=pyenv.JUPYTER_UNIT, running=True)
        changed = [config, unit] + ([pkgs_changed] if pkgs_changed else [])
        systemd.service(
            name=f"restart {pyenv.JUPYTER_UNIT} (config changed)",
            service=pyenv.JUPYTER_UNIT,
            running=True,
            restarted=True,
            _if=any_changed(*changed),
        )
    else:
        logger.info(f"{host.name}: systemd is not running: {pyenv.JUPYTER_UNIT} enabled, starts at boot")


def _unit_vars(user: str, env_name: str, envp: str, root_dir: str, config_path: str) -> dict:
    """Template variables of jupyter.service.j2 (the template's ``user`` is not pyinfra's)."""
    return {"unit_user": user, "env_name": env_name, "env_prefix": envp,
            "root_dir": root_dir, "config_path": config_path}
