"""GPU stack on Debian 12 test hosts over real SSH, through the real CLI (`dlrig apply/plan`).

- ``debian`` source: the REAL Debian non-free ``nvidia-driver``/``nvidia-smi`` packages (785 MB;
  DKMS finds no kernel to build for in a test host and dpkg stays clean), held, re-planned to zero.
- ``nvidia`` source: against a FAKE NVIDIA repository: .debs built here with dpkg-deb carrying
  NVIDIA's package names and versions (nvidia-open 580.95.05-1, a decoy 590 branch the pin must
  skip, cuda-toolkit-13-0, libcudnn9-cuda-13 + libcudnn9-dev-cuda-13), a Release signed with a throwaway gpg key, served by
  python's http.server on 127.0.0.1. No NVIDIA software is involved.

The test hosts have no NVIDIA GPU: ``driver_gpus`` tells the resolver which card to plan for
(an RTX 2070 Super, 10de:1e84), exactly as a user preparing a host before the card is in would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dlrig.testing import nshost as NSHOST
from dlrig.testing import pool as POOL

pytestmark = pytest.mark.hosts

ROOT = Path(__file__).resolve().parents[2]
DEB_CACHE = Path(os.environ.get("DLRIG_DEB_CACHE", Path.home() / ".cache" / "dlrig" / "debs"))
GPU = ["10de:1e84"]
# No kernel headers (and so no DKMS module build: a test host has no kernel of its own to build for).
FAST = {"driver_gpus": GPU, "driver_kernel_headers": False, "driver_recommends": False}


def _dlrig(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlrig", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _apply(inv: Path, roles: str, *extra: str, timeout: int = 900) -> dict:
    res = _dlrig("apply", str(inv), "--roles", roles, "--yes", "--json", *extra, timeout=timeout)
    assert res.stdout.strip(), f"no JSON from apply (rc {res.returncode}): {res.stderr[-3000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert res.returncode == 0 and out["ok"], f"apply failed: {out}\n{res.stderr[-3000:]}"
    return out


def _plan(inv: Path, roles: str) -> dict:
    res = _dlrig("plan", str(inv), "--roles", roles, "--json")
    assert res.returncode == 0, f"plan failed (rc {res.returncode}): {res.stdout[-2000:]} {res.stderr[-3000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def _seed_debs(h: NSHOST.TestHost) -> None:
    """Copy cached .debs into the host's apt archive (apt skips downloading what is there)."""
    if DEB_CACHE.is_dir():
        archives = h.root / "var/cache/apt/archives"
        archives.mkdir(parents=True, exist_ok=True)
        for deb in DEB_CACHE.glob("*.deb"):
            shutil.copy2(deb, archives / deb.name)


def _keep_debs(h: NSHOST.TestHost) -> None:
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    for deb in (h.root / "var/cache/apt/archives").glob("*.deb"):
        if not (DEB_CACHE / deb.name).exists():
            shutil.copy2(deb, DEB_CACHE / deb.name)


# --- debian source: real packages ----------------------------------------------------------------


