"""Plans of roles ssh, firewall, power, dualboot, unattended_upgrades on @fake hosts.

FAKES: canned facts (tests/plans/facts/*.json, plus the per-test answers below); nothing runs.
This proves the Ubuntu paths and the ordering/guards; the Debian host tests prove the effects.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest
from dlrig.roles import ssh as ssh_role
from pyinfra.api import DeployError

from tests.plans.harness import FACTS, commands, fake_host, plan

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKbAt1BWk7wJpS5m0N7Yz3r1Q6ZV2UGmJX1Fz2o1p3kl me@laptop"
CONN = {"SSHCONN": ["SSHCONN 192.168.1.20 50000 192.168.1.10 22"]}


def _dpkg_with(os: str, *names: str) -> list[str]:
    lines = json.loads((FACTS / f"{os}.json").read_text())["dpkg -l"]
    return lines + [f"ii  {n:14} 1.0                amd64        fake" for n in names]


def _ops(ops, role):
    return [o["operation"] for o in ops if o["role"] == role]


# ---------------------------------------------------------------- ssh

def test_ssh_installs_keys_then_validates_then_reloads():
    ops = plan([fake_host("rig", "ubuntu-24.04", facts={**CONN, "getent passwd": ["KEYS 0"]},
                          ssh_user="me", ssh_authorized_keys=[KEY])], roles=["ssh"])["rig"]
    names = _ops(ops, "ssh")
    assert names.index("authorized keys of me") < names.index("stage the sshd drop-in")
    assert names[-3:] == ["validate the whole config (sshd -t) and install /etc/ssh/sshd_config.d/00-dlrig.conf",
                          "reload sshd (live sessions survive)",
                          "prove a new SSH login still gets sudo (else restore the old config)"]
    text = commands(ops, "ssh")
    assert "UPLOAD /var/lib/dlrig/ssh/00-dlrig.conf" in text
    assert "Port 22\nPermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no" in text
    assert "sshd -t -f" in text and "kill -HUP" in text and "systemctl reload" in text
    assert "restart ssh.service" not in text and "systemctl restart ssh\n" not in text


def test_ssh_keeps_the_port_it_was_reached_on_and_adds_extra_ports():
    facts = {"SSHCONN": ["SSHCONN 10.0.0.2 50000 10.0.0.1 2222"], "getent passwd": ["KEYS 1"]}
    ops = plan([fake_host("rig", "debian-12", facts=facts, ssh_user="me", ssh_port=2222,
                          ssh_extra_ports=[2022])], roles=["ssh"])["rig"]
    text = commands(ops, "ssh")
    assert "Port 2022\nPort 2222\n" in text and "Port 22\n" not in text
    assert "dlrig-ssh 1" in text  # ports changed: socket-activated sshd gets its socket regenerated


def test_ssh_refuses_password_off_without_any_key():
    with pytest.raises(DeployError, match="refusing to turn password login off: me has no authorized key"):
        plan([fake_host("rig", "ubuntu-22.04", facts={**CONN, "getent passwd": ["KEYS 0"]},
                        ssh_user="me", ssh_password_authentication=False)], roles=["ssh"])


def test_ssh_auto_leaves_passwords_alone_without_keys():
    ops = plan([fake_host("rig", "ubuntu-22.04", facts={**CONN, "getent passwd": ["KEYS 0"]},
                          ssh_user="me")], roles=["ssh"])["rig"]
    upload = commands(ops, "ssh").split("UPLOAD /var/lib/dlrig/ssh/00-dlrig.conf", 1)[1].split("chmod", 1)[0]
    assert "PasswordAuthentication" not in upload and "PermitRootLogin no" in upload


def test_ssh_converged_host_plans_nothing():
    text = ssh_role.render_dropin(ports=[22], permit_root_login="no", password_authentication=False,
                                  extra_config=[])
    sha = hashlib.sha1(text.encode()).hexdigest()
    facts = {**CONN, "getent passwd": ["KEYS 1"],
             re.compile(r"sha1sum /etc/ssh/sshd_config.d/00-dlrig.conf"): [f"{sha}  /etc/ssh/sshd_config.d/00-dlrig.conf"]}
    ops = plan([fake_host("rig", "ubuntu-24.04", facts=facts, ssh_user="me")], roles=["ssh"])["rig"]
    assert _ops(ops, "ssh") == []


def _sshd(*lines: str) -> dict:
    """FAKE ``sshd -T`` answers (SshdAccess's script, matched by its tag) for the lock-out guards."""
    return {"dlrig-sshd": list(lines)}


def _ssh_plan(facts: dict, **data):
    return plan([fake_host("rig", "ubuntu-24.04", facts={**CONN, "getent passwd": ["KEYS 1"], "echo $USER": ["me"], **facts},
                           ssh_user="me", **data)], roles=["ssh"])["rig"]


def _rsa_key(tmp_path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "old@laptop",
                    "-f", str(tmp_path / "k")], check=True)
    return (tmp_path / "k.pub").read_text().strip()


