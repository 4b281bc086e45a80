"""Roles conda, pytorch and jupyter on Debian 12 test hosts over real SSH, through the real CLI.

What is REAL here: sshd, pyinfra, apt, Debian's python3 (3.11), pip, and every Python package:
torch 2.14.1 + torchvision 0.29.1 (CUDA 13 builds, run on CPU here) with their nvidia-* wheels
come from a local PEP 503 index served on 127.0.0.1 (the stand-in for download.pytorch.org,
see tests/fixtures/pyindex.py); fastai, JupyterLab, ipykernel and the rest come from PyPI through
this machine's TLS-inspecting proxy (the base role installs its CAs; the env's pip.conf makes pip
use the system store). JupyterLab is really started and really answers.

What is a STAND-IN: the Miniforge installer (tests/fixtures/miniforge_standin.py): conda-forge
and GitHub are unreachable here. It honours ``-b -p PREFIX`` and gives a venv of the host's
python3 with a tiny ``conda`` shim (env create/update), so the role's behaviour around it
(checksum refusal leaving nothing behind, .condarc, shell init, idempotence, another version
reported and left alone) is proven, not conda itself.

systemd does not run on test hosts (``systemctl enable`` works, ``start`` does not): the unit is
checked with ``systemd-analyze verify`` on the host, and JupyterLab is started by hand over SSH,
in the background, with the unit's own ExecStart line, as the unit's User.

The ~6 GB environment is built once per session (``ml_rig``) and shared by the slow tests.
"""

from __future__ import annotations

import glob
import hashlib
import http.cookiejar
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dlrig.engine import passwords, pyenv
from dlrig.testing import image as IMAGE
from dlrig.testing import nshost as NSHOST
from dlrig.testing import pool as POOL
from dlrig.testing import write_inventory
from tests.fixtures import pyindex
from tests.fixtures.miniforge_standin import build_installer

pytestmark = pytest.mark.hosts

MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))
TORCH = "2.14.1"
TORCHVISION = "0.29.1"
PASSWORD = "correct horse battery staple"
PREFIX = f"/home/{IMAGE.USER}/miniforge3"
PYTHON = f"{PREFIX}/envs/dl/bin/python"


def dlrig(*args: str, timeout: int = 3600) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "dlrig.cli", *args], capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - start


