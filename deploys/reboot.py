"""pyinfra deploy file for ``dlrig apply --reboot``: reboot and wait, never the machine dlrig runs on."""

from dlrig.deploys import sudo_password
from pyinfra import host
from pyinfra.operations import server

from dlrig.engine.facts import BootId

sudo_password(host)
if host.name.startswith("@local") or host.get_fact(BootId) == host.data.get("dlrig_local_boot_id"):
    # Same running kernel as the controller (@local, a chroot or container): a reboot would take
    # dlrig's own machine down. Recorded as an operation so the CLI can report it per host.
    server.shell(name="not rebooting: it is the machine dlrig runs on", commands=["true"])
else:
    server.reboot(name="reboot (driver changed)", delay=5, interval=2, reboot_timeout=900)
