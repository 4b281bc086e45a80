"""A newcomer's first hour, on fresh Debian 12 test hosts over real SSH.

1. The wheel installed into a fresh venv, run from the clone's root (whose ``dlrig/`` folder must not
   shadow the installed package): apply, a zero-change re-plan and verify against a test host.
2. The README's "On the rig itself" block, run literally on a fresh test host (its Debian python3 is
   externally managed, like Ubuntu 24.04's): apt installs pipx, pipx installs the clone, dlrig plans,
   applies (with sudo) and verifies that host against itself with inventories/local.py (@local).
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import sys
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from dlrig.testing import write_inventory
from tests.fixtures.wheel import ROOT, build_wheel, venv_with

pytestmark = pytest.mark.hosts

MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))
WALKTHROUGH = re.compile(r"<!-- walkthrough: begin -->\s*```sh\n(?P<body>.*?)```\s*<!-- walkthrough: end -->", re.S)


def readme_walkthrough() -> list[str]:
    """The README's commands for installing and running dlrig on the rig itself, one per line."""
    m = WALKTHROUGH.search((ROOT / "README.md").read_text())
    assert m, "README.md lost its walkthrough block (<!-- walkthrough: begin --> ... end)"
    return [line for line in m["body"].splitlines() if line.strip()]


def test_installed_wheel_run_from_the_clone_root_applies_replans_and_verifies(make_hosts, tmp_path,
                                                                             tmp_path_factory):
    wheel = build_wheel(tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("clone"))
    dlrig = str(venv_with(wheel, tmp_path / "venv") / "dlrig")
    (host,) = make_hosts(1)
    inv = write_inventory([host], tmp_path / "inv.py", data={"extra_ca_certificates": MACHINE_CAS})

    def run(*args):
        return subprocess.run([dlrig, *args], capture_output=True, text=True, cwd=ROOT, timeout=900)

    r = run("verify", str(inv), "--roles", "base,power")
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == (f"{host.name}: not provisioned by dlrig yet: run `dlrig apply {inv}` first; "
                                        "the checks below show what is missing")
    r = run("verify", str(inv), "--roles", "base,power", "--json")
    out = json.loads(r.stdout)
    assert out["unprovisioned"] == [host.name]
    hints = [x["hint"] for x in out["results"] if "dlrig apply" in x["hint"]]
    assert hints and all(f"dlrig apply {inv} --roles" in h for h in hints), hints  # they name the inventory
    r = run("apply", str(inv), "--roles", "base,power", "--yes", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["ok"] is True
    r = run("plan", str(inv), "--roles", "base,power", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["changes"] == []
    r = run("verify", str(inv), "--roles", "base,power", "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


@pytest.mark.slow
def test_readme_walkthrough_pipx_install_and_local_apply_on_a_fresh_host(make_hosts, tmp_path, record_property):
    (host,) = make_hosts(1)
    # This machine's network: HTTPS goes through a TLS-inspecting proxy whose CA the host must
    # trust (a lab setting, not a step of the walkthrough).
    for i, ca in enumerate(MACHINE_CAS):
        host.ssh(f"sudo tee /usr/local/share/ca-certificates/machine-{i}.crt >/dev/null", input=Path(ca).read_text())
    host.ssh("sudo update-ca-certificates >/dev/null 2>&1")
    # The clone: what git would clone, copied to ~/dlrig on the host.
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    archive = tmp_path / "clone.tar"
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, files):
            if (ROOT / name).is_file():
                tar.add(ROOT / name, arcname=f"dlrig/{name}")
    subprocess.run(host.ssh_argv("tar -xf - -C ~"), stdin=archive.open("rb"), check=True, capture_output=True)

    steps = readme_walkthrough()
    env = "export PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
    transcript = []
    for step in steps:
        start = time.monotonic()
        # Each line runs in a login shell that has run the lines before it (cd carries over).
        earlier = [s for s in steps[: steps.index(step)] if s.split("#")[0].strip().startswith("cd ")]
        script = "; ".join([env, "set -e", "cd ~", *[e.split("#")[0].strip() for e in earlier], step])
        r = host.ssh(f"bash -lc {shlex.quote(script)}", check=False, timeout=1800)
        transcript.append(f"$ {step}   # exit {r.returncode}, {time.monotonic() - start:.0f}s")
        assert r.returncode == 0, f"{step}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    record_property("transcript", "\n".join(transcript))
    print("\n".join(transcript))
    # The rig itself now holds what the roles promise (independent of dlrig's own verify).
    t = host.testinfra_host()
    assert t.package("pipx").is_installed
    assert t.package("build-essential").is_installed
    assert t.file("/etc/apt/apt.conf.d/90dlrig").exists
    assert t.file("/etc/systemd/system/sleep.target").linked_to == "/dev/null"


def test_init_over_ssh_then_apply_and_verify_with_only_what_init_wrote(make_hosts, tmp_path):
    """`dlrig init --host` probes a fresh host over SSH (no NVIDIA GPU there: the CPU-only profile),
    and the inventory it writes is all that apply and verify get (plus this machine's proxy CA and
    the throw-away test host's unknown host key, which are not the rig's settings)."""
    (host,) = make_hosts(1)
    inv = tmp_path / "my-rig.py"

    def dlrig(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "dlrig", *args], capture_output=True, text=True, cwd=ROOT,
                              input=stdin, timeout=900)

    r = dlrig("init", "--host", host.address, "--user", host.user, "--key", str(host.key_path), "--port",
              str(host.port), "--no-authorized-key", "--jupyter-password-stdin", "--yes", "-o", str(inv),
              stdin="s3cret-pass\n")
    assert r.returncode == 0, r.stderr
    assert "os      debian-12" in r.stderr and "CPU-only profile" in r.stderr
    assert "s3cret-pass" not in inv.read_text()
    lab = ["--data", f"extra_ca_certificates={json.dumps(MACHINE_CAS)}", "--data", "ssh_known_hosts_file=/dev/null",
           "--data", "ssh_strict_host_key_checking=no"]
    r = dlrig("apply", str(inv), "--roles", "base,power", "--yes", "--json", *lab)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["hosts"]["rig"]["status"] == "changes"
    r = dlrig("verify", str(inv), "--roles", "base,power", *lab)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_a_failing_demo_says_why_in_one_line():
    """The jupyter role without a password hash refuses: the demo's report names that cause."""
    r = subprocess.run([sys.executable, "-m", "dlrig", "demo", "--roles", "jupyter"], capture_output=True,
                       text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 1
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("  cause ")]
    assert line.startswith("  cause       apply: pyinfra error in ") and "jupyter_password_hash is not set" in line, line
