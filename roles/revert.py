"""``dlrig revert``: the config-only roles back to the distribution's defaults.

Each function undoes what :data:`dlrig.roles.footprint.FOOTPRINT` lists for its role, with the
role's own guards and scripts (never copies of them):

* ``ssh``: the drop-in is emptied through the ssh role's ``VALIDATE_AND_INSTALL`` (``sshd -t`` on
  the whole config without dlrig's lines, the old drop-in kept byte for byte), after the role's
  lock-out proof (``prove_access_unchanged``) said dlrig's login keeps working without it; sshd is
  reloaded (``RELOAD``), a brand-new SSH login must still get sudo, else the drop-in is restored
  (``RESTORE``). Only then is the empty drop-in and dlrig's staging directory removed. Keys added
  to ``authorized_keys`` stay (removing them could lock the owner out).
* ``firewall``: ``ufw --force disable`` first (ufw ships disabled; nothing drops SSH afterwards),
  then every rule whose comment starts with ``dlrig`` is deleted. ufw itself stays installed.
* ``power``: the sleep targets are unmasked (only links to /dev/null), the logind and GDM drop-ins
  and the wake-on-LAN ``.link`` files removed.
* ``unattended_upgrades``: dlrig's apt.conf.d file removed (the distribution's 50unattended-upgrades
  rules again).
* ``dualboot``: the GRUB drop-in removed (update-grub), the data_disks block of /etc/fstab removed
  (mount points stay: they may hold files), the hardware clock back in UTC.

Packages a role installed when missing (openssh-server, ufw, os-prober, ...) stay installed.
"""

from __future__ import annotations

from dlrig.roles import dualboot as DUALBOOT
from dlrig.roles import power as POWER
from dlrig.roles import ssh as SSH
from dlrig.roles import unattended_upgrades as UU
from dlrig.roles.firewall import COMMENT
from dlrig.roles.settings.ssh import DEFAULTS as SSH_DEFAULTS
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FindFiles, Link, Sha1File
from pyinfra.facts.server import User, Which
from pyinfra.operations import files, python, server
from pyinfra.operations.util import any_changed

from dlrig.engine.facts import SshConnection, SystemdBooted, UfwState, fact
from dlrig.engine.hostdata import owner

STAGING_DIR = SSH.STAGING.rsplit("/", 1)[0]


@deploy("revert ssh", data_defaults=SSH_DEFAULTS)
def revert_ssh():
    if fact(Sha1File, path=SSH.DROPIN) is None:
        files.directory(name=f"no {STAGING_DIR}", path=STAGING_DIR, present=False)
        return
    login = fact(User, _sudo=False)
    conn = fact(SshConnection, _sudo=False)
    if conn:  # refuses (DeployError, nothing changed) when dlrig's login would not survive
        SSH.prove_access_unchanged(login, SSH.login_method(host.data), conn, "", [], owner(), None)
    old_ports = SSH._dropin_ports(True)
    moved = "0" if old_ports == [22] else "1"
    server.shell(name=f"validate the config without dlrig's lines (sshd -t), empty {SSH.DROPIN}",
                 commands=[SSH._sh(SSH.VALIDATE_AND_INSTALL, "/dev/null", SSH.DROPIN, SSH.MAIN_CONFIG, "",
                                   SSH.PREVIOUS)])
    server.shell(name="reload sshd (live sessions survive)", commands=[SSH._sh(SSH.RELOAD, moved)])
    if conn:
        python.call(name="prove a new SSH login still gets sudo (else restore dlrig's drop-in)",
                    function=SSH._prove_or_restore,
                    restore=SSH._sh(SSH.RESTORE, SSH.DROPIN, SSH.PREVIOUS, moved), login=login)
    server.shell(name=f"remove the empty {SSH.DROPIN} and {STAGING_DIR}",
                 commands=[f"if [ ! -s {SSH.DROPIN} ]; then rm -f {SSH.DROPIN}; fi; rm -rf {STAGING_DIR}; "
                           f"rmdir --ignore-fail-on-non-empty {STAGING_DIR.rsplit('/', 1)[0]}"])


def dlrig_rules(rules: list[str]) -> list[str]:
    """The ``ufw delete`` arguments of the rules (``ufw show added`` lines) dlrig added."""
    out = []
    for line in rules:
        spec, sep, comment = line.removeprefix("ufw ").partition(" comment ")
        if sep and comment.strip("'\"").split(" ")[0] == COMMENT:
            out.append(spec.strip())
    return out


@deploy("revert firewall")
def revert_firewall():
    state = fact(UfwState) or {}
    if not state.get("installed"):
        return
    if state.get("enabled"):
        server.shell(name="ufw --force disable (ufw ships disabled)", commands=["ufw --force disable"])
    for spec in dlrig_rules(state.get("rules", [])):
        server.shell(name=f"ufw delete {spec}", commands=[f"ufw --force delete {spec}"])


@deploy("revert power")
def revert_power():
    unmasked = []
    for t in POWER.SLEEP_TARGETS:
        path = f"/etc/systemd/system/{t}"
        if (fact(Link, path=path) or {}).get("link_target") == "/dev/null":
            unmasked.append(files.link(name=f"unmask {t}", path=path, present=False))
    if unmasked and fact(SystemdBooted):
        server.shell(name="systemctl daemon-reload", commands=["systemctl daemon-reload"], _if=any_changed(*unmasked))
    files.file(name=f"no {POWER.LOGIND_DROPIN}", path=POWER.LOGIND_DROPIN, present=False)
    gdm = files.file(name=f"no {POWER.GDM_DCONF}", path=POWER.GDM_DCONF, present=False)
    if fact(Which, command="dconf"):
        server.shell(name="dconf update", commands=["dconf update"], _if=gdm.did_change)
    for link in fact(FindFiles, path="/etc/systemd/network", fname="50-dlrig-wol-*.link", maxdepth=1) or []:
        files.file(name=f"no {link}", path=link, present=False)


@deploy("revert unattended_upgrades")
def revert_unattended_upgrades():
    files.file(name=f"no {UU.CONF}", path=UU.CONF, present=False)


@deploy("revert dualboot")
def revert_dualboot():
    DUALBOOT.hardware_clock(False)
    dropin = files.file(name=f"no {DUALBOOT.GRUB_DROPIN}", path=DUALBOOT.GRUB_DROPIN, present=False)
    if fact(Which, command="update-grub"):
        server.shell(name="update-grub", commands=["update-grub"], _if=dropin.did_change)
    files.block(name="no data_disks in /etc/fstab", path=DUALBOOT.FSTAB, present=False,
                marker=DUALBOOT.FSTAB_MARKER)


REVERT = {"ssh": revert_ssh, "firewall": revert_firewall, "power": revert_power,
          "unattended_upgrades": revert_unattended_upgrades, "dualboot": revert_dualboot}