def test_ssh_keeps_the_port_the_connection_came_in_on_over_ssh_port(caplog):
    """Connected on 2222 while ssh_port says 22 (a port forward): sshd stays on 2222, with a warning."""
    text = commands(_ssh_plan({"SSHCONN": ["SSHCONN 10.0.0.2 50000 10.0.0.1 2222"]}, ssh_port=22), "ssh")
    assert "Port 2222\n" in text and "Port 22\n" not in text
    assert "connected to port 22 but sshd received it on 2222 (port forwarding?)" in caplog.text


def test_ssh_no_port_warning_when_the_ports_agree(caplog):
    _ssh_plan({"SSHCONN": ["SSHCONN 10.0.0.2 50000 10.0.0.1 2222"]}, ssh_port=2222)
    assert "port forwarding" not in caplog.text


@pytest.mark.parametrize("bad_line", ["first", "last", "past the end", "in another file"])
def test_ssh_shows_the_drop_in_line_sshd_rejects(bad_line):
    """sshd -t's message names a line of the candidate drop-in: the refusal quotes that line (first
    and last line of the candidate); a line number past its end or in another file quotes nothing."""
    lines = ssh_role.render_dropin(ports=[22], permit_root_login="no", password_authentication=None,
                                   extra_config=[]).splitlines()
    n = {"first": 1, "last": len(lines), "past the end": len(lines) + 5, "in another file": 2}[bad_line]
    where = "/etc/ssh/sshd_config" if bad_line == "in another file" else ssh_role.DROPIN
    msg = f"{where} line {n}: Bad configuration option"
    with pytest.raises(DeployError, match="sshd -t rejected the new config") as e:
        _ssh_plan({**_sshd("GROUPS me me", f"INVALID me {msg}"), "getent passwd": ["KEYS 0"]})
    if bad_line in ("first", "last"):
        assert str(e.value).endswith(f"{msg} (the line is {lines[n - 1].strip()!r})")
    else:
        assert str(e.value).endswith(msg)


def test_ssh_refuses_an_owner_key_type_the_new_sshd_does_not_accept(tmp_path):
    rsa = _rsa_key(tmp_path)
    facts = _sshd("GROUPS me me", "CUR me pubkeyauthentication yes", "NEW me pubkeyauthentication yes",
                  "NEW me pubkeyacceptedalgorithms ssh-ed25519,sk-ssh-ed25519@openssh.com")
    with pytest.raises(DeployError, match=r"ssh_authorized_keys key 1 .*does not accept ssh-rsa keys"):
        _ssh_plan(facts, ssh_authorized_keys=[rsa])
    # the same sshd with an ed25519 key, or accepting RSA signatures: planned
    assert _ops(_ssh_plan(facts, ssh_authorized_keys=[KEY]), "ssh")
    ok = _sshd("GROUPS me me", "CUR me pubkeyauthentication yes", "NEW me pubkeyauthentication yes",
               "NEW me pubkeyacceptedalgorithms ssh-ed25519,rsa-sha2-512")
    assert _ops(_ssh_plan(ok, ssh_authorized_keys=[rsa]), "ssh")