def test_debian_source_installs_holds_and_replans_to_zero(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    _seed_debs(h)
    inv = POOL.write_inventory([h], tmp_path / "inventory.py", data=FAST)

    t0 = time.monotonic()
    out = _apply(inv, "nvidia_driver")
    took = time.monotonic() - t0
    _keep_debs(h)
    print(f"debian source apply: {took:.1f} s")

    assert out["reboot"] == {h.name: "reboot required"}, out
    assert "hi  nvidia-driver " in h.ssh("dpkg -l nvidia-driver").stdout  # h: held, i: installed
    held = h.ssh("apt-mark showhold").stdout.split()
    assert {"nvidia-driver", "nvidia-smi"} <= set(held), held
    assert h.ssh("dpkg --audit").stdout.strip() == ""
    assert "blacklist nouveau" in (h.root / "etc/modprobe.d/dlrig-blacklist-nouveau.conf").read_text()
    # no GPU here: nvidia-smi must say exactly that, not crash
    smi = h.ssh("nvidia-smi", check=False)
    assert smi.returncode == 9 and "couldn't communicate with the NVIDIA driver" in smi.stdout + smi.stderr

    assert _plan(inv, "nvidia_driver")["changes"] == []

    # held really means held: apt refuses to remove/upgrade without unholding
    sim = h.ssh("apt-get -s remove nvidia-driver", check=False)
    assert sim.returncode != 0 or "held" in (sim.stdout + sim.stderr).lower()

    # apply --reboot on a host sharing this machine's kernel: refused, says why
    h.ssh("sudo apt-mark unhold nvidia-smi && sudo apt-get -y purge nvidia-smi")
    out = _apply(inv, "nvidia_driver", "--reboot")
    assert out["reboot"][h.name].startswith("not rebooted: it is the machine dlrig runs on"), out


def test_doctor_reports_facts_and_plan(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    inv = POOL.write_inventory([h], tmp_path / "inventory.py", data={"driver_gpus": GPU})
    res = _dlrig("doctor", str(inv), "--json", timeout=120)
    out = json.loads(res.stdout)
    r = out["hosts"][h.name]
    assert r["facts"]["os"] == "debian-12"
    assert r["facts"]["driver"]["loaded"] is None
    driver = dict(r["resolution"]["driver"])
    pkgs = driver.pop("packages")
    assert driver == {"branch": 535, "flavor": "proprietary", "source": "debian"}
    # the packages doctor plans are Debian 12's real ones (its recorded Packages index)
    recorded = (ROOT / "tools/sources/debian/nvidia-driver.txt").read_text().split("## dists/trixie")[0]
    assert "nvidia-driver" in pkgs and all(f"\n{p} 535." in recorded for p in pkgs if p != "nvidia-persistenced"), pkgs
    assert all(f"\n{p} " in recorded for p in pkgs), pkgs
    text = _dlrig("doctor", str(inv), timeout=120).stdout
    assert "secure boot" in text and "plan driver  535 proprietary from debian" in text


def test_secure_boot_with_dkms_refuses_before_changing_anything(make_hosts, tmp_path):
    """FAKE mokutil on the host (a script printing "SecureBoot enabled"): the refusal is one line."""
    (h,) = make_hosts(1)
    fake = h.root / "usr/local/bin/mokutil"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --sb-state ] && echo 'SecureBoot enabled'\n")
    fake.chmod(0o755)
    inv = POOL.write_inventory([h], tmp_path / "inventory.py", data=FAST)
    res = _dlrig("apply", str(inv), "--roles", "nvidia_driver", "--yes")  # not --json: pyinfra's error on stderr
    assert res.returncode != 0
    assert "Secure Boot is on and driver_source='debian'" in res.stdout + res.stderr
    assert "driver_mok_password" in res.stdout + res.stderr
    assert not (h.root / "etc/modprobe.d/dlrig-blacklist-nouveau.conf").exists()


@pytest.mark.slow
def test_debian_driver_and_distro_cuda_converge(make_hosts, tmp_path):
    """The done-when: --roles nvidia_driver,cuda on Debian 12 (nvidia-cuda-toolkit: 1.6 GB, cached)."""
    (h,) = make_hosts(1)
    _seed_debs(h)
    inv = POOL.write_inventory([h], tmp_path / "inventory.py", data=FAST)
    t0 = time.monotonic()
    _apply(inv, "nvidia_driver,cuda", timeout=1800)
    print(f"nvidia_driver,cuda apply: {time.monotonic() - t0:.1f} s")
    _keep_debs(h)
    assert "release 11.8" in h.ssh("nvcc --version").stdout
    assert "CUDA_HOME=/usr/lib/nvidia-cuda-toolkit" in (h.root / "etc/profile.d/dlrig-cuda.sh").read_text()
    assert _plan(inv, "nvidia_driver,cuda")["changes"] == []


# --- nvidia source: a FAKE signed repository on 127.0.0.1 ----------------------------------------

FAKE_PACKAGES = [
    # (name, version, depends, files {path: (content, mode)})
    ("nvidia-kernel-open-dkms", "580.95.05-1", "", {}),
    ("nvidia-persistenced", "580.95.05-1", "", {
        "lib/systemd/system/nvidia-persistenced.service": (
            "[Unit]\nDescription=FAKE nvidia-persistenced\n[Service]\nExecStart=/bin/true\n"
            "[Install]\nWantedBy=multi-user.target\n", 0o644)}),
    ("nvidia-open", "580.95.05-1", "nvidia-kernel-open-dkms (= 580.95.05-1), nvidia-persistenced", {}),
    ("nvidia-driver-pinning-580", "580.95.05-1", "", {}),
    # the decoy: a newer branch in the same repository; the apt pin must keep 580
    ("nvidia-kernel-open-dkms", "590.44.01-1", "", {}),
    ("nvidia-open", "590.44.01-1", "nvidia-kernel-open-dkms (= 590.44.01-1)", {}),
    ("nvidia-driver-pinning-590", "590.44.01-1", "", {}),
    ("cuda-toolkit-13-0", "13.0.2-1", "", {
        "usr/local/cuda-13.0/bin/nvcc": (
            "#!/bin/sh\necho 'FAKE nvcc: Cuda compilation tools, release 13.0, V13.0.88'\n", 0o755)}),
    ("libcudnn9-cuda-13", "9.17.0.29-1", "", {}),
    ("libcudnn9-dev-cuda-13", "9.17.0.29-1", "libcudnn9-cuda-13 (= 9.17.0.29-1)", {}),
]


# A newer 580 release (FAKE): the branch pin allows it, so it is apt's candidate once published.
NEWER_580 = [
    ("nvidia-kernel-open-dkms", "580.105.08-1", "", {}),
    ("nvidia-open", "580.105.08-1", "nvidia-kernel-open-dkms (= 580.105.08-1), nvidia-persistenced", {}),
    ("nvidia-driver-pinning-580", "580.105.08-1", "", {}),
]


def _build_fake_repo(root: Path, gnupg: Path, packages: list = FAKE_PACKAGES) -> Path:
    """The FAKE repository at ``root``, signed with the key in ``gnupg`` (made on the first call);
    called again with more packages, it publishes them (a new Packages, Release, signatures)."""
    repo = root / "debian12" / "x86_64"
    repo.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, version, depends, files in packages:
        pkg = root / "build" / f"{name}_{version}"
        shutil.rmtree(pkg, ignore_errors=True)
        (pkg / "DEBIAN").mkdir(parents=True)
        control = (f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
                   f"Maintainer: dlrig tests <fake@dlrig.invalid>\n"
                   + (f"Depends: {depends}\n" if depends else "")
                   + f"Description: FAKE {name} for dlrig tests (carries NVIDIA's package name, contains nothing of NVIDIA's)\n")
        (pkg / "DEBIAN" / "control").write_text(control)
        for path, (content, mode) in files.items():
            f = pkg / path
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(content)
            f.chmod(mode)
        deb = repo / f"{name}_{version}_amd64.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(pkg), str(deb)],
                       check=True, capture_output=True)
        data = deb.read_bytes()
        entries.append(control.rstrip("\n") + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = "\n".join(entries).encode()
    (repo / "Packages").write_bytes(packages)
    release = ("Origin: dlrig-fake-nvidia\nLabel: dlrig-fake-nvidia\nArchitectures: amd64\n"
               f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
               f"MD5Sum:\n {hashlib.md5(packages).hexdigest()} {len(packages)} Packages\n"
               f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")
    (repo / "Release").write_text(release)
    env = dict(os.environ, GNUPGHOME=str(gnupg))
    gpg = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]
    if not gnupg.exists():
        gnupg.mkdir(mode=0o700)
        subprocess.run(gpg + ["--quick-gen-key", "dlrig FAKE NVIDIA repo <fake@dlrig.invalid>", "ed25519", "sign",
                              "1d"], check=True, capture_output=True, env=env)
    subprocess.run(gpg + ["--clearsign", "-o", str(repo / "InRelease"), str(repo / "Release")],
                   check=True, capture_output=True, env=env)
    subprocess.run(gpg + ["-abs", "-o", str(repo / "Release.gpg"), str(repo / "Release")],
                   check=True, capture_output=True, env=env)
    key = subprocess.run(["gpg", "--batch", "--armor", "--export"], check=True, capture_output=True, env=env).stdout
    colons = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"], check=True, capture_output=True,
                            text=True, env=env).stdout
    fingerprint = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    (root / "FINGERPRINT").write_text(fingerprint)  # the test's own key: the role must be told to trust it
    # gpg started an agent for this throwaway home: stop it, nothing of the test may outlive it.
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False, capture_output=True, env=env)
    (repo / "3bf863cc.pub").write_bytes(key)  # the file name of NVIDIA's real key; this one is ours
    return root


