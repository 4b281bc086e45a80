"""dlrig.testing.nshost: golden image caching, test hosts over real SSH, inventories, teardown."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dlrig.testing import image as IMAGE
from dlrig.testing import nshost as NSHOST
from dlrig.testing import pool as POOL
from dlrig.testing import system as SYSTEM

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ golden image (no hosts)

def test_recipe_hash_follows_mirror_and_recipe(monkeypatch):
    a = IMAGE.recipe_hash("http://a.example/debian", "http://s.example/debian-security")
    assert a == IMAGE.recipe_hash("http://a.example/debian", "http://s.example/debian-security")
    assert a != IMAGE.recipe_hash("http://b.example/debian", "http://s.example/debian-security")
    assert a != IMAGE.recipe_hash("http://a.example/debian", "http://t.example/debian-security")
    monkeypatch.setattr(IMAGE, "PACKAGES", IMAGE.PACKAGES + ("curl",))
    assert a != IMAGE.recipe_hash("http://a.example/debian", "http://s.example/debian-security")
    monkeypatch.undo()
    monkeypatch.setattr(IMAGE, "RECIPE_VERSION", IMAGE.RECIPE_VERSION + 1)
    assert a != IMAGE.recipe_hash("http://a.example/debian", "http://s.example/debian-security")


def test_sources_list_has_all_components_updates_and_security():
    text = IMAGE.sources_list("http://m/debian", "http://s/debian-security")
    assert text.splitlines() == [
        "deb http://m/debian bookworm main contrib non-free non-free-firmware",
        "deb http://m/debian bookworm-updates main contrib non-free non-free-firmware",
        "deb http://s/debian-security bookworm-security main contrib non-free non-free-firmware",
    ]


def test_suite_is_part_of_the_recipe_and_checked():
    m, s = "http://m/debian", "http://s/debian-security"
    assert IMAGE.recipe_hash(m, s) == IMAGE.recipe_hash(m, s, "bookworm")
    assert IMAGE.recipe_hash(m, s, "trixie") != IMAGE.recipe_hash(m, s, "bookworm")
    with pytest.raises(SYSTEM.HostError, match="suite 'sid' is not a test host suite; use one of bookworm, trixie"):
        IMAGE.recipe_hash(m, s, "sid")


def test_deb822_sources_of_a_newer_suite_name_updates_and_security():
    text = IMAGE.deb822_sources("http://m/debian", "http://s/debian-security", "trixie")
    stanzas = [dict(line.split(": ", 1) for line in st.splitlines()) for st in text.strip().split("\n\n")]
    assert [(st["URIs"], st["Suites"]) for st in stanzas] == [
        ("http://m/debian", "trixie trixie-updates"), ("http://s/debian-security", "trixie-security")]
    assert all(st["Components"] == "main contrib non-free non-free-firmware" and st["Types"] == "deb"
               for st in stanzas)


@pytest.fixture
def fake_builds(monkeypatch):
    """Replace the real (debootstrap) build with a fast fake; record the images it built."""
    built: list[tuple[Path, str]] = []

    def fake_build(image: Path, mirror: str, security_mirror: str, suite: str = IMAGE.SUITE) -> None:
        time.sleep(0.2)  # long enough for concurrent callers to pile up on the lock
        IMAGE.image_key(image).write_text("key")
        image.write_text(mirror)
        built.append((image, mirror))

    monkeypatch.setattr(IMAGE, "_build_image", fake_build)
    return built


def test_golden_image_is_reused_and_rebuilt_when_recipe_changes(tmp_path, fake_builds, monkeypatch):
    first = IMAGE.golden_image(tmp_path, mirror="http://a.example/debian")
    assert first.parent == tmp_path and first.name.startswith("golden-")
    assert first.name.endswith(".tar.zst")
    assert IMAGE.golden_image(tmp_path, mirror="http://a.example/debian") == first
    assert len(fake_builds) == 1  # reused

    other = IMAGE.golden_image(tmp_path, mirror="http://b.example/debian")
    assert other != first and len(fake_builds) == 2  # other mirror -> other image

    monkeypatch.setattr(IMAGE, "RECIPE_VERSION", IMAGE.RECIPE_VERSION + 1)
    bumped = IMAGE.golden_image(tmp_path, mirror="http://a.example/debian")
    assert bumped not in (first, other) and len(fake_builds) == 3  # recipe changed -> rebuilt


def test_golden_image_default_cache_and_mirror_from_env(tmp_path, fake_builds, monkeypatch):
    monkeypatch.setenv("DLRIG_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("DLRIG_DEBIAN_MIRROR", "http://mirror.example/debian")
    image = IMAGE.golden_image()
    assert image.parent == tmp_path / "c"
    assert fake_builds == [(image, "http://mirror.example/debian")]


def test_concurrent_callers_build_once(tmp_path, fake_builds):
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(IMAGE.golden_image(tmp_path)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake_builds) == 1
    assert len(set(results)) == 1 and len(results) == 4


def test_prune_cache_keeps_current_image(tmp_path, fake_builds):
    old = IMAGE.golden_image(tmp_path, mirror="http://old.example/debian")
    (IMAGE._lower_dir(old) / "etc").mkdir(parents=True)
    new = IMAGE.golden_image(tmp_path, mirror="http://new.example/debian")
    removed = IMAGE.prune_cache(tmp_path, keep=[new])
    assert set(removed) == {old, IMAGE.image_key(old), IMAGE._lower_dir(old)}
    assert new.exists() and IMAGE.image_key(new).exists()


def test_missing_tool_error_names_the_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(SYSTEM, "_CLEAN_PATH", "/nonexistent")
    with pytest.raises(SYSTEM.HostError, match="debootstrap not found: apt-get install debootstrap"):
        SYSTEM._require_tools("debootstrap")


# ------------------------------------------------------------------ inventory, addresses

def _fake_host(name: str, address: str, tmp_path: Path) -> NSHOST.TestHost:
    return NSHOST.TestHost(name=name, address=address, key_path=tmp_path / "k", root=tmp_path / name)


def test_write_inventory_is_plain_python_with_merged_data(tmp_path):
    hosts = [_fake_host("h1", "127.0.9.1", tmp_path), _fake_host("h2", "127.0.9.2", tmp_path)]
    path = POOL.write_inventory(hosts, tmp_path / "inv" / "inventory.py",
                             data={"jupyter_port": 8888},
                             host_data={"h2": {"jupyter_port": 9999, "gpu": None}})
    ns: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), ns)
    assert [name for name, _ in ns["hosts"]] == ["@dlrig-ssh/h1", "@dlrig-ssh/h2"]  # pyinfra names them h1, h2
    h1, h2 = (d for _, d in ns["hosts"])
    assert h1 == {
        "ssh_hostname": "127.0.9.1", "ssh_user": "dlrig", "ssh_key": str(tmp_path / "k"),
        "ssh_port": 22, "ssh_known_hosts_file": "/dev/null",
        "ssh_strict_host_key_checking": "no", "_sudo": True, "jupyter_port": 8888,
    }
    assert h2["jupyter_port"] == 9999 and h2["gpu"] is None and h2["ssh_hostname"] == "127.0.9.2"


@pytest.mark.hosts
def test_address_reservation_is_exclusive_and_released(tmp_path):
    address, lock = NSHOST._reserve_address(NSHOST.SSH_PORT)
    try:
        assert address.startswith("127.0.") and address not in ("127.0.0.1",)
        assert all(1 <= int(x) <= 254 for x in address.split(".")[2:])
        assert not SYSTEM._FileLock(NSHOST._addr_lock_path(address)).acquire(blocking=False)
    finally:
        lock.release(unlink=True)
    assert not NSHOST._addr_lock_path(address).exists()
    again = SYSTEM._FileLock(NSHOST._addr_lock_path(address))
    assert again.acquire(blocking=False)
    again.release(unlink=True)


def test_bad_names_are_refused(tmp_path):
    pool = POOL.HostPool.__new__(POOL.HostPool)  # no image needed to validate names
    pool.hosts, pool.workdir = [], tmp_path
    with pytest.raises(ValueError, match="bad host name"):
        pool.start_many(1, ["Bad_Name"])
    with pytest.raises(ValueError, match="unique"):
        pool.start_many(2, ["a", "a"])


# ------------------------------------------------------------------ real hosts over SSH

@pytest.mark.hosts
def test_golden_image_is_cached(golden_image):
    mtime = golden_image.stat().st_mtime
    assert IMAGE.golden_image() == golden_image
    assert golden_image.stat().st_mtime == mtime
    key = IMAGE.image_key(golden_image)
    assert key.stat().st_mode & 0o777 == 0o600


@pytest.mark.hosts
def test_two_hosts_answer_ssh_as_themselves(make_hosts):
    hosts = make_hosts(2)
    assert len({h.address for h in hosts}) == 2
    for h in hosts:
        assert h.port == 22 and h.user == "dlrig"
        assert h.ssh("hostname").stdout.strip() == h.name
        # SSH_CONNECTION = client_ip client_port server_ip server_port
        server_ip, server_port = h.ssh("echo $SSH_CONNECTION").stdout.split()[2:]
        assert (server_ip, int(server_port)) == (h.address, 22)
        assert h.ssh("id -u; id -un").stdout.split() == ["1000", "dlrig"]
        assert h.ssh("getent passwd dlrig").stdout.strip().endswith(":/bin/bash")
        h.ssh("sudo -n true")
        assert h.ssh("sudo -n id -u").stdout.strip() == "0"
        assert h.ssh("python3 --version").stdout.startswith("Python 3.11")
        assert "bookworm" in h.ssh("cat /etc/os-release").stdout
        assert h.ssh("cat /proc/1/comm").stdout.strip() == "sshd"  # own PID namespace
        # sudo resolves the host's own name (no "unable to resolve host" noise)
        assert h.ssh("sudo -n true").stderr == ""


@pytest.mark.hosts
def test_ssh_sessions_start_clean_and_get_a_pty(make_hosts):
    (h,) = make_hosts(1)
    env = h.ssh("env").stdout
    assert "PIP_" not in env and "DEBIAN_FRONTEND" not in env
    argv = h.ssh_argv("tty")
    argv.insert(1, "-tt")
    res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith("/dev/pts/")


@pytest.mark.hosts
def test_image_recipe_details(make_hosts):
    (h,) = make_hosts(1)
    sources = h.ssh("cat /etc/apt/sources.list").stdout
    assert sources.count("main contrib non-free non-free-firmware") == 3
    assert "bookworm-security" in sources and "bookworm-updates" in sources
    assert h.ssh("/usr/sbin/policy-rc.d", check=False).returncode == 101
    assert h.ssh("sudo -n visudo -c").returncode == 0
    assert h.ssh("stat -c %a ~/.ssh/authorized_keys").stdout.strip() == "600"
    assert h.ssh("ls /var/cache/apt/archives/*.deb 2>/dev/null | wc -l").stdout.strip() == "0"


@pytest.mark.hosts
def test_machine_ca_is_not_preinstalled(make_hosts):
    """This machine's extra CAs must come from a role, so the image must not carry them."""
    (h,) = make_hosts(1)
    assert h.ssh("ls /usr/local/share/ca-certificates | wc -l").stdout.strip() == "0"
    bundle = (h.root / "etc/ssl/certs/ca-certificates.crt").read_text()
    for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        body = "".join(crt.read_text().split("-----")[2].split())
        assert body[:200] not in "".join(bundle.split()), f"{crt} leaked into the image"