def test_ssh_judges_the_owners_keys_by_the_owners_own_sshd_settings():
    """dlrig logs in as admin; the owner alice gets a Match block turning key login off: refused
    (alice's settings decide, not admin's)."""
    facts = {"echo $USER": ["admin"],
             **_sshd("GROUPS admin admin,sudo", "CUR admin pubkeyauthentication yes",
                     "NEW admin pubkeyauthentication yes", "GROUPS alice alice",
                     "CUR alice pubkeyauthentication yes", "NEW alice pubkeyauthentication no")}
    with pytest.raises(DeployError, match="password login would go off while key login is off for alice"):
        _ssh_plan(facts, workstation_user="alice", ssh_authorized_keys=[KEY])


def _owner_alice(*alice: str) -> dict:
    """dlrig logs in as admin by key (its access unchanged); the owner is alice with these sshd -T lines."""
    return {"echo $USER": ["admin"],
            **_sshd("GROUPS admin admin,sudo", "CUR admin pubkeyauthentication yes",
                    "NEW admin pubkeyauthentication yes", "GROUPS alice alice", *alice)}


@pytest.mark.parametrize("pubkey", [["NEW alice pubkeyauthentication no"], []])
def test_ssh_refuses_password_off_when_the_owners_key_login_would_be_off(pubkey):
    """pubkeyauthentication no (or none at all) for the owner while password login goes off."""
    with pytest.raises(DeployError, match="password login would go off while key login is off for alice"):
        _ssh_plan(_owner_alice("CUR alice pubkeyauthentication yes", *pubkey), workstation_user="alice",
                  ssh_authorized_keys=[KEY])


def test_ssh_owner_key_login_on_or_password_kept_plans_the_drop_in():
    on = _owner_alice("CUR alice pubkeyauthentication yes", "NEW alice pubkeyauthentication yes")
    assert "stage the sshd drop-in" in _ops(_ssh_plan(on, workstation_user="alice", ssh_authorized_keys=[KEY]), "ssh")
    # password login stays on: the owner's key login going off locks nobody out
    off = _owner_alice("CUR alice pubkeyauthentication yes", "NEW alice pubkeyauthentication no")
    assert "stage the sshd drop-in" in _ops(_ssh_plan(off, workstation_user="alice", ssh_authorized_keys=[KEY],
                                                      ssh_password_authentication=True), "ssh")


def _upload(ops) -> str:
    return commands(ops, "ssh").split("UPLOAD /var/lib/dlrig/ssh/00-dlrig.conf", 1)[1].split("chmod", 1)[0]


@pytest.mark.parametrize("data, refused", [
    ({"ssh_authorized_keys": [KEY]}, True),
    ({"ssh_password_authentication": False}, True),
    ({}, False),  # nothing to install for the user and passwords left alone: planned
])
def test_ssh_owner_must_exist_when_keys_or_password_off_need_them(data, refused):
    facts = {"getent passwd": ["NOUSER"]}
    if refused:
        with pytest.raises(DeployError, match="user me does not exist on"):
            _ssh_plan(facts, **data)
    else:
        assert "PasswordAuthentication" not in _upload(_ssh_plan(facts, **data))


def test_ssh_auto_turns_passwords_off_when_the_owner_already_has_a_key(caplog):
    assert "PasswordAuthentication no\nKbdInteractiveAuthentication no" in _upload(_ssh_plan({}))
    # ... unless dlrig itself logs in with a password: left on, with a warning
    ops = _ssh_plan({}, ssh_password="pw")
    assert "PasswordAuthentication" not in _upload(ops)
    assert "dlrig logs in as me with a password: password login left on" in caplog.text


def test_ssh_root_login_off_refused_only_while_pyinfra_is_root():
    with pytest.raises(DeployError, match="refusing PermitRootLogin no while pyinfra logs in as root"):
        # built at run time, as a settings file's value is (not the interned literal): compared by value
        _ssh_plan({"echo $USER": ["root"]}, ssh_permit_root_login="".join(["n", "o"]))
    assert "PermitRootLogin prohibit-password" in _upload(
        _ssh_plan({"echo $USER": ["root"]}, ssh_permit_root_login="prohibit-password"))


def test_ssh_refuses_a_key_whose_from_option_excludes_this_controller():
    """CONN: the controller is 192.168.1.20."""
    with pytest.raises(DeployError, match=r'from="10\.0\.0\.0/8" excludes this controller \(192\.168\.1\.20\)'):
        _ssh_plan({}, ssh_authorized_keys=[f'from="10.0.0.0/8" {KEY}'])
    assert _ops(_ssh_plan({}, ssh_authorized_keys=[f'from="192.168.1.0/24" {KEY}']), "ssh")


