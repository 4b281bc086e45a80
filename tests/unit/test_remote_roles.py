"""Roles ssh, firewall, power, dualboot, unattended_upgrades: rendered files checked by real tools.

sshd drop-ins are validated by this machine's real ``sshd -t`` (openssh-server) with a throw-away
host key; the role's own validate-and-install script runs here against temporary copies of
/etc/ssh (nothing under the real /etc/ssh is read or written). apt.conf snippets are parsed by
the real ``apt-config``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from dlrig.roles import dualboot, firewall, ssh, unattended_upgrades
from dlrig.roles.settings import ssh as ssh_settings

from dlrig.engine.settings import validate_host_data

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKbAt1BWk7wJpS5m0N7Yz3r1Q6ZV2UGmJX1Fz2o1p3kl me@laptop"
needs_sshd = pytest.mark.skipif(shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists(),
                                reason="openssh-server not installed (apt-get install openssh-server)")


@pytest.fixture
def sshd_tree(tmp_path):
    """A fake /etc/ssh: main config with a host key and an Include of its own sshd_config.d."""
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd -t insists on its privilege separation dir
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey")],
                   check=True)
    d = tmp_path / "sshd_config.d"
    d.mkdir()
    main = tmp_path / "sshd_config"
    main.write_text(f"HostKey {tmp_path / 'hostkey'}\nInclude {d}/*.conf\nUsePAM yes\n"
                    "PasswordAuthentication yes\n")
    # what cloud-init drops: sorts after ours, must lose
    (d / "50-cloud-init.conf").write_text("PasswordAuthentication yes\n")
    return tmp_path, main, d


def _sshd_T(main: Path) -> dict[str, list[str]]:
    res = subprocess.run(["/usr/sbin/sshd", "-T", "-f", str(main)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out: dict[str, list[str]] = {}
    for line in res.stdout.splitlines():
        k, _, v = line.partition(" ")
        out.setdefault(k, []).append(v)
    return out


@needs_sshd
@pytest.mark.parametrize("password", [False, True, None])
def test_rendered_dropin_passes_real_sshd_and_wins(sshd_tree, password):
    _, main, d = sshd_tree
    text = ssh.render_dropin(ports=[22, 2222], permit_root_login="no", password_authentication=password,
                             extra_config=["X11Forwarding no", "ClientAliveInterval 60"])
    (d / "00-dlrig.conf").write_text(text)
    res = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(main)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + text
    eff = _sshd_T(main)
    assert eff["port"] == ["22", "2222"]
    assert eff["permitrootlogin"] == ["no"]
    assert eff["x11forwarding"] == ["no"] and eff["clientaliveinterval"] == ["60"]
    assert eff["passwordauthentication"] == ["no" if password is False else "yes"]
    if password is False:
        assert eff["kbdinteractiveauthentication"] == ["no"]
    if password is None:
        assert "PasswordAuthentication" not in text


@needs_sshd
def test_sshd_rejects_a_bad_extra_line(sshd_tree):
    _, main, d = sshd_tree
    (d / "00-dlrig.conf").write_text(ssh.render_dropin(ports=[22], permit_root_login="no",
                                                       password_authentication=False,
                                                       extra_config=["MaxAuthTries many"]))
    res = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(main)], capture_output=True, text=True)
    assert res.returncode != 0 and "MaxAuthTries" in res.stderr


def _validate_and_install(tmp: Path, main: Path, d: Path, text: str, want: str):
    staged = tmp / "staged.conf"
    staged.write_text(text)
    return subprocess.run(["sh", "-c", ssh.VALIDATE_AND_INSTALL, "x", str(staged),
                           str(d / "00-dlrig.conf"), str(main), want], capture_output=True, text=True)


@needs_sshd
def test_validate_and_install_keeps_old_files_byte_identical_on_failure(sshd_tree):
    tmp, main, d = sshd_tree
    good = ssh.render_dropin(ports=[22], permit_root_login="no", password_authentication=False,
                             extra_config=[])
    res = _validate_and_install(tmp, main, d, good, "no")
    assert res.returncode == 0, res.stderr
    assert (d / "00-dlrig.conf").read_text() == good
    before = {p.name: p.read_bytes() for p in (main, *d.iterdir())}

    bad = ssh.render_dropin(ports=[22], permit_root_login="no", password_authentication=False,
                            extra_config=["NoSuchOption yes"])
    res = _validate_and_install(tmp, main, d, bad, "no")
    assert res.returncode == 1
    # sshd's own message, naming the real drop-in path (not the temporary copy)
    assert f"{d}/00-dlrig.conf: line" in res.stderr and "Bad configuration option: NoSuchOption" in res.stderr
    assert {p.name: p.read_bytes() for p in (main, *d.iterdir())} == before


@needs_sshd
def test_validate_refuses_when_main_config_wins_over_dropin(sshd_tree):
    """A PasswordAuthentication before the Include beats every drop-in: refuse, change nothing."""
    tmp, main, d = sshd_tree
    main.write_text("PasswordAuthentication yes\n" + main.read_text())
    text = ssh.render_dropin(ports=[22], permit_root_login="no", password_authentication=False,
                             extra_config=[])
    res = _validate_and_install(tmp, main, d, text, "no")
    assert res.returncode == 1 and "PasswordAuthentication yes" in res.stderr
    assert not (d / "00-dlrig.conf").exists()


def test_ssh_settings_validation():
    assert validate_host_data("h", {"ssh_authorized_keys": [KEY]}) == []
    (err,) = validate_host_data("h", {"ssh_authorized_keys": ["not a key"]})
    assert "ssh_authorized_keys" in err and "public key" in err
    (err,) = validate_host_data("h", {"ssh_extra_config": ["A yes\nB no"]})
    assert "one sshd_config directive per item" in err
    assert validate_host_data("h", {"ssh_extra_ports": [70000]})


def test_ssh_preflight_lockouts():
    ok = {"ssh_password_authentication": False, "ssh_authorized_keys": [], "ssh_key": "/k",
          "ssh_permit_root_login": "no", "ssh_user": "me"}
    assert ssh_settings.preflight("h", ok) == []  # logs in by key: the host-side guard decides
    (err,) = ssh_settings.preflight("h", {**ok, "ssh_key": None, "ssh_password": "pw"})
    assert err.startswith("h: ssh_password_authentication = False would lock you out")
    assert ssh_settings.preflight("h", {**ok, "ssh_key": None, "ssh_password": "pw", "ssh_authorized_keys": [KEY]}) == []
    (err,) = ssh_settings.preflight("h", {**ok, "ssh_user": "root"})
    assert "ssh_permit_root_login" in err


# ---------------------------------------------------------------- dualboot

def test_grub_dropin_lines():
    default, save, warn = dualboot.grub_default_value("linux", [])
    text = dualboot.render_grub(default=default, savedefault=save, timeout=7)
    assert text.splitlines()[2:] == [
        "GRUB_DISABLE_OS_PROBER=false", "GRUB_DEFAULT=0", "GRUB_SAVEDEFAULT=false",
        "GRUB_TIMEOUT=7", "GRUB_TIMEOUT_STYLE=menu", "GRUB_RECORDFAIL_TIMEOUT=7"]
    assert dualboot.grub_default_value("saved", []) == ("saved", True, None)
    title = "Windows Boot Manager (on /dev/nvme0n1p1)"
    assert dualboot.grub_default_value("windows", ["Ubuntu", title]) == (title, False, None)
    d, s, warn = dualboot.grub_default_value("windows", ["Ubuntu"])
    assert (d, s) == ("saved", True) and "no Windows entry" in warn
    text = dualboot.render_grub(default=title, savedefault=False, timeout=5)
    assert f"GRUB_DEFAULT='{title}'" in text
    # the drop-in is shell: sourcing it must give back the exact values
    out = subprocess.run(["sh", "-c", text + '\nprintf "%s|%s" "$GRUB_DEFAULT" "$GRUB_TIMEOUT"'],
                         capture_output=True, text=True).stdout
    assert out == f"{title}|5"


def test_grub_default_validation():
    assert validate_host_data("h", {"grub_default": "1>2"}) == []
    assert validate_host_data("h", {"grub_default": "a'b"})
    assert validate_host_data("h", {"grub_timeout": -1})


@pytest.mark.parametrize("kernel,driver", [("6.1.0-27-amd64", "ntfs3"), ("5.15.0-91-generic", "ntfs3"),
                                           ("5.4.0-150-generic", "ntfs-3g"), (None, "ntfs-3g")])
def test_ntfs_driver_follows_kernel(kernel, driver):
    assert dualboot.ntfs_driver("auto", kernel) == driver
    assert dualboot.ntfs_driver("ntfs-3g", "6.8.0") == "ntfs-3g"


def test_ntfs_driver_is_ntfs_3g_where_the_recorded_kernel_config_has_no_ntfs3():
    """Debian 12's kernel package config, recorded from Debian's archive: ntfs3 is not built, so "auto"
    must not write ntfs3 there (a booted Debian 12 VM refused it: unknown filesystem type)."""
    from pathlib import Path

    record = (Path(__file__).resolve().parents[2] / "tools/sources/debian/kernel-ntfs3.txt").read_text()
    assert "# CONFIG_NTFS3_FS is not set" in record and "linux-image-6.1.0-" in record
    assert dualboot.ntfs_driver("auto", "6.1.0-27-amd64", "debian-12") == "ntfs-3g"
    assert dualboot.ntfs_driver("ntfs3", "6.1.0-27-amd64", "debian-12") == "ntfs3"  # an explicit choice stands
    assert dualboot.ntfs_driver("auto", "6.8.0-45-generic", "ubuntu-24.04") == "ntfs3"


def test_fstab_lines():
    ntfs = {"uuid": "01D9A1B2C3D4E5F6", "mount": "/mnt/windows"}
    assert dualboot.fstab_line(ntfs, 1000, 1000, "ntfs3") == (
        "UUID=01D9A1B2C3D4E5F6 /mnt/windows ntfs3 "
        "uid=1000,gid=1000,umask=022,nofail,x-systemd.device-timeout=90s 0 0")
    assert dualboot.fstab_line(ntfs, 1001, 1002, "ntfs-3g") == (
        "UUID=01D9A1B2C3D4E5F6 /mnt/windows ntfs-3g "
        "uid=1001,gid=1002,umask=022,nofail,x-systemd.device-timeout=90s,windows_names 0 0")
    ext4 = {"uuid": "3f1c0b8e-7a52-4c1e-9d7b-2a1f0c9e8b71", "mount": "/data", "fs": "ext4",
            "options": "noatime"}
    assert dualboot.fstab_line(ext4, 1000, 1000, "ntfs3") == (
        "UUID=3f1c0b8e-7a52-4c1e-9d7b-2a1f0c9e8b71 /data ext4 "
        "defaults,nofail,x-systemd.device-timeout=90s,noatime 0 2")


def test_fstab_lines_parse_with_findmnt(tmp_path):
    """util-linux's own fstab parser reads the lines back field by field."""
    if shutil.which("findmnt") is None:
        pytest.skip("findmnt (util-linux) missing")
    lines = [dualboot.fstab_line({"uuid": "01D9A1B2C3D4E5F6", "mount": "/mnt/win"}, 1000, 1000, "ntfs3"),
             dualboot.fstab_line({"uuid": "3f1c0b8e-7a52-4c1e-9d7b-2a1f0c9e8b71", "mount": "/data",
                                  "fs": "ext4"}, 1000, 1000, "ntfs3")]
    tab = tmp_path / "fstab"
    tab.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["findmnt", "--tab-file", str(tab), "-n", "-r", "-o", "SOURCE,TARGET,FSTYPE,OPTIONS"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].split()[:3] == ["UUID=01D9A1B2C3D4E5F6", "/mnt/win", "ntfs3"]
    assert "nofail" in out[0] and "uid=1000" in out[0]
    assert out[1].split()[1:3] == ["/data", "ext4"]


