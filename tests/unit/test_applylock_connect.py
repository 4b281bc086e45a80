"""The apply lock connects to its hosts side by side (dlrig.engine.applylock._connect_all), then
takes the locks in name order; a host it cannot reach is reported unreached, the others go on.

Real TCP on 127.0.0.1 (no SSH server: each listener accepts, holds the connection a moment and
closes it without a banner, so paramiko fails like against a dead sshd). What is measured is how many
of those connections were open at once: connecting one host after another never has two."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from dlrig.engine import applylock


@dataclass
class Host:
    name: str
    data: dict = field(default_factory=dict)


class SilentServers:
    """Listeners that accept, hold each connection ``hold`` seconds, then close it; they count the
    most connections open at the same time across all of them."""

    def __init__(self, n: int, hold: float = 0.8) -> None:
        self.hold, self.open, self.most, self.lock = hold, 0, 0, threading.Lock()
        self.socks = []
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(4)
            self.socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    @property
    def ports(self) -> list[int]:
        return [s.getsockname()[1] for s in self.socks]

    def _serve(self, s) -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            with self.lock:
                self.open += 1
                self.most = max(self.most, self.open)
            time.sleep(self.hold)
            with self.lock:
                self.open -= 1
            conn.close()

    def close(self) -> None:
        for s in self.socks:
            s.close()


def _host(name: str, port: int) -> Host:
    return Host(f"@dlrig-ssh/{name}", {"ssh_hostname": "127.0.0.1", "ssh_port": port, "ssh_user": "nobody",
                                       "ssh_password": "x", "ssh_allow_agent": False,
                                       "ssh_strict_host_key_checking": "no"})


def test_hosts_are_connected_side_by_side_and_each_unreached_is_reported():
    servers = SilentServers(3)
    try:
        hosts = [_host(f"rig{i}", port) for i, port in enumerate(servers.ports)]
        locks = applylock.acquire(hosts, lambda h: 5)
    finally:
        servers.close()
    assert sorted(locks.unreached) == sorted(h.name for h in hosts)
    assert not locks.held and not locks.refused
    assert servers.most >= 2, "the hosts were connected one after another"


def test_a_refused_host_does_not_stop_the_others():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    servers = SilentServers(1, hold=0.1)
    try:
        hosts = [_host("b-refused", port), _host("a-silent", servers.ports[0])]
        locks = applylock.acquire(hosts, lambda h: 5)
    finally:
        servers.close()
    assert set(locks.unreached) == {"@dlrig-ssh/b-refused", "@dlrig-ssh/a-silent"}
    assert "refused" in locks.unreached["@dlrig-ssh/b-refused"].lower() or "Errno" in locks.unreached["@dlrig-ssh/b-refused"]
