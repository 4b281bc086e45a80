"""What each role manages on a host: every file, unit, apt pin/hold/source, masked target, marked
block and firewall rule (``dlrig files``, and the README table "What dlrig touches").

The paths come from the roles' own constants, so a path renamed in a role is renamed here. The host
test ``tests/hosts/test_revert_hosts.py`` applies the config-only roles to a real Debian 12 host and
proves that every file they change is listed here; ``REVERTIBLE`` are the roles ``dlrig revert``
undoes (``dlrig.roles.revert``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass

from dlrig.roles import cuda, cudnn, dualboot, firewall, nvidia_driver, power, ssh, unattended_upgrades
from dlrig.roles.settings.base import CA_DIR

from dlrig.engine import pyenv

#: Roles ``dlrig revert`` restores to the distribution's defaults (configuration only).
REVERTIBLE = ("ssh", "firewall", "power", "unattended_upgrades", "dualboot")

# kinds, in the order the table shows them
KINDS = ("file", "block", "mask", "unit", "apt source", "apt pin", "apt hold", "firewall rule", "package")


@dataclass(frozen=True)
class Item:
    kind: str
    what: str  # a path (``*`` for a name the settings choose), a unit, a package pattern or a rule
    when: str = ""  # the setting that makes the role write it, if not always
    note: str = ""

    def covers(self, path: str) -> bool:
        return self.kind in ("file", "block", "mask") and fnmatch.fnmatchcase(path, self.what)


HOME = "~owner"  # the owner's home directory (``getent passwd``)

FOOTPRINT: dict[str, tuple[Item, ...]] = {
    "base": (
        Item("file", "/etc/apt/apt.conf.d/90dlrig", note="dpkg lock timeout, cache_dir"),
        Item("file", f"{CA_DIR}/dlrig-*.crt", "extra_ca_certificates", "then update-ca-certificates"),
        Item("apt source", "universe", "ubuntu_enable_universe", "add-apt-repository universe (Ubuntu)"),
        Item("package", "build-essential, curl, git, ... (base_packages)"),
    ),
    "nvidia_driver": (
        Item("file", nvidia_driver.KEYRING, "driver_source nvidia"),
        Item("apt source", nvidia_driver.REPO_LIST, "driver_source nvidia"),
        Item("apt source", nvidia_driver.NONFREE_LIST, "Debian", "contrib non-free non-free-firmware"),
        Item("apt pin", nvidia_driver.DRIVER_PIN, "driver_source nvidia", "the driver branch"),
        Item("file", nvidia_driver.NOUVEAU, note="then update-initramfs -u"),
        Item("file", nvidia_driver.REBOOT_MARKER, note="when the driver changed"),
        Item("apt hold", "the driver packages", "driver_hold"),
        Item("unit", "nvidia-persistenced.service (enabled)", "driver_persistence"),
        Item("file", nvidia_driver.MOK_PASSWORD_FILE, "Secure Boot", "removed after the MOK enrolment"),
        Item("package", "nvidia-driver-* / cuda-drivers-* and kernel headers"),
    ),
    "cuda": (
        Item("file", cuda.PROFILE, "cuda_profile"),
        Item("package", "cuda-toolkit-* (NVIDIA) or nvidia-cuda-toolkit (distribution)"),
    ),
    "cudnn": (
        Item("apt pin", cudnn.PIN, "NVIDIA's repository"),
        Item("package", "libcudnn* / cudnn*"),
    ),
    "conda": (
        Item("file", f"{HOME}/miniforge3/*", note="the conda prefix (conda_prefix)"),
        Item("file", f"{HOME}/miniforge3/.condarc"),
        Item("block", f"{HOME}/.bashrc", note="# BEGIN/END dlrig conda initialize"),
    ),
    "pytorch": (
        Item("file", f"{HOME}/miniforge3/envs/*", note="the environment (conda_env_name), its pip.conf"),
        Item("file", f"{HOME}/miniforge3/dlrig/*", note="environment.yml, locked specs"),
        Item("file", f"{HOME}/.local/share/jupyter/kernels/*", note="the Jupyter kernel"),
    ),
    "jupyter": (
        Item("file", f"{HOME}/.jupyter/jupyter_server_config.py", note="password hash only"),
        Item("unit", f"/etc/systemd/system/{pyenv.JUPYTER_UNIT}", note="enabled and running"),
    ),
    "ssh": (
        Item("file", ssh.DROPIN, note="validated with sshd -t, reloaded"),
        Item("file", "/var/lib/dlrig/ssh/*", note="staging and the previous drop-in"),
        Item("block", f"{HOME}/.ssh/authorized_keys", "ssh_authorized_keys", "keys added, never removed"),
        Item("package", "openssh-server", note="when missing"),
    ),
    "firewall": (
        Item("firewall rule", f"ufw limit SSH_PORT/tcp comment '{firewall.COMMENT} ssh'",
             note="every port sshd listens on"),
        Item("firewall rule", f"ufw allow JUPYTER_PORT/tcp comment '{firewall.COMMENT} jupyter'",
             "jupyter_ip not loopback"),
        Item("firewall rule", f"ufw allow SPEC comment '{firewall.COMMENT}'", "firewall_allow"),
        Item("file", "/etc/ufw/user*.rules", note="ufw's own files for the rules above"),
        Item("file", "/etc/ufw/ufw.conf", note="ENABLED=yes (ufw enable)"),
        Item("package", "ufw", note="when missing"),
    ),
    "power": (
        *(Item("mask", f"/etc/systemd/system/{t}", "power_never_sleep", "-> /dev/null")
          for t in power.SLEEP_TARGETS),
        Item("file", power.LOGIND_DROPIN, "power_never_sleep"),
        Item("file", power.GDM_DCONF, "gdm3 installed", "then dconf update"),
        Item("file", "/etc/systemd/network/50-dlrig-wol-*.link", "power_wol_interface"),
        Item("package", "dconf-cli", "gdm3 installed"),
    ),
    "dualboot": (
        Item("file", dualboot.GRUB_DROPIN, note="then update-grub"),
        Item("file", "/etc/adjtime", "rtc_local", "LOCAL or UTC"),
        Item("block", dualboot.FSTAB, "data_disks", dualboot.FSTAB_MARKER.format(mark="BEGIN/END")),
        Item("file", "/mnt/* (data_disks mount points)", "data_disks"),
        Item("package", "os-prober, ntfs-3g", note="when missing"),
    ),
    "unattended_upgrades": (
        Item("file", unattended_upgrades.CONF, "unattended_upgrades_enabled"),
        Item("package", "unattended-upgrades", note="when missing"),
    ),
}


def items(roles: list[str] | None = None) -> list[tuple[str, Item]]:
    from dlrig.engine.catalogue import ORDER

    return [(r, i) for r in ORDER if roles is None or r in roles for i in FOOTPRINT[r]]


def as_json(roles: list[str] | None = None) -> list[dict]:
    return [{"role": r, **asdict(i), "revert": r in REVERTIBLE} for r, i in items(roles)]


def markdown_table(roles: list[str] | None = None) -> str:
    """The README's table (``<!-- files: begin -->`` ... ``<!-- files: end -->``)."""
    lines = ["| role | kind | what | when | note |", "|---|---|---|---|---|"]
    for r, i in items(roles):
        cells = [r + (" (revert)" if r in REVERTIBLE else ""), i.kind, f"`{i.what}`", i.when, i.note]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def covering(path: str, roles: list[str]) -> list[str]:
    """The roles among ``roles`` whose footprint lists ``path``."""
    return [r for r, i in items(roles) if i.covers(path)]