@pytest.fixture
def fake_nvidia_repo(tmp_path):
    root = _build_fake_repo(tmp_path / "repo", tmp_path / "gnupg")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


def _fingerprint(repo_url: str) -> str:
    with urllib.request.urlopen(f"{repo_url}/FINGERPRINT", timeout=10) as r:
        return r.read().decode().strip()


def test_nvidia_source_from_signed_fake_repo_pins_branch_and_converges(make_hosts, tmp_path, fake_nvidia_repo):
    (h,) = make_hosts(1)
    fpr = _fingerprint(fake_nvidia_repo)
    data = {**FAST, "driver_source": "nvidia", "nvidia_repo_url": fake_nvidia_repo}

    # By default only NVIDIA's own key is accepted: the FAKE repo's key is refused by apt itself.
    inv = POOL.write_inventory([h], tmp_path / "nvidia-key.py", data=data)
    r = _dlrig("apply", str(inv), "--roles", "nvidia_driver", "--yes")
    assert r.returncode == 1
    upd = h.ssh("sudo apt-get update", check=False)
    assert "NO_PUBKEY" in upd.stdout + upd.stderr or "not signed" in upd.stdout + upd.stderr, upd.stderr
    assert not h.ssh("dpkg -l 'nvidia-open*' 2>/dev/null | grep '^ii' || true").stdout.strip()

    inv = POOL.write_inventory([h], tmp_path / "inventory.py", data={**data, "nvidia_repo_key_fingerprint": fpr})
    out = _apply(inv, "nvidia_driver,cuda,cudnn")
    assert out["reboot"] == {h.name: "reboot required"}

    listing = (h.root / "etc/apt/sources.list.d/dlrig-nvidia-cuda.list").read_text()
    assert (f"deb [signed-by=/etc/apt/keyrings/dlrig-nvidia-cuda.asc,{fpr}] {fake_nvidia_repo}/debian12/x86_64 /"
            in listing)
    versions = h.ssh("dpkg-query -W -f '${Package} ${Version}\\n' nvidia-open nvidia-kernel-open-dkms "
                     "nvidia-driver-pinning-580 cuda-toolkit-13-0 libcudnn9-cuda-13 libcudnn9-dev-cuda-13").stdout
    assert "nvidia-open 580.95.05-1" in versions, versions  # not the 590 decoy
    assert "nvidia-kernel-open-dkms 580.95.05-1" in versions
    assert "cuda-toolkit-13-0 13.0.2-1" in versions and "libcudnn9-cuda-13 9.17.0.29-1" in versions
    assert "libcudnn9-dev-cuda-13 9.17.0.29-1" in versions
    assert {"nvidia-open", "nvidia-driver-pinning-580"} <= set(h.ssh("apt-mark showhold").stdout.split())
    assert "release 13.0" in h.ssh("bash -lc 'nvcc --version'").stdout
    assert h.ssh("systemctl is-enabled nvidia-persistenced", check=False).stdout.strip() == "enabled"
    assert _plan(inv, "nvidia_driver,cuda,cudnn")["changes"] == []

    # an unsigned repository is refused by apt: the key really is checked
    (h.root / "etc/apt/keyrings/dlrig-nvidia-cuda.asc").write_text("")
    upd = h.ssh("sudo apt-get update", check=False)
    assert "NO_PUBKEY" in upd.stdout + upd.stderr or "not signed" in upd.stdout + upd.stderr