@pytest.mark.hosts
def test_root_is_the_hosts_filesystem(make_hosts, golden_image):
    (h,) = make_hosts(1)
    h.ssh("echo written-inside > /tmp/probe")
    assert (h.root / "tmp/probe").read_text() == "written-inside\n"
    (h.root / "tmp/from-outside").write_text("hi")
    assert h.ssh("cat /tmp/from-outside").stdout == "hi"
    if h._overlay:  # the shared extracted image is never written to, and counts as in use
        assert not (IMAGE._lower_dir(golden_image) / "tmp/probe").exists()
        assert str(IMAGE._lower_dir(golden_image)) in IMAGE._overlay_lowers()
        assert IMAGE._remove_cached([IMAGE._lower_dir(golden_image)]) == []  # kept: in use
        assert IMAGE._lower_dir(golden_image).is_dir()


@pytest.mark.hosts
def test_testinfra_talks_to_host(make_hosts):
    (h,) = make_hosts(1)
    host = h.testinfra_host()
    assert host.file("/etc/os-release").contains("bookworm")
    assert host.user("dlrig").uid == 1000
    assert host.check_output("whoami") == "root"  # sudo=True
    assert host.check_output("hostname") == h.name


@pytest.mark.hosts
def test_pyinfra_reaches_hosts_through_written_inventory(make_hosts, tmp_path):
    hosts = make_hosts(2)
    inv = POOL.write_inventory(hosts, tmp_path / "inventory.py")
    res = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", str(inv), "exec", "--", "hostname"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for h in hosts:
        assert f"[{h.name}] {h.name}" in res.stdout + res.stderr


