"""Roles conda, pytorch, jupyter without a host: settings, templates (checked by the real tools:
PyYAML, Python, systemd-analyze), the torch source and pins, the password hash, the tunnel hint,
and the conda install script run for real against a stand-in installer (tests/fixtures)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from types import SimpleNamespace

import click
import jinja2
import pytest
from click.testing import CliRunner
from dlrig.roles import TEMPLATES
from dlrig.roles import conda as conda_role
from dlrig.roles import jupyter as jupyter_role
from dlrig.roles.settings import jupyter as jupyter_settings

from dlrig.cli import common
from dlrig.engine import passwords, pyenv
from dlrig.engine.preflight import effective_data
from dlrig.engine.settings import validate_host_data
from tests.fixtures.miniforge_standin import build_installer

PASSWORD = "s3cret pass"


def render(name: str, **kw) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((TEMPLATES / name).read_text()).render(**kw)


# ------------------------------------------------------------------ settings

def test_settings_are_declared_with_their_defaults():
    data = effective_data({})
    assert data["conda_prefix"] is None and data["conda_installer_url"].endswith("-Linux-x86_64.sh")
    assert len(data["conda_installer_sha256"]) == 64
    assert (data["env_name"], data["python_version"], data["torch_version"]) == ("dl", "3.11", None)
    assert (data["pip_index_url"], data["pip_find_links"], data["extra_packages"]) == (None, [], [])
    assert (data["jupyter_ip"], data["jupyter_port"], data["jupyter_password_hash"]) == ("127.0.0.1", 8888, None)


@pytest.mark.parametrize("key,value,words", [
    ("conda_installer_sha256", "abc", "64 lowercase hex"),
    ("conda_installer_url", "ftp://x/y.sh", "http(s)://"),
    ("conda_channels", ["conda-forge", "defaults"], "defaults"),
    ("env_name", "base", "not 'base'"),
    ("python_version", "2.7", "Python 3"),
    ("torch_version", "2.14.1+cu128", "no +cuXXX"),
    ("extra_packages", ["--index-url http://evil"], "not pip options"),
    ("extra_packages", ["pandas>>2"], "not a valid requirement"),
    ("pip_find_links", ["relative/dir"], "absolute paths"),
    ("jupyter_password_hash", "hunter2", "never put a clear-text password"),
    ("jupyter_port", 70000, "TCP port"),
    ("jupyter_ip", "localhost:1", "IP address"),
])
def test_bad_settings_are_refused_with_the_fix(key, value, words):
    (line,) = validate_host_data("rig", {key: value})
    assert line.startswith((f"rig: {key} = ", f"rig: {key} (value not shown)")) and words in line
    if key == "jupyter_password_hash":
        assert value not in line, "a secret setting's value was echoed"


def test_good_settings_pass():
    assert validate_host_data("rig", {
        "conda_prefix": "/opt/conda", "extra_packages": ["pandas>=2.2", "timm"],
        "pip_find_links": ["http://127.0.0.1:8000/wheels/", "/srv/wheels"], "torch_version": "2.14",
        "jupyter_password_hash": passwords.hash_password(PASSWORD), "jupyter_ip": "0.0.0.0",
    }) == []


def test_installed_hash_is_read_back_from_the_config():
    h = passwords.hash_password(PASSWORD)
    text = render("jupyter_server_config.py.j2", ip="127.0.0.1", port=8888, root_dir="/home/a", password_hash=h)
    lines = [line for line in text.splitlines() if "hashed_password" in line]
    assert jupyter_role.installed_hash(lines) == h
    assert jupyter_role.installed_hash(['c.PasswordIdentityProvider.hashed_password = "plain"']) is None
    assert jupyter_role.installed_hash(None) is None


# ------------------------------------------------------------------ templates

def test_condarc_is_conda_forge_only_and_trusts_the_system_store_with_extra_cas():
    yaml = pytest.importorskip("yaml")
    plain = yaml.safe_load(render("condarc.j2", channels=["conda-forge"], ssl_verify=None, pkgs_dir=None))
    assert plain == {"channels": ["conda-forge"], "channel_priority": "strict",
                     "auto_activate_base": False, "show_channel_urls": True}
    proxied = yaml.safe_load(render("condarc.j2", channels=["conda-forge"], ssl_verify=pyenv.SYSTEM_CA_BUNDLE,
                                          pkgs_dir=None))
    assert proxied["ssl_verify"] == "/etc/ssl/certs/ca-certificates.crt"


def test_environment_yml():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(render("environment.yml.j2", env_name="dl", python_version="3.11",
                                channels=["conda-forge"], torch_index="https://download.pytorch.org/whl/cu128"))
    assert doc == {"name": "dl", "channels": ["conda-forge"], "dependencies": ["python=3.11", "pip"]}


def test_jupyter_server_config_is_python_with_the_hash_and_no_token():
    h = passwords.hash_password(PASSWORD)
    text = render("jupyter_server_config.py.j2", ip="127.0.0.1", port=8890, root_dir="/data/o'brien", password_hash=h)
    assert PASSWORD not in text

    class Cfg(dict):
        def __getattr__(self, name):
            return self.setdefault(name, Cfg())

    c = Cfg()
    exec(compile(text, "jupyter_server_config.py", "exec"), {"get_config": lambda: c})
    assert c.ServerApp.ip == "127.0.0.1" and c.ServerApp.port == 8890 and c.ServerApp.port_retries == 0
    assert c.ServerApp.root_dir == "/data/o'brien" and c.ServerApp.open_browser is False
    assert c.PasswordIdentityProvider.hashed_password == h and c.IdentityProvider.token == ""
    assert passwords.verify_password(c.PasswordIdentityProvider.hashed_password, PASSWORD)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing: apt-get install systemd")
def test_jupyter_unit_passes_systemd_analyze_verify_and_a_broken_one_fails(tmp_path):
    (tmp_path / "env/bin").mkdir(parents=True)
    jupyter = tmp_path / "env/bin/jupyter"
    jupyter.write_text("#!/bin/sh\n")
    jupyter.chmod(0o755)
    unit = tmp_path / pyenv.JUPYTER_UNIT
    kw = dict(unit_user="root", env_name="dl", env_prefix=str(tmp_path / "env"), root_dir=str(tmp_path),
              config_path=str(tmp_path / "cfg.py"))
    unit.write_text(render("jupyter.service.j2", **kw))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"ExecStart={tmp_path}/env/bin/jupyter lab --no-browser --config={tmp_path}/cfg.py" in unit.read_text()
    jupyter.unlink()  # the check can fail: ExecStart missing
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode != 0 and "jupyter" in r.stderr


# ------------------------------------------------------------------ torch source and pins

def test_torchvision_pairs_and_pins():
    assert pyenv.torchvision_spec("2.14.1") == "torchvision==0.29.*"
    assert pyenv.torchvision_spec("2.7") == "torchvision==0.22.*"
    assert pyenv.torchvision_spec(None) == "torchvision"
    assert pyenv.torch_requirement("2.14.1") == "torch==2.14.1"
    assert pyenv.torch_requirement("2.14") == "torch==2.14.*"
    assert pyenv.version_matches("2.14", "2.14.1+cu130") and pyenv.version_matches("2.14.1", "2.14.1+cpu")
    assert not pyenv.version_matches("2.14.1", "2.14.10") and not pyenv.version_matches("2.13", "2.14.1")


def _resolution(variant: str, version: str = "2.14"):
    return SimpleNamespace(torch=SimpleNamespace(
        variant=variant, version=version, index_url=f"https://download.pytorch.org/whl/{variant}"))


def test_torch_source_from_resolver_and_overrides():
    src = pyenv.torch_source({}, _resolution("cu128"))
    assert (src.index_url, src.version, src.gpu) == ("https://download.pytorch.org/whl/cu128", "2.14", True)
    assert src.pip_args() == ["--index-url", "https://download.pytorch.org/whl/cu128"]
    mirror = pyenv.torch_source({"pip_index_url": "http://mirror/whl/cu128/", "torch_version": "2.14.1",
                                   "pip_find_links": ["/srv/wheels"]}, _resolution("cu128"))
    assert mirror.pip_args() == ["--index-url", "http://mirror/whl/cu128", "--find-links", "/srv/wheels"]
    assert mirror.requirements() == ["torch==2.14.1", "torchvision==0.29.*"]
    assert pyenv.torch_source({"cpu_only": True}, None).index_url == "https://download.pytorch.org/whl/cpu"


def test_torch_needs_install_never_keeps_a_cpu_build_on_a_gpu_host():
    gpu = pyenv.torch_source({"torch_version": "2.14.1"}, _resolution("cu130"))
    cpu = pyenv.torch_source({"torch_version": "2.14.1", "cpu_only": True}, _resolution("cpu"))
    env = {"dists": {"torch": "2.14.1+cu130", "torchvision": "0.29.1"}, "torch_cuda": "13.0"}
    assert pyenv.torch_needs_install(gpu, env) is None
    assert pyenv.torch_needs_install(gpu, None) == "torch is not installed"
    cpu_build = {"dists": {"torch": "2.14.1+cpu", "torchvision": "0.29.1"}, "torch_cuda": None}
    assert "CPU build" in pyenv.torch_needs_install(gpu, cpu_build)
    assert pyenv.torch_needs_install(cpu, cpu_build) is None
    old = {"dists": {"torch": "2.13.0", "torchvision": "0.28.0"}, "torch_cuda": "13.0"}
    assert pyenv.torch_needs_install(gpu, old) == "torch 2.13.0 installed, torch_version is 2.14.1"
    cmd = pyenv.torch_install_command("/e/bin/python", gpu, force_reinstall=True)
    assert "--force-reinstall --index-url https://download.pytorch.org/whl/cu130" in cmd
    assert "torch.version.cuda" in cmd  # a CPU build on a GPU host fails the step
    assert "torch.version.cuda" not in pyenv.torch_install_command("/e/bin/python", cpu)


def test_unsatisfied_requirements():
    have = {"fastai": "2.8.12", "pandas": "2.1.0", "ipykernel": "7.4.0"}
    assert pyenv.unsatisfied(["fastai", "ipykernel", "Pandas>=2.2", "timm"], have) == ["Pandas>=2.2", "timm"]


# ------------------------------------------------------------------ password and apply option

def test_hash_is_jupyter_compatible_and_sha512_fallback_verifies():
    h = passwords.hash_password(PASSWORD)
    assert h.startswith("argon2:$argon2id$") and passwords.check_password_hash(h) is None
    assert passwords.verify_password(h, PASSWORD) and not passwords.verify_password(h, "nope")
    salt = "00ff00ff00ff"
    fallback = f"sha512:{salt}:" + hashlib.sha512(PASSWORD.encode() + salt.encode()).hexdigest()
    assert passwords.check_password_hash(fallback) is None and passwords.verify_password(fallback, PASSWORD)


def test_password_prompt_option_passes_only_the_hash():
    seen = {}

    @click.command()
    @common.jupyter_password_option
    @click.option("--data", "data", multiple=True)
    def apply(data):
        seen["data"] = data

    r = CliRunner().invoke(apply, ["--data", "x=1", "--jupyter-password-prompt"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert r.exit_code == 0, r.output
    assert seen["data"][0] == "x=1"
    key, _, value = seen["data"][1].partition("=")
    assert key == "jupyter_password_hash" and passwords.verify_password(value, PASSWORD)
    assert PASSWORD not in r.output
    r = CliRunner().invoke(apply, [])
    assert r.exit_code == 0 and seen["data"] == ()


# ------------------------------------------------------------------ tunnel hint

def test_tunnel_hint_line_and_ssh_config_stanza():
    text = jupyter_settings.tunnel_hint("rig", {"ssh_user": "alice", "jupyter_port": 8890, "jupyter_ip": "127.0.0.1"})
    assert "  ssh -N -L 8890:localhost:8890 alice@rig" in text.splitlines()
    assert "Host rig-jupyter" in text and "    LocalForward 8890 localhost:8890" in text
    other = jupyter_settings.tunnel_hint("rig", {"ssh_user": "bob", "ssh_hostname": "10.0.0.5", "ssh_port": 2222,
                                        "jupyter_port": 8888, "jupyter_ip": "10.0.0.5"})
    assert "ssh -N -L 8888:10.0.0.5:8888 -p 2222 bob@10.0.0.5" in other and "    Port 2222" in other


# ------------------------------------------------------------------ the conda install script, run for real

def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


def test_install_script_refuses_a_checksum_mismatch_and_leaves_nothing(tmp_path):
    """Real bash, curl (file://) and sha256sum; the installer is the STAND-IN (tests/fixtures)."""
    installer = build_installer(tmp_path / "dl")
    url = installer.as_uri()
    prefix = tmp_path / "home/miniforge3"
    prefix.parent.mkdir()
    r = _run(conda_role.install_command(url, "0" * 64, str(prefix)))
    assert r.returncode == 1 and "conda_installer_sha256 mismatch" in r.stderr and "nothing installed" in r.stderr
    assert not prefix.exists()

    good = hashlib.sha256(installer.read_bytes()).hexdigest()
    r = _run(conda_role.install_command(url, good, str(prefix)))
    assert r.returncode == 0, r.stderr
    assert (prefix / "conda-meta/dlrig-installer").read_text() == f"url={url}\nsha256={good}\n"
    assert subprocess.run([prefix / "bin/conda", "--version"], capture_output=True, text=True).stdout == "conda 24.11.3\n"


def test_version_mismatch_report():
    state = {"exists": True, "conda": True, "version": "24.11.3", "installer": {"url": "u1", "sha256": "a" * 64}}
    assert conda_role.version_mismatch(state, "u1", "a" * 64) is None
    report = conda_role.version_mismatch(state, "u2", "b" * 64)
    assert "conda 24.11.3" in report and "left alone" in report and "installed from u1" in report
    hand = conda_role.version_mismatch({**state, "installer": None}, "u2", "b" * 64)
    assert "not installed by dlrig" in hand


def _tiny_wheel(folder, name: str, version: str, requires: tuple[str, ...] = ()):
    """A minimal pure-Python wheel (METADATA, WHEEL, RECORD, one module), built here."""
    import zipfile

    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{name}.py": "X = 1\n", f"{dist}/METADATA": meta,
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: dlrig-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for arc, text in files.items():
            z.writestr(arc, text)
        z.writestr(f"{dist}/RECORD", "".join(f"{a},,\n" for a in files) + f"{dist}/RECORD,,\n")
    return path


def test_install_with_a_wheelhouse_fetches_each_wheel_once_then_installs_from_it_alone(tmp_path):
    """cache_dir's wheelhouse: the first install fetches the whole closure into it (real pip,
    from a find-links folder standing in for the index), the install itself reads only the
    wheelhouse; with the source gone and the index a dead port, a reinstall still works."""
    import socket
    import sys

    src, wh = tmp_path / "src", tmp_path / "cache dir" / "wheels"
    src.mkdir()
    wh.mkdir(parents=True)
    _tiny_wheel(src, "dlrigdemo_a", "1.0", ("dlrigdemo_b",))
    _tiny_wheel(src, "dlrigdemo_b", "2.0")
    # pip from this interpreter's site-packages (no pip bootstrapped into the venv: quick)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(tmp_path / "env")],
                   check=True)
    python = str(tmp_path / "env" / "bin" / "python")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/simple"
    cmd = pyenv.install_command(python, ["--index-url", dead, "--find-links", str(src), "dlrigdemo_a"], uv=False,
                                wheelhouse=str(wh))
    assert "--index-url" not in cmd.split(" && ", 1)[1]  # the install itself: the wheelhouse alone
    r = _run(cmd)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in wh.iterdir()) == ["dlrigdemo_a-1.0-py3-none-any.whl",
                                                   "dlrigdemo_b-2.0-py3-none-any.whl"]
    listed = subprocess.run([python, "-m", "pip", "list", "--local", "--format=freeze"], capture_output=True, text=True).stdout
    assert "dlrigdemo_a==1.0" in listed.replace("-", "_") and "dlrigdemo_b==2.0" in listed.replace("-", "_")
    for f in src.iterdir():
        f.unlink()
    again = pyenv.install_command(python, ["--force-reinstall", "--index-url", dead, "--find-links", str(src),
                                           "dlrigdemo_a"], uv=False, wheelhouse=str(wh))
    r = _run(again)
    assert r.returncode == 0, r.stderr
    assert len(list(wh.iterdir())) == 2
