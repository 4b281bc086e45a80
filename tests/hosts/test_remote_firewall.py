"""Role firewall on a Debian 12 test host that owns its network: ufw really filters.

The host runs in its own network namespace (``ip netns``, named ``dlrigfw-<random>``), reached
from this machine over a veth pair on a 169.254.X.Y/30 link, so ``ufw enable`` loads real
netfilter rules there and nowhere else. Never apply the firewall role to a test host that shares
this machine's network (the plain ``make_hosts`` ones): its rules would land on this machine.

The namespace has no route out, so ufw is installed into the host's root from this machine
(chroot, this machine's network) before the host starts; the role's install step is then a no-op
here and is covered by the plan tests.
"""

from __future__ import annotations

import json
import re
import random
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from dlrig.testing import nshost as NSHOST
from dlrig.testing import pool as POOL
from dlrig.testing import system as SYSTEM
from tests.hosts.test_remote_ssh import run_checks

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

NS_PREFIX = "dlrigfw-"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


@dataclass(eq=False)
class NetnsHost(NSHOST.TestHost):
    netns: str = ""

    def _launch(self) -> None:  # TestHost._launch, run inside the network namespace
        self.ssh_config.write_text(
            f"Host *\n  User {self.user}\n  IdentityFile {self.key_path}\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
        with open(self.log_path, "wb") as logf:
            self._proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns,
                 "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child=SIGKILL",
                 "--propagation", "private", "sh", "-c", NSHOST._NS_SCRIPT, "sh",
                 str(self.root), self.name, self.address, str(self.port)],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                env=SYSTEM._clean_env(), start_new_session=True, preexec_fn=NSHOST._pdeathsig)
        self.pid = self._proc.pid
        self._starttime = SYSTEM._proc_starttime(self.pid)
        self._write_state()


def _stale_namespaces() -> None:
    """Delete dlrigfw-* namespaces nobody runs in (left by a crashed run of this test)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        ns = line.split()[0] if line.strip() else ""
        if ns.startswith(NS_PREFIX) and not _ip("netns", "pids", ns, check=False).stdout.strip():
            _ip("netns", "del", ns, check=False)


def _preinstall_ufw(root: Path, packages: tuple[str, ...] = ("ufw",)) -> None:
    script = ('set -e; R=$1; mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"; '
              'chroot "$R" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive '
              f'apt-get install -y -qq --no-install-recommends {" ".join(packages)} >/dev/null"')
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                          str(root)], capture_output=True, text=True, env=SYSTEM._clean_env(), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture
def netns_host(golden_image, tmp_path, request):
    """A test host in its own network namespace, with ufw (or the packages of an indirect param)."""
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        pytest.skip("ip netns does not work here")
    _stale_namespaces()
    tag = secrets.token_hex(3)
    ns, out_if, in_if = f"{NS_PREFIX}{tag}", f"dfw{tag}o", f"dfw{tag}i"
    base = 4 * random.SystemRandom().randint(0, 63)
    third = random.SystemRandom().randint(1, 254)
    outside, inside = f"169.254.{third}.{base + 1}", f"169.254.{third}.{base + 2}"
    pool = POOL.HostPool(tmp_path / "hosts", golden_image)
    host = None
    lock = SYSTEM._FileLock(NSHOST._addr_lock_path(inside))
    assert lock.acquire(blocking=False), f"{inside} in use"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", out_if, "type", "veth", "peer", "name", in_if)
        _ip("link", "set", in_if, "netns", ns)
        _ip("addr", "add", f"{outside}/30", "dev", out_if)
        _ip("link", "set", out_if, "up")
        for args in (("addr", "add", f"{inside}/30", "dev", in_if), ("link", "set", in_if, "up"),
                     ("link", "set", "lo", "up")):
            _ip("netns", "exec", ns, "ip", *args)
        hostdir = pool.workdir / "fw"
        hostdir.mkdir(parents=True)
        host = NetnsHost(name="fw", address=inside, key_path=pool.key_path, root=hostdir / "root",
                         hostdir=hostdir, _addr_lock=lock, netns=ns)
        host._write_state()
        host.root, host._overlay = pool._prepare_root(hostdir)
        pool._personalize(host)
        _preinstall_ufw(host.root, getattr(request, "param", ("ufw",)))
        host._launch()
        host._wait_ready(30)
        yield host
    finally:
        if host is not None:
            host.stop()
        else:
            lock.release(unlink=True)
        _ip("netns", "del", ns, check=False)
        _ip("link", "del", out_if, check=False)


def _reachable(address: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _run(c: paramiko.SSHClient, cmd: str) -> str:
    _, out, err = c.exec_command(cmd, timeout=30)
    return out.read().decode() + err.read().decode()


def test_ufw_really_filters_and_ssh_survives(netns_host, tmp_path):
    h = netns_host
    live = h.session()
    for port in (6006, 8080, 8888):  # listeners on every address of the host
        _run(live, f"setsid nohup python3 -m http.server {port} >/dev/null 2>&1 < /dev/null &")
    deadline = time.monotonic() + 10
    while not all(_reachable(h.address, p) for p in (6006, 8080, 8888)):
        assert time.monotonic() < deadline, "listeners did not start"
        time.sleep(0.2)

    inv = POOL.write_inventory([h], tmp_path / "inventory.py",
                            data={"firewall_allow": ["6006/tcp"], "jupyter_ip": "0.0.0.0"})
    res = subprocess.run([sys.executable, "-m", "dlrig", "apply", str(inv), "--roles", "firewall", "--yes"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    log = Path(re.search(r"^log: (.+)$", res.stderr, re.M).group(1)).read_text()  # pyinfra's own output
    assert log.index("ufw limit 22/tcp") < log.index("enable ufw"), "SSH rule must come before enable"

    assert "still" in _run(live, "echo still"), "the SSH session that ran the apply died"
    status = _run(live, "sudo -n ufw status verbose")
    assert "Status: active" in status and "deny (incoming)" in status, status
    assert "22/tcp" in status and "LIMIT IN" in status, status

    assert not _reachable(h.address, 8080), "8080 is not allowed but still reachable"
    assert _reachable(h.address, 6006), "firewall_allow 6006/tcp not reachable"
    assert _reachable(h.address, 8888), "jupyter_ip 0.0.0.0: Jupyter's port must be allowed"

    plan = subprocess.run([sys.executable, "-m", "dlrig", "plan", str(inv), "--roles", "firewall", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["changes"] == []
    checks = run_checks(h, tmp_path, ["firewall"], firewall_allow=["6006/tcp"], jupyter_ip="0.0.0.0")
    assert checks.returncode == 0, checks.stdout[-3000:]

    # ufw limit: the 6th new connection within 30 s from one address is dropped
    # (the plan and the checks above were two); the open session is unaffected.
    results = [_reachable(h.address, 22, timeout=1.5) for _ in range(8)]
    assert False in results, f"SSH is not rate-limited: {results}"
    assert "still" in _run(live, "echo still")
    live.close()