@pytest.mark.hosts
@pytest.mark.slow
def test_apt_works_inside_a_host(make_hosts):
    (h,) = make_hosts(1)
    h.ssh("sudo -n apt-get update -q", timeout=300)
    h.ssh("sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello", timeout=300)
    assert "Hello, world!" in h.ssh("hello").stdout


# ------------------------------------------------------------------ teardown and stale cleanup

def _mnt_ns_holders(ns: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "ns/mnt") == ns:
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def _listening(address: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.hosts
def test_stop_leaves_nothing_behind(golden_image, tmp_path):
    workdir = tmp_path / "w"
    with POOL.test_hosts(2, workdir, golden_image, names=["alpha", "beta"]) as hosts:
        seen = []
        for h in hosts:
            assert h.running and _listening(h.address)
            ns = os.readlink(f"/proc/{h.sshd_pid}/ns/mnt")
            assert ns != os.readlink("/proc/self/ns/mnt")
            seen.append((h, ns))
    for h, ns in seen:
        assert not Path(f"/proc/{h.pid}").exists(), "unshare still there"
        assert not Path(f"/proc/{h.sshd_pid}").exists(), "sshd still there (or a zombie)"
        assert _mnt_ns_holders(ns) == [], "a process still holds the host's mount namespace"
        assert not _listening(h.address)
        assert NSHOST._port_free(h.address, 22)
        assert not NSHOST._state_path(h.address).exists()
        assert not NSHOST._addr_lock_path(h.address).exists()
        assert not h.hostdir.exists()
        h.stop()  # idempotent
    assert SYSTEM.mounts_under(workdir) == []
    assert str(workdir) not in Path("/proc/self/mountinfo").read_text()


@pytest.mark.hosts
def test_start_failure_reports_sshd_log_and_cleans_up(golden_image, tmp_path):
    workdir = tmp_path / "w"
    with POOL.HostPool(workdir, golden_image) as pool:
        with pytest.raises(SYSTEM.HostError, match=r"(?s)sshd exited.*sshd log"):
            # a broken sshd config makes sshd exit at once
            orig = POOL.HostPool._personalize

            def personalize(self, host):
                orig(self, host)
                (host.root / "etc/ssh/sshd_config.d/broken.conf").write_text("NoSuchOption yes\n")

            pool._personalize = personalize.__get__(pool)
            pool.start_many(1, ["broken"])
    assert SYSTEM.mounts_under(workdir) == []
    assert not (workdir / "broken").exists()


@pytest.mark.hosts
def test_cleanup_stale_removes_hosts_of_a_crashed_run(golden_image, tmp_path):
    workdir = tmp_path / "w"
    script = textwrap.dedent(f"""
        import json, os, signal, sys
        from pathlib import Path
        from dlrig.testing import pool as POOL
        pool = POOL.HostPool(Path({str(workdir)!r}), Path({str(golden_image)!r}))
        (h,) = pool.start_many(1, ["crashy"])
        print(json.dumps({{"address": h.address, "sshd": h.sshd_pid, "overlay": h._overlay}}),
              flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # crash: no teardown
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == -9, res.stderr
    info = json.loads(res.stdout.splitlines()[-1])
    if info["overlay"]:
        assert SYSTEM.mounts_under(workdir), "the crashed run should have left its overlay mounted"
    POOL.cleanup_stale()  # (another concurrent pytest may have done it already: same result)
    assert SYSTEM.mounts_under(workdir) == []
    assert not (workdir / "crashy").exists()
    assert not NSHOST._state_path(info["address"]).exists()
    assert not NSHOST._addr_lock_path(info["address"]).exists()
    assert SYSTEM._proc_starttime(info["sshd"]) is None and not _listening(info["address"])


@pytest.mark.hosts
def test_a_host_restarts_at_the_same_address_with_a_bound_directory_that_outlives_it(golden_image, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    with POOL.HostPool(tmp_path / "a", golden_image, binds={disk: "/srv/data"}) as pool:
        first = pool.start("one")
        first.ssh("sudo -n sh -c 'echo kept > /srv/data/file; echo gone > /etc/first-only'")
        address = first.address
    assert (disk / "file").read_text() == "kept\n"  # the host is gone, its data disk is not
    assert not (tmp_path / "a" / "one").exists()
    with POOL.HostPool(tmp_path / "b", golden_image, binds={disk: "/srv/data"}) as pool:
        second = pool.start("one", address=address)
        assert second.address == address
        assert second.ssh("cat /srv/data/file").stdout == "kept\n"
        assert second.ssh("test -e /etc/first-only && echo yes || echo no").stdout.strip() == "no"
        with pytest.raises(SYSTEM.HostError, match="taken"):
            pool.start("two", address=address)
    assert (disk / "file").exists()