def test_data_disks_validation():
    assert validate_host_data("h", {"data_disks": [{"uuid": "01D9A1B2C3D4E5F6", "mount": "/mnt/w"}]}) == []
    for bad in ({"uuid": "x y", "mount": "/d"}, {"uuid": "ABCD", "mount": "rel"},
                {"uuid": "ABCD", "mount": "/d", "fs": "zfs"}, {"mount": "/d"},
                {"uuid": "ABCD", "mount": "/"}):
        assert validate_host_data("h", {"data_disks": [bad]}), bad


@pytest.mark.parametrize("current,local,expected", [
    (None, False, None),
    (None, True, "0.0 0 0.0\n0\nLOCAL\n"),
    (["0.001 1700000000 0.0", "1700000000", "UTC"], True, "0.001 1700000000 0.0\n1700000000\nLOCAL\n"),
    (["0.0 0 0.0", "0", "LOCAL"], True, None),
    (["0.0 0 0.0", "0", "LOCAL"], False, "0.0 0 0.0\n0\nUTC\n"),
    (["0.0 0 0.0", "0"], False, None),  # no third line = UTC
])
def test_adjtime(current, local, expected):
    assert dualboot.adjtime_text(current, local) == expected


# ---------------------------------------------------------------- firewall, unattended upgrades