def test_ssh_says_how_the_owner_logs_in_when_dlrig_uses_another_login(caplog):
    import logging

    caplog.set_level(logging.INFO)
    on = _owner_alice("CUR alice pubkeyauthentication yes", "NEW alice pubkeyauthentication yes")
    _ssh_plan(on, workstation_user="alice", ssh_authorized_keys=[KEY])
    assert "the owner alice logs in by key\n" in caplog.text + "\n"
    caplog.clear()
    _ssh_plan(on, workstation_user="alice", ssh_authorized_keys=[KEY], ssh_password_authentication=True)
    assert "the owner alice logs in by key or password" in caplog.text


@pytest.mark.parametrize("old, moved", [("Port 22", "0"), ("Port 2022", "1")])
def test_ssh_reload_regenerates_the_socket_only_when_the_ports_change(old, moved):
    """A drop-in is in place (another version of it): its Port lines decide whether sshd's ports move."""
    facts = {re.compile(r"sha1sum /etc/ssh/sshd_config.d/00-dlrig.conf"): ["0" * 40 + "  /etc/ssh/sshd_config.d/00-dlrig.conf"],
             "cat /etc/ssh/sshd_config.d/00-dlrig.conf": ["# Managed by dlrig", old, "PermitRootLogin no"]}
    ops = _ssh_plan(facts)
    (reload,) = [o for o in ops if o["operation"] == "reload sshd (live sessions survive)"]
    assert reload["commands"][0].endswith(f"dlrig-ssh {moved}")


# ---------------------------------------------------------------- firewall

def test_firewall_ssh_limit_first_enable_last_no_jupyter_on_loopback():
    ops = plan([fake_host("rig", "ubuntu-24.04", facts=CONN, firewall_allow=["6006/tcp"])],
               roles=["firewall"])["rig"]
    names = _ops(ops, "firewall")
    assert names.index("ufw limit 22/tcp comment 'dlrig ssh'") < names.index("ufw allow 6006/tcp comment 'dlrig'")
    assert names[-1] == "enable ufw (SSH already allowed)"
    assert "ufw default deny incoming" in names
    assert "8888" not in commands(ops, "firewall")


def test_firewall_opens_jupyter_when_not_loopback():
    ops = plan([fake_host("rig", "debian-12", facts=CONN, jupyter_ip="0.0.0.0", jupyter_port=8890,
                          firewall_jupyter_from="192.168.1.0/24")], roles=["firewall"])["rig"]
    assert "ufw allow from 192.168.1.0/24 to any port 8890 proto tcp comment 'dlrig jupyter'" in commands(ops)


def test_firewall_converged_plans_nothing():
    facts = {**CONN, "ufw --dry-run": ["HAVE 0"],
             "ufw show added": ["ENABLED=yes", 'DEFAULT_INPUT_POLICY="DROP"', 'DEFAULT_OUTPUT_POLICY="ACCEPT"'],
             "dpkg -l": _dpkg_with("ubuntu-24.04", "ufw")}
    ops = plan([fake_host("rig", "ubuntu-24.04", facts=facts)], roles=["firewall"])["rig"]
    assert _ops(ops, "firewall") == []


# ---------------------------------------------------------------- power

def test_power_masks_targets_and_stops_gdm_suspend_on_ubuntu_desktop():
    facts = {"dpkg -l": _dpkg_with("ubuntu-24.04", "gdm3"), "/sys/class/net/enp3s0/address": ["AA:BB:CC:00:11:22"]}
    ops = plan([fake_host("rig", "ubuntu-24.04", facts=facts, power_wol_interface="enp3s0")],
               roles=["power"])["rig"]
    text = commands(ops, "power")
    for t in ("sleep", "suspend", "hibernate", "hybrid-sleep"):
        assert f"ln -s /dev/null /etc/systemd/system/{t}.target" in text
    assert "UPLOAD /etc/dconf/db/gdm.d/90-dlrig-power" in text and "sleep-inactive-ac-type='nothing'" in text
    assert "dconf update" in text and "dconf-cli" in text
    assert "MACAddress=aa:bb:cc:00:11:22" in text and "WakeOnLan=magic" in text