def test_switching_source_replaces_the_conflicting_driver(make_hosts, tmp_path, fake_nvidia_repo):
    """Fake nvidia-open 580 installed first; then driver_branch=590 from the same FAKE repo: the old
    packages are unheld and replaced, the pin follows."""
    (h,) = make_hosts(1)
    data = {**FAST, "driver_source": "nvidia", "nvidia_repo_url": fake_nvidia_repo,
            "nvidia_repo_key_fingerprint": _fingerprint(fake_nvidia_repo)}
    inv = POOL.write_inventory([h], tmp_path / "inventory.py", data=data)
    _apply(inv, "nvidia_driver")
    _apply(inv, "nvidia_driver", "--data", "driver_branch=590")
    versions = h.ssh("dpkg-query -W -f '${Package} ${Version}\\n' nvidia-open nvidia-kernel-open-dkms").stdout
    assert "nvidia-open 590.44.01-1" in versions, versions
    assert "nvidia-driver-pinning-580" not in h.ssh("dpkg -l | grep '^ii' || true").stdout
    assert "590" in (h.root / "etc/apt/preferences.d/dlrig-nvidia-driver").read_text()
    inv2 = POOL.write_inventory([h], tmp_path / "inventory2.py", data={**data, "driver_branch": 590})
    assert _plan(inv2, "nvidia_driver")["changes"] == []


GPU_ROLES = "nvidia_driver,cuda,cudnn"


