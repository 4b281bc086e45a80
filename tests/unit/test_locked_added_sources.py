"""``apply --locked`` reads the apt sources a run will add into a TEMPORARY apt state before any
change (dlrig.engine.lockfacts.added_sources_script): the script runs for real on this machine's
apt against a FAKE signed NVIDIA repository on 127.0.0.1 (tests/hosts/test_gpu_stack_hosts.py's:
NVIDIA's package names, .debs built here, a throwaway gpg key; nothing of NVIDIA's), and this
machine's own apt state must not change. On a test host through the CLI:
tests/hosts/test_locked_added_sources.py; the plan side: tests/plans/test_apt_plans.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import urllib.request

import pytest

from dlrig.engine.lockfacts import AddedSourceDebs, added_sources_script
from tests.hosts.test_gpu_stack_hosts import _fingerprint, fake_nvidia_repo  # noqa: F401 (a fixture)

KEYRING = "/etc/apt/keyrings/dlrig-nvidia-cuda.asc"  # the role's key path: the script must swap it
REAL = ("/var/lib/apt", "/etc/apt", "/var/cache/apt")

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("dpkg-deb") and shutil.which("apt-get")),
                                reason="needs gpg, dpkg-deb and apt-get (the FAKE repository and the real apt)")


@pytest.fixture
def fake_repo(fake_nvidia_repo):  # noqa: F811 (the FAKE repository's fixture, imported above)
    """The FAKE NVIDIA repository served on 127.0.0.1: (url, fingerprint, key sha256)."""
    url = f"{fake_nvidia_repo}/debian12/x86_64"
    with urllib.request.urlopen(f"{url}/3bf863cc.pub", timeout=10) as r:
        key = r.read()
    return url, _fingerprint(fake_nvidia_repo), hashlib.sha256(key).hexdigest()


def _snapshot() -> list[str]:
    """Every path under this machine's apt state with its size and mtime."""
    out = []
    for top in REAL:
        for dirpath, dirs, files in os.walk(top):
            for n in sorted(dirs + files):
                p = os.path.join(dirpath, n)
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    continue
                out.append(f"{p} {st.st_size} {st.st_mtime_ns}")
    return sorted(out)


def _source(url: str, fpr: str, key_sha256: str = "") -> dict:
    text = (f"# Managed by dlrig (role nvidia_driver): NVIDIA's CUDA repository\n"
            f"deb [signed-by={KEYRING},{fpr}] {url} /\n")
    return {"name": "NVIDIA CUDA repository", "text": text, "keyring": KEYRING, "key_url": f"{url}/3bf863cc.pub",
            "key_sha256": key_sha256}


def _run(tmp_path, wanted: dict, sources: list) -> dict:
    """The fact's command run here (TMPDIR: a folder of the test's, to prove the state is removed)."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir(exist_ok=True)
    before = _snapshot()
    r = subprocess.run(["sh", "-c", AddedSourceDebs().command(wanted=wanted, sources=sources)], capture_output=True,
                       text=True, env={**os.environ, "TMPDIR": str(tmp)}, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _snapshot() == before, "the temporary apt state changed this machine's apt state"
    assert list(tmp.iterdir()) == [], "the temporary apt state was left behind"
    return AddedSourceDebs().process(r.stdout.splitlines())


def test_offers_what_the_added_source_has_verified_with_the_roles_key(tmp_path, fake_repo):
    url, fpr, sha = fake_repo
    got = _run(tmp_path, {"nvidia-open": "580.95.05-1", "cuda-toolkit-13-0": "13.0.2-1", "not-there": "1"},
               [_source(url, fpr, sha.upper())])
    assert got["errors"] == []
    assert sorted(got["versions"]["nvidia-open"]) == ["580.95.05-1", "590.44.01-1"]
    assert got["versions"]["cuda-toolkit-13-0"] == ["13.0.2-1"]
    assert got["versions"]["not-there"] == []


def test_a_key_that_fails_its_checksum_is_an_error_not_a_pass(tmp_path, fake_repo):
    url, fpr, _ = fake_repo
    got = _run(tmp_path, {"nvidia-open": "580.95.05-1"}, [_source(url, fpr, "0" * 64)])
    assert got["versions"] == {}
    (err,) = got["errors"]
    assert err.startswith(f"NVIDIA CUDA repository: its key {url}/3bf863cc.pub could not be fetched: ") \
        and "Hash Sum mismatch" in err, err


def test_a_repository_signed_by_another_key_is_an_error(tmp_path, fake_repo):
    """signed-by names a fingerprint the served key does not have: apt refuses the repository's
    Release, as it would once the role added it; the script says so."""
    url, _, sha = fake_repo
    got = _run(tmp_path, {"nvidia-open": "580.95.05-1"}, [_source(url, "0123456789ABCDEF0123456789ABCDEF01234567", sha)])
    assert got["versions"] == {}
    (err,) = got["errors"]
    assert err.startswith("NVIDIA CUDA repository: apt-get update could not read it: ") and "InRelease" in err, err


def test_the_source_line_is_the_roles_text_with_the_temporary_key():
    text = "# x's\ndeb [signed-by=/etc/apt/keyrings/k.asc,ABC] http://127.0.0.1:1/r /\n"
    script = added_sources_script({"p": "1"}, [{"name": "R", "text": text, "keyring": "/etc/apt/keyrings/k.asc",
                                                "key_url": "http://127.0.0.1:1/r/k.pub", "key_sha256": ""}])
    # the printf line, run alone with $d set, writes the role's text with the key path swapped
    start = script.index("printf '%s\\n' '# x")
    body = script[start:script.index(' >> "$d/sources.list"', start)]
    out = subprocess.run(["sh", "-c", f"d=/TMP; {body}"], capture_output=True, text=True, check=True).stdout
    assert out == "# x's\ndeb [signed-by=/TMP/key0,ABC] http://127.0.0.1:1/r /\n\n"
    assert "SHA256:" not in script  # no checksum set: none asked for
    # the real apt state is never named as the state to update or read
    assert '-o Dir::State::Lists="$d/lists"' in script and '-o Dir::Etc::SourceParts="$d/parts"' in script
    assert '-o Dir::Cache="$d/cache"' in script and "#clear APT::Update::Post-Invoke-Success;" in script
