"""Lock file, backup and cache pieces of the reinstall round trip (issue 12) without a host: the
file formats, the host-vs-lock diff, the probe and collect scripts run for real on this machine,
the cached-installer path of the conda script, the stand-in conda's explicit spec, and the CLI's
bad-input refusals (exit 2, nothing touched). The round trip itself: tests/hosts/test_reprovision_hosts.py."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from click.testing import CliRunner
from dlrig.roles import TEMPLATES
from dlrig.roles import conda as conda_role
from dlrig.roles.dualboot import FSTAB_MARKER

from dlrig.cli import main
from dlrig.engine import backup as BACKUP
from dlrig.engine import lockfile
from dlrig.engine.lockfacts import LockedDebs, MissingFiles
from dlrig.engine.preflight import effective_data
from dlrig.engine.settings import validate_host_data
from tests.fixtures.miniforge_standin import build_installer

ENTRY = {
    "apt": {"curl": "7.88.1-10+deb12u12", "libc6:amd64": "2.36-9+deb12u10"},
    "pip": {"torch": {"version": "2.13.0+cpu", "file": "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl",
                      "sha256": "a" * 64},
            "fastai": {"version": "2.8.12", "file": "fastai-2.8.12-py3-none-any.whl", "sha256": "b" * 64}},
    "python": "3.11.2", "jupyterlab": "4.6.6",
    "miniforge": {"url": "https://x/Miniforge3.sh", "sha256": "c" * 64, "conda_version": "24.11.3"},
    "conda": {"explicit": ["@EXPLICIT", "https://conda.anaconda.org/conda-forge/linux-64/pip-1-0.conda#d"]},
}


def test_lock_text_is_stable_sorted_json():
    a = lockfile.dumps({"dlrig_lock": 1, "hosts": {"b": ENTRY, "a": ENTRY}})
    b = lockfile.dumps(json.loads(a))
    assert a == b and a.index('"a"') < a.index('"b"') and a.endswith("\n")
    assert '"curl": "7.88.1-10+deb12u12"' in a  # one package per line: reviewable in git


def test_requirements_and_explicit_spec_from_the_lock():
    req = lockfile.requirements_text(ENTRY).splitlines()
    assert req[1:] == [f"fastai==2.8.12 --hash=sha256:{'b' * 64}", f"torch==2.13.0+cpu --hash=sha256:{'a' * 64}"]
    assert lockfile.explicit_text(ENTRY).splitlines()[0] == "@EXPLICIT"
    # apply --locked installs uv first, alone, from its own hash-checked line
    assert lockfile.requirements_text(ENTRY, only=("torch",)).splitlines()[1:] == [req[2]]


def test_deb_file_names_escape_the_epoch_and_drop_the_arch_qualifier():
    assert lockfile.deb_file_glob("libc6:amd64", "2.36-9") == "libc6_2.36-9_*.deb"
    assert lockfile.deb_file_glob("openssh-server", "1:9.2p1-2") == "openssh-server_1%3a9.2p1-2_*.deb"


def test_diff_names_what_moved_and_nothing_when_equal():
    assert lockfile.diff(ENTRY, json.loads(json.dumps(ENTRY))) == []
    have = json.loads(json.dumps(ENTRY))
    have["apt"]["curl"] = "8.0"
    del have["pip"]["fastai"]
    have["pip"]["rich"] = {"version": "15", "sha256": None}
    have["pip"]["torch"]["sha256"] = None  # plan reads no hashes: not a difference
    have["jupyterlab"] = "4.7.0"
    lines = lockfile.diff(ENTRY, have)
    assert lines == ["apt curl: locked 7.88.1-10+deb12u12, installed 8.0",
                     "pip fastai: locked 2.8.12, not installed",
                     "pip rich: 15 installed, not in the lock",
                     "jupyterlab: locked 4.6.6, installed 4.7.0"]


def test_load_refuses_a_missing_or_foreign_file_in_one_line(tmp_path):
    with pytest.raises(lockfile.LockError, match="not found; write one with `dlrig lock"):
        lockfile.load(tmp_path / "nope.lock")
    (tmp_path / "x.lock").write_text('{"hosts": {}}')
    with pytest.raises(lockfile.LockError, match="not a dlrig lock"):
        lockfile.load(tmp_path / "x.lock")
    with pytest.raises(lockfile.LockError, match="has no host 'b'"):
        lockfile.host_entry({"hosts": {"a": {}}}, "b")


def test_torch_index_from_the_setting_or_the_local_label():
    assert lockfile.torch_index_for({"pip_index_url": "http://m/simple/"}, "2.1+cu130") == "http://m/simple"
    assert lockfile.torch_index_for({}, "2.14.1+cu130") == "https://download.pytorch.org/whl/cu130"
    assert lockfile.torch_index_for({}, "2.14.1") is None


def test_settings_cache_dir_and_lock_file_are_absolute_paths():
    assert effective_data({})["cache_dir"] is None
    assert validate_host_data("h", {"cache_dir": "/mnt/data/dlrig-cache"}) == []
    (err,) = validate_host_data("h", {"cache_dir": "data/cache"})
    assert err.startswith("h: cache_dir = 'data/cache' is not allowed; use an absolute path")


def test_templates_carry_the_cache_paths():
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    apt = env.from_string((TEMPLATES / "apt-dlrig.conf.j2").read_text())
    assert 'Dir::Cache::Archives "/c/apt/";' in apt.render(apt_lock_timeout=5, archives="/c/apt")
    assert "Dir::Cache" not in apt.render(apt_lock_timeout=5, archives=None)
    import yaml

    rc = env.from_string((TEMPLATES / "condarc.j2").read_text())
    assert yaml.safe_load(rc.render(channels=["conda-forge"], ssl_verify=None, pkgs_dir="/c/conda-pkgs"))[
        "pkgs_dirs"] == ["/c/conda-pkgs"]
    assert "pkgs_dirs" not in yaml.safe_load(rc.render(channels=["conda-forge"], ssl_verify=None, pkgs_dir=None))


# ------------------------------------------------------------------ scripts, run for real here

def test_probe_reads_this_machines_dpkg_and_reports_no_env(tmp_path):
    layout = SimpleNamespace(prefix=str(tmp_path / "none"), envp=str(tmp_path / "none/envs/dl"), user="root")
    params = lockfile.probe_params({"cache_dir": str(tmp_path / "c")}, layout, None)
    r = subprocess.run(["bash", "-c", lockfile.probe_command(params)], capture_output=True, text=True)
    out = json.loads(r.stdout)
    want = subprocess.run(["dpkg-query", "-W", "-f", "${binary:Package} ${Version}\n", "dpkg"],
                          capture_output=True, text=True).stdout.split()
    assert out["apt"]["dpkg"] == want[1] and out["problems"] == [] and out["pip"] == {}
    assert "miniforge" not in out and "python" not in out


def test_locked_debs_fact_finds_cached_files_and_names_what_moved(tmp_path):
    dpkg_version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpkg"], capture_output=True,
                                  text=True).stdout
    (tmp_path / "curl_1%3a9.9-1_amd64.deb").write_bytes(b"")
    fact = LockedDebs()
    cmd = fact.command(str(tmp_path), {"dpkg": dpkg_version, "curl": "1:9.9-1", "dlrig-nosuch": "1.0"})
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    got = fact.process(r.stdout.splitlines())
    assert got["cached"] == {"curl": str(tmp_path / "curl_1%3a9.9-1_amd64.deb")}  # installed dpkg: nothing
    assert got["missing"] == {"dlrig-nosuch": "locked 1.0, available: none"} and got["repo"] == []


def test_missing_files_fact(tmp_path):
    (tmp_path / "a.whl").write_bytes(b"")
    fact = MissingFiles()
    r = subprocess.run(["bash", "-c", fact.command(str(tmp_path), ["a.whl", "b.whl"])], capture_output=True, text=True)
    assert fact.process(r.stdout.splitlines()) == ["b.whl"]


def test_installer_comes_from_the_cache_once_verified(tmp_path):
    """Real bash, curl and sha256sum with the STAND-IN installer: downloaded once into the cache,
    then installed from it with its URL dead; a cached file with another checksum is not used."""
    installer = build_installer(tmp_path / "dl")
    good = hashlib.sha256(installer.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = lockfile.installer_cache_file(str(tmp_path), installer.as_uri(), good).replace(
        str(tmp_path) + "/miniforge", str(cache))
    (tmp_path / "h1").mkdir()
    r = subprocess.run(["bash", "-c", conda_role.install_command(installer.as_uri(), good,
                                                                 str(tmp_path / "h1/mf"), cached)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(Path(cached).read_bytes()).hexdigest() == good
    (tmp_path / "h2").mkdir()
    dead = "http://127.0.0.1:9/gone.sh"
    r = subprocess.run(["bash", "-c", conda_role.install_command(dead, good, str(tmp_path / "h2/mf"), cached)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    Path(cached).write_bytes(b"tampered")
    (tmp_path / "h3").mkdir()
    r = subprocess.run(["bash", "-c", conda_role.install_command(dead, good, str(tmp_path / "h3/mf"), cached)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and not (tmp_path / "h3/mf").exists()


def test_standin_conda_replays_its_explicit_spec(tmp_path):
    installer = build_installer(tmp_path / "dl")
    prefix = tmp_path / "mf"
    subprocess.run(["bash", str(installer), "-b", "-p", str(prefix)], check=True, capture_output=True)
    yml = tmp_path / "env.yml"
    yml.write_text("name: dl\nchannels:\n  - conda-forge\ndependencies:\n  - python=3\n  - pip\n")
    conda = str(prefix / "bin/conda")
    subprocess.run([conda, "env", "create", "-p", str(prefix / "envs/a"), "-f", str(yml)], check=True,
                   capture_output=True)
    spec = subprocess.run([conda, "list", "--explicit", "--md5", "-p", str(prefix / "envs/a")], check=True,
                          capture_output=True, text=True).stdout
    assert "@EXPLICIT" in spec and "/pip-" in spec and "/python-" in spec and "#" in spec.splitlines()[-1]
    (tmp_path / "spec.txt").write_text(spec)
    subprocess.run([conda, "create", "-y", "-p", str(prefix / "envs/b"), "--file", str(tmp_path / "spec.txt")],
                   check=True, capture_output=True)
    again = subprocess.run([conda, "list", "--explicit", "--md5", "-p", str(prefix / "envs/b")], check=True,
                           capture_output=True, text=True).stdout
    assert again == spec
    (tmp_path / "bad.txt").write_text(spec.replace("/python-3.", "/python-2."))
    r = subprocess.run([conda, "create", "-y", "-p", str(prefix / "envs/c"), "--file", str(tmp_path / "bad.txt")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "PackagesNotFoundError" in r.stderr


# ------------------------------------------------------------------ backup

def test_collect_reads_files_and_only_the_marked_fstab_block(tmp_path, monkeypatch):
    f = tmp_path / "jupyter_server_config.py"
    f.write_text('c.PasswordIdentityProvider.hashed_password = "argon2:x"\n')
    os.chmod(f, 0o600)
    r = subprocess.run(["bash", "-c", BACKUP.collect_command([str(f), str(tmp_path / "absent")], FSTAB_MARKER)],
                       capture_output=True, text=True)
    got = json.loads(r.stdout)
    assert got["files"][str(f)]["mode"] == "600"
    assert base64.b64decode(got["files"][str(f)]["b64"]).decode() == f.read_text()
    assert str(tmp_path / "absent") not in got["files"]
    fstab = Path("/etc/fstab").read_text() if Path("/etc/fstab").exists() else ""
    assert bool(got["fstab"]) == (FSTAB_MARKER.format(mark="BEGIN") in fstab)


def test_backup_is_0600_refused_when_readable_and_summarised_without_secrets(tmp_path):
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBz2yxDoCG0C9hqNi4bqAxPGcLKOW5ZbWZsnY0o6hJtt root@rig"
    priv = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n-----END OPENSSH PRIVATE KEY-----\n"
    entry = {"files": {
        "/etc/ssh/ssh_host_ed25519_key": {"mode": "600", "owner": "root", "group": "root",
                                          "b64": base64.b64encode(priv.encode()).decode()},
        "/etc/ssh/ssh_host_ed25519_key.pub": {"mode": "644", "owner": "root", "group": "root",
                                              "b64": base64.b64encode(pub.encode()).decode()}},
        "fstab": ["# BEGIN x", "UUID=1 /mnt/data ext4 nofail 0 2", "# END x"]}
    path = tmp_path / "dlrig.backup"
    BACKUP.write(path, {"rig": entry})
    assert path.stat().st_mode & 0o777 == 0o600
    assert BACKUP.load(path)["hosts"]["rig"] == entry
    text = "\n".join(BACKUP.summary(entry))
    assert "secret" not in text and "ssh-ed25519 SHA256:" in text and "1 line(s)" in text
    keygen = subprocess.run(["ssh-keygen", "-lf", "-"], input=pub, capture_output=True, text=True).stdout
    assert BACKUP.fingerprint(pub) == keygen.split()[1]
    cmds = BACKUP.restore_commands(entry)
    assert cmds[0][0].startswith("install -D -m 600 -o root") and cmds[0][2] == priv.encode()
    assert "cat >> /etc/fstab" in cmds[-1][0]
    os.chmod(path, 0o644)
    with pytest.raises(BACKUP.BackupError, match="chmod 600"):
        BACKUP.load(path)


# ------------------------------------------------------------------ the CLI refuses bad input (exit 2)

def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inv.py"
    inv.write_text("hosts = [('rig', {'ssh_hostname': '127.0.0.1', 'ssh_port': 9})]\n")
    return inv


def test_apply_locked_refuses_a_missing_lock_or_host_before_connecting(tmp_path):
    inv = _inventory(tmp_path)
    r = CliRunner().invoke(main, ["apply", str(inv), "--yes", "--locked", str(tmp_path / "none.lock")])
    assert r.exit_code == 2 and "not found; write one with `dlrig lock" in r.output
    (tmp_path / "other.lock").write_text(lockfile.dumps({"dlrig_lock": 1, "hosts": {"other": ENTRY}}))
    r = CliRunner().invoke(main, ["plan", str(inv), "--locked", str(tmp_path / "other.lock")])
    assert r.exit_code == 2 and "has no host 'rig'" in r.output


def test_apply_restore_refuses_a_world_readable_backup(tmp_path):
    inv = _inventory(tmp_path)
    path = tmp_path / "b"
    BACKUP.write(path, {"rig": {"files": {}}})
    os.chmod(path, 0o640)
    r = CliRunner().invoke(main, ["apply", str(inv), "--yes", "--restore", str(path)])
    assert r.exit_code == 2 and "chmod 600" in r.output