def _versions(h: NSHOST.TestHost, *names: str) -> dict[str, str]:
    out = h.ssh("dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(names) + " 2>/dev/null || true").stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_locked_gpu_versions_win_over_a_newer_candidate(make_hosts, tmp_path, fake_nvidia_repo):
    """Issue 12: lock a host with the driver, CUDA and cuDNN roles applied; NVIDIA (the FAKE repo)
    then publishes a newer 580; `apply --locked` on a fresh host installs the locked versions, with
    the branch pin and the holds, and refuses, naming it, a locked version no source has."""
    first, fresh = make_hosts(2)
    data = {**FAST, "driver_source": "nvidia", "nvidia_repo_url": fake_nvidia_repo,
            "nvidia_repo_key_fingerprint": _fingerprint(fake_nvidia_repo)}
    inv1 = POOL.write_inventory([first], tmp_path / "first.py", data=data)
    _apply(inv1, GPU_ROLES)
    lock1 = tmp_path / "first.lock"
    r = _dlrig("lock", str(inv1), "-o", str(lock1), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    entry = json.loads(lock1.read_text())["hosts"][first.name]
    locked = {p: entry["apt"][p] for p in ("nvidia-open", "nvidia-kernel-open-dkms", "nvidia-driver-pinning-580",
                                           "cuda-toolkit-13-0", "libcudnn9-cuda-13")}
    assert locked["nvidia-open"] == "580.95.05-1", locked

    # the FAKE repository publishes 580.105.08: apt's candidate from now on
    root = Path(tmp_path / "repo")
    _build_fake_repo(root, tmp_path / "gnupg", FAKE_PACKAGES + NEWER_580)

    # the reinstalled rig: a fresh host that gets the first one's lock entry
    lock2 = tmp_path / "fresh.lock"
    lock2.write_text(json.dumps({"dlrig_lock": 1, "hosts": {fresh.name: entry}}))
    inv2 = POOL.write_inventory([fresh], tmp_path / "fresh.py", data=data)
    res = _dlrig("plan", str(inv2), "--roles", GPU_ROLES, "--locked", str(lock2), "--json", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    diffs = json.loads(res.stdout.strip().splitlines()[-1])["differences"][fresh.name]
    assert "apt nvidia-open: locked 580.95.05-1, not installed" in diffs, diffs

    t0 = time.monotonic()
    _apply(inv2, GPU_ROLES, "--locked", str(lock2))
    print(f"apply --locked {GPU_ROLES}: {time.monotonic() - t0:.1f} s")
    assert _versions(fresh, *locked) == locked
    policy = fresh.ssh("apt-cache policy nvidia-open").stdout
    assert "Candidate: 580.105.08-1" in policy, policy  # the newer one was there: the lock won
    assert {"nvidia-open", "nvidia-driver-pinning-580"} <= set(fresh.ssh("apt-mark showhold").stdout.split())
    assert "Pin: version /^(1:)?580\\./" in (fresh.root / "etc/apt/preferences.d/dlrig-nvidia-driver").read_text()
    res = _dlrig("plan", str(inv2), "--roles", GPU_ROLES, "--locked", str(lock2), "--json", timeout=300)
    diffs = json.loads(res.stdout.strip().splitlines()[-1])["differences"][fresh.name]
    assert not [d for d in diffs if "nvidia" in d or "cud" in d], diffs
    # re-applying the lock changes nothing
    again = _apply(inv2, GPU_ROLES, "--locked", str(lock2))
    assert again["hosts"][fresh.name]["changed"] == 0, again
    assert _versions(fresh, *locked) == locked

    # a locked version no source has (nor cache_dir): refused, naming it and what there is instead
    moved = json.loads(json.dumps(entry))
    moved["apt"]["libcudnn9-cuda-13"] = "9.99.0.1-1"
    lock3 = tmp_path / "moved.lock"
    lock3.write_text(json.dumps({"dlrig_lock": 1, "hosts": {fresh.name: moved}}))
    r = _dlrig("apply", str(inv2), "--roles", GPU_ROLES, "--locked", str(lock3), "--yes")
    assert r.returncode != 0
    assert "libcudnn9-cuda-13: locked 9.99.0.1-1, available: 9.17.0.29-1" in r.stdout + r.stderr, r.stdout + r.stderr
    assert _versions(fresh, "libcudnn9-cuda-13") == {"libcudnn9-cuda-13": "9.17.0.29-1"}