def plan_changes(inv: Path, roles: str) -> list[dict]:
    r, _ = dlrig("plan", str(inv), "--roles", roles, "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(r.stdout)["changes"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """http://127.0.0.1:PORT serving the stand-in installers and the real torch index."""
    root = tmp_path_factory.mktemp("served")
    installer = build_installer(root / "miniforge")
    other = build_installer(root / "miniforge-next", version="25.3.0-1", marker="next")
    index = pyindex.build_index(IMAGE.default_cache_dir() / f"torch-index-{TORCH}",
                                [f"torch=={TORCH}", f"torchvision=={TORCHVISION}"])
    os.symlink(index, root / "torch")
    with pyindex.serve(root) as url:
        yield {
            "url": url,
            "installer_url": f"{url}/miniforge/{installer.name}",
            "installer_sha256": sha256(installer),
            "other_url": f"{url}/miniforge-next/{other.name}",
            "other_sha256": sha256(other),
            "index_url": f"{url}/torch/simple",
        }


@dataclass
class Rig:
    host: NSHOST.TestHost
    inv: Path
    data: dict
    timings: dict = field(default_factory=dict)
    apply: subprocess.CompletedProcess | None = None


@pytest.fixture(scope="session")
def ml_rig(golden_image, served, tmp_path_factory):
    """ONE host taken from bare to the full ML stack by `dlrig apply --roles base,conda,pytorch,jupyter`."""
    work = tmp_path_factory.mktemp("mlrig")
    pool = POOL.HostPool(work / "hosts", golden_image)
    try:
        (host,) = pool.start_many(1)
        data = {
            "extra_ca_certificates": MACHINE_CAS,
            "cpu_only": True,
            "conda_installer_url": served["installer_url"],
            "conda_installer_sha256": served["installer_sha256"],
            "pip_index_url": served["index_url"],
            "torch_version": TORCH,
            "jupyter_ip": host.address,
            "jupyter_port": free_port(host.address),
            "jupyter_password_hash": passwords.hash_password(PASSWORD),
        }
        inv = write_inventory([host], work / "inv.py", data=data)
        rig = Rig(host, inv, data)
        r, rig.timings["first apply"] = dlrig("apply", str(inv), "--roles", "base,conda,pytorch,jupyter", "--yes")
        rig.apply = r
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
        yield rig
        print("\nml_rig timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in rig.timings.items()))
    finally:
        pool.stop_all()


# ------------------------------------------------------------------ the full stack (slow, shared)

@pytest.mark.slow
def test_bare_host_to_torch_and_fastai(ml_rig, record_property):
    host = ml_rig.host
    t0 = time.monotonic()
    r = host.ssh(f"{PYTHON} -c 'import torch, fastai, torchvision; "
                 "print(torch.__version__, torchvision.__version__, fastai.__version__, torch.ones(2).sum().item())'")
    ml_rig.timings["import torch, fastai"] = time.monotonic() - t0
    torch_v, tv_v, fastai_v, total = r.stdout.split()
    assert pyenv.base_version(torch_v) == TORCH and tv_v.startswith("0.29") and float(total) == 2.0
    record_property("versions", r.stdout.strip())
    record_property("first_apply_s", round(ml_rig.timings["first apply"], 1))
    # the default output (no -v) counted the torch wheels' bytes while they came (issue 10, item 6):
    # uv unpacks them into its cache as they arrive, so the count is at least the torch wheel's size
    counts = [m for m in re.finditer(rf"^  \S*{re.escape(host.name)}: pytorch: ([\d.]+) (kB|MB|GB) written \(",
                                     ml_rig.apply.stderr, re.M)]
    assert counts, ml_rig.apply.stderr[-3000:]
    last = float(counts[-1][1]) * {"kB": 1e3, "MB": 1e6, "GB": 1e9}[counts[-1][2]]
    (wheel,) = (IMAGE.default_cache_dir() / f"torch-index-{TORCH}" / "files").glob(f"torch-{TORCH}-*.whl")
    assert last >= wheel.stat().st_size, (last, ml_rig.apply.stderr[-3000:])
    # the user's bash knows conda and the env (shell init), and pip trusts the system CA store
    r = host.ssh("bash -ic 'conda activate dl && python -c \"import torch; print(torch.__file__)\"' 2>/dev/null")
    assert f"{PREFIX}/envs/dl/" in r.stdout
    assert "ca-certificates.crt" in host.ssh(f"cat {PREFIX}/envs/dl/pip.conf").stdout
    condarc = host.ssh(f"cat {PREFIX}/.condarc").stdout
    assert "- conda-forge" in condarc and "defaults" not in condarc.split("channels:")[1]
    # uv (use_uv, the default) installed the packages: pip's INSTALLER record says which tool did
    site = host.ssh(f"{PYTHON} -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'").stdout.strip()
    installers = host.ssh(f"for f in {site}/torch-*.dist-info/INSTALLER {site}/fastai-*.dist-info/INSTALLER; "
                          'do cat "$f"; echo; done').stdout.split()
    assert installers == ["uv", "uv"], installers
    # the kernel is registered for the user
    kernel = json.loads(host.ssh("cat ~/.local/share/jupyter/kernels/dl/kernel.json").stdout)
    assert kernel["argv"][0] == PYTHON


@pytest.mark.slow
def test_second_apply_and_replan_change_nothing(ml_rig):
    t0 = time.monotonic()
    assert plan_changes(ml_rig.inv, "base,conda,pytorch,jupyter") == []
    ml_rig.timings["no-op plan"] = time.monotonic() - t0
    r, ml_rig.timings["no-op apply"] = dlrig("apply", str(ml_rig.inv), "--roles", "base,conda,pytorch,jupyter",
                                             "--yes", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)["hosts"][ml_rig.host.name]
    assert summary["changed"] == 0 and summary["failed"] == 0, summary


@pytest.mark.slow
def test_apply_prints_the_tunnel_line_and_ssh_config(ml_rig):
    out = ml_rig.apply.stdout
    port = ml_rig.data["jupyter_port"]
    addr = ml_rig.host.address
    assert f"ssh -N -L {port}:{addr}:{port}" in out, out[-2000:]
    assert f"LocalForward {port} {addr}:{port}" in out


@pytest.mark.slow
def test_jupyter_unit_passes_systemd_analyze_verify(ml_rig):
    unit = f"/etc/systemd/system/{pyenv.JUPYTER_UNIT}"
    r = ml_rig.host.ssh(f"sudo systemd-analyze verify {unit}; echo rc=$?", check=False)
    assert r.stdout.strip().endswith("rc=0"), r.stdout + r.stderr
    assert ml_rig.host.ssh(f"test -L /etc/systemd/system/multi-user.target.wants/{pyenv.JUPYTER_UNIT} "
                           "&& echo enabled").stdout.strip() == "enabled"


JUPYTER_CHECK = str(Path(__file__).resolve().parents[2] / "dlrig" / "verify" / "checks" / "test_jupyter.py")


@pytest.mark.slow
def test_jupyterlab_answers_and_refuses_requests_without_credentials(ml_rig, tmp_path):
    """Started by hand (no systemd on test hosts) with the unit's own ExecStart, as its User."""
    host = ml_rig.host
    unit = host.ssh(f"cat /etc/systemd/system/{pyenv.JUPYTER_UNIT}").stdout
    fields = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    user, cwd, start = fields["User"], fields["WorkingDirectory"], fields["ExecStart"]
    inner = shlex.quote(f"echo $$ > /tmp/jupyter.pid; exec {start}")
    host.ssh(f"( cd {shlex.quote(cwd)} && exec sudo -u {user} -H setsid sh -c {inner} ) "
             "> /tmp/jupyter.log 2>&1 < /dev/null &")
    base = f"http://{host.address}:{ml_rig.data['jupyter_port']}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                urllib.request.urlopen(f"{base}/login", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                if time.monotonic() - t0 > 90:
                    pytest.fail("JupyterLab did not answer in 90 s:\n" + host.ssh("tail -30 /tmp/jupyter.log").stdout)
                time.sleep(0.5)
        ml_rig.timings["jupyter up"] = time.monotonic() - t0
        # no credentials: the API refuses
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/api/status", timeout=5)
        assert e.value.code == 403
        # a wrong password does not log in; the right one does
        assert _login(base, "wrong") is None
        opener = _login(base, PASSWORD)
        assert opener is not None, "the password (hashed on the controller) was refused"
        status = json.loads(opener.open(f"{base}/api/status", timeout=5).read())
        assert "started" in status
        kernels = json.loads(opener.open(f"{base}/api/kernelspecs", timeout=5).read())
        assert "dl" in kernels["kernelspecs"]
        # the shipped check against this real JupyterLab: 403 without credentials, login page 200
        r = _run_checks(ml_rig, tmp_path, f"{JUPYTER_CHECK}::test_jupyterlab_answers_and_wants_credentials")
        assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-3000:]
    finally:
        host.ssh("sudo kill $(cat /tmp/jupyter.pid)", check=False)
    # the broken state: something serves the port without asking for credentials -> the check fails
    host.ssh("mkdir -p /tmp/open/api /tmp/open/login && echo '{}' > /tmp/open/api/status && echo x > /tmp/open/login/index.html")
    host.ssh(f"cd /tmp/open && (setsid python3 -m http.server {ml_rig.data['jupyter_port']} --bind {host.address} "
             "> /tmp/open.log 2>&1 < /dev/null & echo $! > /tmp/open.pid)")
    try:
        t0 = time.monotonic()
        while host.ssh(f"curl -s -o /dev/null {base}/api/status", check=False).returncode != 0:
            assert time.monotonic() - t0 < 30, host.ssh("cat /tmp/open.log").stdout
            time.sleep(0.3)
        r = _run_checks(ml_rig, tmp_path, f"{JUPYTER_CHECK}::test_jupyterlab_answers_and_wants_credentials")
        assert r.returncode != 0 and "answered 200 without credentials" in r.stdout, r.stdout[-3000:]
    finally:
        host.ssh("kill $(cat /tmp/open.pid)", check=False)


def _login(base: str, password: str):
    """POST /login with the _xsrf cookie; an opener holding the session cookie, or None."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
    opener.open(f"{base}/login", timeout=5).read()
    xsrf = next((c.value for c in jar if c.name == "_xsrf"), "")
    body = urllib.parse.urlencode({"password": password, "_xsrf": xsrf}).encode()
    try:
        opener.open(urllib.request.Request(f"{base}/login?next=%2Flab", data=body), timeout=30)
    except urllib.error.HTTPError as e:
        if e.code == 302 and "/lab" in (e.headers.get("Location") or ""):
            return opener
        return None
    return None  # 200: the login form again (wrong password)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


# ------------------------------------------------------------------ conda role on its own (fast)

def test_conda_checksum_refused_then_installed_idempotent_and_other_version_reported(
    make_hosts, served, tmp_path
):
    (host,) = make_hosts(1)
    common = {"conda_installer_url": served["installer_url"]}
    bad = write_inventory([host], tmp_path / "bad.py",
                          data={**common, "conda_installer_sha256": "0" * 64})
    r, _ = dlrig("apply", str(bad), "--roles", "conda", "--yes")
    assert r.returncode != 0
    assert "conda_installer_sha256 mismatch" in r.stdout + r.stderr
    assert host.ssh(f"test -e {PREFIX} && echo left || echo gone").stdout.strip() == "gone"
    assert host.ssh("ls -d /tmp/tmp.* 2>/dev/null | wc -l").stdout.strip() == "0", "temp installer left behind"

    good = write_inventory([host], tmp_path / "good.py",
                           data={**common, "conda_installer_sha256": served["installer_sha256"]})
    r, t_install = dlrig("apply", str(good), "--roles", "conda", "--yes")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert host.ssh(f"{PREFIX}/bin/conda --version").stdout.strip() == "conda 24.11.3"
    marker = host.ssh(f"cat {PREFIX}/conda-meta/dlrig-installer").stdout
    assert f"sha256={served['installer_sha256']}" in marker
    assert host.ssh(f"stat -c %U {PREFIX}/bin/conda").stdout.strip() == IMAGE.USER
    assert host.ssh("bash -ic 'type conda' 2>/dev/null | head -1").stdout.strip() == "conda is a function"
    assert plan_changes(good, "conda") == []

    # another installer (another Miniforge version): reported, left alone, no change planned
    other = write_inventory([host], tmp_path / "other.py", data={
        "conda_installer_url": served["other_url"], "conda_installer_sha256": served["other_sha256"]})
    r, _ = dlrig("apply", str(other), "--roles", "conda", "--yes")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "conda 24.11.3" in r.stderr and "left alone" in r.stderr, r.stderr[-3000:]
    assert host.ssh(f"cat {PREFIX}/conda-meta/dlrig-installer").stdout == marker
    assert plan_changes(other, "conda") == []
    print(f"\nconda role: stand-in install apply {t_install:.1f} s")


# ------------------------------------------------------------------ the shipped checks on the rig

def _run_checks(rig: Rig, tmp_path: Path, *only: str, **settings) -> subprocess.CompletedProcess:
    from dlrig.engine.preflight import effective_data
    from dlrig.verify.runner import CONTEXT_ENV, CheckContext

    ctx = CheckContext(host=rig.host.name, settings=effective_data({**rig.data, **settings}),
                       roles=["conda", "pytorch", "jupyter"], login_user=IMAGE.USER)
    path = ctx.dump(tmp_path / "context.json")
    checks = Path(__file__).resolve().parents[2] / "dlrig" / "verify" / "checks"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--sudo",
         f"--hosts={rig.host._testinfra_spec()}", "-rs",
         *(only or [str(checks / f"test_{r}.py") for r in ("conda", "pytorch", "jupyter")])],
        capture_output=True, text=True, env=dict(os.environ, **{CONTEXT_ENV: str(path)}), cwd=checks, timeout=900,
    )


@pytest.mark.slow
def test_shipped_checks_pass_on_the_rig_and_fail_with_a_hint(ml_rig, tmp_path):
    r = _run_checks(ml_rig, tmp_path)
    assert r.returncode == 0, r.stdout[-4000:]
    assert "systemd is not running" in r.stdout  # nothing listens (no systemd here): skipped, and says why
    r = _run_checks(ml_rig, tmp_path, torch_version="2.13.0", extra_packages=["nosuchpkg-dlrig"])
    assert r.returncode != 0
    assert "torch 2.14.1" in r.stdout and "torch_version is 2.13.0" in r.stdout
    assert "not installed or wrong version: nosuchpkg-dlrig" in r.stdout and "HINT: run `dlrig apply" in r.stdout
