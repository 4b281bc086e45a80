"""Role ``power``: a remote training box never sleeps; optional wake-on-LAN.

* The sleep targets are masked as ``/etc/systemd/system/<target> -> /dev/null`` links, exactly
  what ``systemctl mask`` writes, so it works in a chroot too (``systemctl daemon-reload`` runs
  only when systemd is running). With them masked, logind and GNOME cannot suspend.
* logind ignores the suspend/hibernate keys and the lid (a drop-in in ``logind.conf.d``; read at
  logind's next start: restarting logind can end a desktop session, so dlrig does not).
* GDM's own idle suspend (the login screen suspends after 20 min on AC in Ubuntu) is turned off
  through a dconf keyfile in the ``gdm`` system database (``/etc/dconf/db/gdm.d``), compiled by
  ``dconf update``; only where gdm3 is installed.
* ``power_wol_interface``: a systemd ``.link`` file matching that interface's MAC address with
  ``WakeOnLan=magic`` (udev applies it when the device appears: next boot).
"""

from __future__ import annotations

from dlrig.roles import ROOT_OWNED, template
from dlrig.roles.settings.power import DEFAULTS
from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import Directory
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from dlrig.engine import aptget
from dlrig.engine.facts import NetInterfaceMac, fact

SLEEP_TARGETS = ("sleep.target", "suspend.target", "hibernate.target", "hybrid-sleep.target",
                 "suspend-then-hibernate.target")


GDM_DCONF = "/etc/dconf/db/gdm.d/90-dlrig-power"
LOGIND_DROPIN = "/etc/systemd/logind.conf.d/90-dlrig-power.conf"


@deploy("power", data_defaults=DEFAULTS)
def power():
    if host.data.power_never_sleep:
        masked = [
            files.link(name=f"mask {t}", path=f"/etc/systemd/system/{t}", target="/dev/null",
                       force=True, force_backup=False)
            for t in SLEEP_TARGETS
        ]
        server.shell(
            name="systemctl daemon-reload (when systemd runs)",
            commands=["if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi"],
            _if=any_changed(*masked),
        )
        files.template(name="logind ignores suspend keys and the lid", src=template("logind-dlrig.conf.j2"),
                       dest=LOGIND_DROPIN, mode="644", **ROOT_OWNED)
        if "gdm3" in (fact(DebPackages) or {}):
            dconf = []
            aptget.install("dconf-cli (dconf update)", ["dconf-cli"])
            dconf.append(files.template(name="GDM never suspends at the login screen",
                                        src=template("gdm-dconf-power.j2"), dest=GDM_DCONF, mode="644", **ROOT_OWNED))
            server.shell(name="dconf update", commands=["dconf update"], _if=any_changed(*dconf))

    iface = host.data.power_wol_interface
    if iface:
        mac = fact(NetInterfaceMac, iface=iface)
        if mac is None:
            if fact(Directory, path="/sys/class/net") is None:
                raise DeployError("power: /sys/class/net is missing on this host; cannot find "
                                  f"power_wol_interface {iface}")
            raise DeployError(f"power: interface {iface} not found on {host.name}; "
                              "set power_wol_interface to one listed by `ip link`")
        files.template(name=f"wake-on-LAN on {iface}", src=template("wol.link.j2"),
                       dest=f"/etc/systemd/network/50-dlrig-wol-{iface}.link", mode="644",
                       iface=iface, mac=mac, **ROOT_OWNED)