def test_power_wol_unknown_interface_fails_early():
    with pytest.raises(DeployError, match="interface eth9 not found"):
        plan([fake_host("rig", "debian-12", facts={re.compile(r"stat -c .* /sys/class/net 2>"): [
            "user=root group=root mode=drwxr-xr-x atime=0 mtime=0 ctime=0 size=0 '/sys/class/net'"]}, power_wol_interface="eth9")],
             roles=["power"])


# ---------------------------------------------------------------- dualboot

def test_dualboot_grub_windows_default_update_grub_and_fstab():
    facts = {
        "command -v update-grub": ["/usr/sbin/update-grub"],
        "/boot/grub/grub.cfg": ["Ubuntu", "Windows Boot Manager (on /dev/nvme0n1p1)"],
        "cat /etc/passwd | cut": ["me:x:1000:1000::/home/me:/bin/bash|me|me sudo||x"],
        "/etc/adjtime": ["0.0 0 0.0", "0", "UTC"],
    }
    ops = plan([fake_host("rig", "ubuntu-24.04", facts=facts, ssh_user="me", rtc_local=True,
                          grub_default="windows",
                          data_disks=[{"uuid": "01D9A1B2C3D4E5F6", "mount": "/mnt/windows"}])],
               roles=["dualboot"])["rig"]
    text = commands(ops, "dualboot")
    assert "UPLOAD /etc/adjtime\n0.0 0 0.0\n0\nLOCAL\n" in text
    assert "GRUB_DEFAULT='Windows Boot Manager (on /dev/nvme0n1p1)'" in text
    assert "GRUB_DISABLE_OS_PROBER=false" in text and "os-prober" in text and "ntfs-3g" in text
    names = _ops(ops, "dualboot")
    assert "update-grub" in names  # runs only _if the drop-in or os-prober changed
    assert "UUID=01D9A1B2C3D4E5F6 /mnt/windows ntfs3 uid=1000,gid=1000,umask=022,nofail" in text


# ---------------------------------------------------------------- unattended upgrades

def test_unattended_upgrades_excludes_driver_packages():
    ops = plan([fake_host("rig", "ubuntu-22.04", unattended_upgrades_blacklist=["my-pkg-"])],
               roles=["unattended_upgrades"])["rig"]
    text = commands(ops, "unattended_upgrades")
    assert "UPLOAD /etc/apt/apt.conf.d/52dlrig-unattended-upgrades" in text
    for p in ('"nvidia-";', '"libnvidia-";', '"linux-modules-nvidia-";', '"my-pkg-";'):
        assert p in text
    assert 'Automatic-Reboot "false"' in text


def test_ssh_refusal_names_the_setting_and_its_drop_in_line():
    """dlrig logs in as me by password; the candidate turns password login off: the refusal names the
    setting and quotes the drop-in line (sshd -T answers are FAKE)."""
    facts = _sshd("GROUPS me me", "CUR me passwordauthentication yes", "CUR me pubkeyauthentication yes",
                  "NEW me passwordauthentication no", "NEW me pubkeyauthentication yes")
    with pytest.raises(DeployError, match=r"ssh_password_authentication \(PasswordAuthentication no\) "):
        _ssh_plan(facts, ssh_password="pw", ssh_password_authentication=False, ssh_authorized_keys=[KEY])


def test_ssh_refusal_names_the_extra_config_line_that_locks_dlrig_out():
    facts = _sshd("GROUPS me me", "CUR me pubkeyauthentication yes", "NEW me pubkeyauthentication no")
    with pytest.raises(DeployError, match=r"ssh_extra_config line 'PubkeyAuthentication no' .*remove or change the line"):
        _ssh_plan(facts, ssh_extra_config=["PubkeyAuthentication no"])


@pytest.mark.parametrize("answer", [("GROUPS other other",), ("GROUPS me me",)])
def test_ssh_plans_when_sshd_reports_no_current_config_for_the_login(answer):
    """FAKE sshd -T answers that carry no current config for dlrig's login (its user absent, or only its
    groups known): nothing to compare with, so the guard lets the drop-in be planned, without a crash."""
    assert _ops(_ssh_plan(_sshd(*answer)), "ssh")