@pytest.mark.parametrize("ip,loop", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                     ("0.0.0.0", False), ("", False), ("192.168.1.5", False),
                                     (None, True)])
def test_jupyter_loopback(ip, loop):
    assert firewall.is_loopback(ip) is loop


def test_firewall_allow_validation():
    assert validate_host_data("h", {"firewall_allow": ["6006/tcp", "from 10.0.0.0/8 to any port 22 proto tcp"]}) == []
    assert validate_host_data("h", {"firewall_allow": ["allow 22"]})
    assert validate_host_data("h", {"firewall_allow": ["22; rm -rf /"]})


def test_unattended_conf_parses_with_apt_config(tmp_path):
    if shutil.which("apt-config") is None:
        pytest.skip("apt-config missing")
    import jinja2
    from dlrig.roles import template

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(Path(template("unattended-upgrades-dlrig.conf.j2")).read_text()).render(
        blacklist=list(unattended_upgrades.DRIVER_PACKAGE_PATTERNS), reboot=False)
    conf = tmp_path / "52dlrig"
    conf.write_text(text)
    res = subprocess.run(["apt-config", "-c", str(conf), "dump"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'Unattended-Upgrade::Package-Blacklist:: "nvidia-";' in res.stdout
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in res.stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in res.stdout


def test_driver_patterns_cover_the_driver_packages():
    """Names the nvidia_driver role installs and holds (Ubuntu, NVIDIA repo, Debian)."""
    import re

    names = ["nvidia-headless-no-dkms-550-server", "nvidia-utils-550", "linux-modules-nvidia-550-generic",
             "xserver-xorg-video-nvidia-550", "libnvidia-gl-550", "nvidia-open", "cuda-drivers-575",
             "nvidia-driver-pinning-580", "nvidia-driver", "nvidia-smi", "nvidia-persistenced",
             "nvidia-kernel-dkms", "firmware-nvidia-gsp", "libcuda1"]
    pats = unattended_upgrades.DRIVER_PACKAGE_PATTERNS
    assert [n for n in names if not any(re.match(p, n) for p in pats)] == []
    for other in ("linux-image-generic", "openssl", "cuda-toolkit-12-6", "python3-nvidia-ml"):
        assert not any(re.match(p, other) for p in pats), other


@pytest.fixture(params=["forced"])
def private_sshd(tmp_path, request):
    """A real sshd on 127.0.0.1 (a free port) accepting a throwaway key for root. "forced": every
    command it is asked to run prints itself to stderr and exits 3 (ForceCommand), so a test sees what
    was run; "plain": commands run as asked."""
    import socket
    import time

    Path("/run/sshd").mkdir(exist_ok=True)
    for name in ("hostkey", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    (tmp_path / "authorized_keys").write_text((tmp_path / "client.pub").read_text())
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (tmp_path / "sshd_config").write_text(
        f"HostKey {tmp_path / 'hostkey'}\nListenAddress 127.0.0.1\nPort {port}\n"
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nStrictModes no\nUsePAM no\nPidFile {tmp_path / 'sshd.pid'}\n"
        + ("ForceCommand sh -c 'echo \"$SSH_ORIGINAL_COMMAND\" >&2; exit 3'\n" if request.param == "forced" else "")
        + ("ForceCommand sh -c 'printf %0300d 0 >&2; exit 3'\n" if request.param == "loud" else ""))
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(tmp_path / "sshd_config")],
                            stderr=subprocess.DEVNULL)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield port, tmp_path / "client"
    proc.terminate()
    proc.wait(timeout=10)


def _pyinfra_host(port: int, key: Path, **data):
    from pyinfra.api import Config, Inventory, State

    inventory = Inventory(([("127.0.0.1", {"ssh_port": port, "ssh_user": "root", "ssh_key": str(key),
                                           "ssh_known_hosts_file": "/dev/null", **data})], {}))
    (host,) = list(inventory)
    return State(inventory, Config()), host


@needs_sshd
@pytest.mark.parametrize("login, data, command", [
    ("".join(["ro", "ot"]), {}, "true"),                       # root (as a fact gives it) needs no sudo
    ("me", {}, "sudo -n true"),                                # a sudo user without a password
    ("zed", {}, "sudo -n true"),
    ("me", {"_sudo_password": "pw"}, "sudo -S -p '' true"),   # the password on stdin, no prompt
])
def test_new_login_runs_sudo_over_a_brand_new_ssh_connection(private_sshd, login, data, command):
    """ssh.new_login_sudo against a real sshd: the command it runs and the failure it reports."""
    port, key = private_sshd
    state, host = _pyinfra_host(port, key, **data)
    assert ssh.new_login_sudo(state, host, login) == f"`{command}` exited 3: {command}"


@needs_sshd
def test_failed_new_login_restores_and_reports_a_failed_restore_too(private_sshd):
    """_prove_or_restore: the new login fails, the restore command runs over pyinfra's own connection
    and fails as well (the sshd runs nothing): one DeployError saying both."""
    from pyinfra.api import DeployError
    from pyinfra.api.connect import connect_all

    port, key = private_sshd
    state, host = _pyinfra_host(port, key)
    connect_all(state)
    with pytest.raises(DeployError, match=r"after the reload a new SSH login failed: `true` exited 3: true; "
                                          r"restoring the previous sshd config FAILED too: "):
        ssh._prove_or_restore(state, host, "echo restore", "root")


@needs_sshd
@pytest.mark.parametrize("restore, tail", [
    ("echo restore", "sudo -H -n sh -c 'echo restore'"),  # the restore runs with sudo
    ("echo one\necho two\necho three", "echo two echo three'"),  # only the last two stderr lines
])
def test_a_failed_restore_reports_the_tail_of_its_sudo_command(private_sshd, restore, tail):
    """The forced sshd prints the command it was asked to run: the restore went through sudo, and the
    report carries exactly the last two lines of its stderr."""
    from pyinfra.api import DeployError
    from pyinfra.api.connect import connect_all

    port, key = private_sshd
    state, host = _pyinfra_host(port, key)
    connect_all(state)
    with pytest.raises(DeployError) as e:
        ssh._prove_or_restore(state, host, restore, "root")
    assert str(e.value).endswith("restoring the previous sshd config FAILED too: " + tail)


@needs_sshd
@pytest.mark.parametrize("private_sshd", ["loud"], indirect=True)
def test_a_failed_new_login_reports_200_characters_of_stderr(private_sshd):
    port, key = private_sshd
    state, host = _pyinfra_host(port, key)
    assert ssh.new_login_sudo(state, host, "root") == "`true` exited 3: " + "0" * 200



@needs_sshd
@pytest.mark.parametrize("private_sshd", ["plain"], indirect=True)
def test_new_login_that_works_returns_none(private_sshd):
    port, key = private_sshd
    state, host = _pyinfra_host(port, key)
    assert ssh.new_login_sudo(state, host, "root") is None


@needs_sshd
@pytest.mark.parametrize("private_sshd", ["plain"], indirect=True)
def test_a_new_login_is_tried_ten_times_a_second_apart(private_sshd, monkeypatch):
    """While sshd re-executes, the proof retries: 10 attempts, 1 s apart, then the last error. FAKE: an
    SSH client whose connect is always refused (an sshd that never comes back), and a sleep that only counts."""
    import time

    from pyinfra.connectors import sshuserclient

    attempts, sleeps = [], []

    class Refused(sshuserclient.SSHClient):
        def connect(self, *a, **kw):
            attempts.append(1)
            raise ConnectionRefusedError("refused")

    monkeypatch.setattr(sshuserclient, "SSHClient", Refused)
    monkeypatch.setattr(time, "sleep", sleeps.append)
    port, key = private_sshd
    state, host = _pyinfra_host(port, key)
    assert ssh.new_login_sudo(state, host, "root") == "no new SSH login (ConnectionRefusedError: refused)"
    assert (len(attempts), sleeps) == (10, [1] * 10)


@needs_sshd
@pytest.mark.parametrize("private_sshd", ["plain"], indirect=True)
def test_the_sudo_proof_command_has_a_30_second_limit(private_sshd, monkeypatch):
    """A `sudo` that hangs (a password prompt nobody answers) must not hang the deploy: the command runs
    with a 30 s timeout. FAKE: an SSH client that records how it was asked to run the command."""
    from types import SimpleNamespace

    from pyinfra.connectors import sshuserclient

    asked = []

    class Recording(sshuserclient.SSHClient):
        def connect(self, *a, **kw):
            pass

        def exec_command(self, cmd, timeout=None):
            asked.append((cmd, timeout))
            done = SimpleNamespace(channel=SimpleNamespace(recv_exit_status=lambda: 0))
            return None, done, None

    monkeypatch.setattr(sshuserclient, "SSHClient", Recording)
    port, key = private_sshd
    state, host = _pyinfra_host(port, key)
    assert ssh.new_login_sudo(state, host, "me") is None
    assert asked == [("sudo -n true", 30)]
