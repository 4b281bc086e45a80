"""The modelled home link of benchmarks/reprovision.py (tests/fixtures/homelink.py): the pace it
keeps, and its forward proxy (plain GET and a CONNECT tunnel) on real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest

from tests.fixtures import homelink, pyindex


def test_a_link_paces_bytes_to_its_bandwidth_and_counts_them():
    link = homelink.Link(16)  # 2 MB/s
    out = bytearray()
    start = time.monotonic()
    link.send(out.extend, b"x" * 1_000_000)
    took = time.monotonic() - start
    assert len(out) == 1_000_000 and link.bytes == 1_000_000
    assert 0.45 <= took < 2.0, took
    free = homelink.Link(None)
    start = time.monotonic()
    free.send(out.extend, b"x" * 1_000_000)
    assert time.monotonic() - start < 0.3 and free.bytes == 1_000_000


def test_a_link_refuses_a_bandwidth_that_is_not_one():
    with pytest.raises(ValueError, match="bandwidth"):
        homelink.Link(0)


def test_the_local_index_paces_its_bodies_through_the_link(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"y" * 500_000)
    link, counter = homelink.Link(8), {}  # 1 MB/s
    with pyindex.serve(tmp_path, counter=counter, link=link) as url:
        start = time.monotonic()
        body = urllib.request.urlopen(f"{url}/f.bin", timeout=10).read()
        took = time.monotonic() - start
    assert body == b"y" * 500_000 and link.bytes == 500_000 and counter["bytes"] == 500_000
    assert took >= 0.4, took


def test_the_proxy_forwards_get_and_tunnels_connect(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"z" * 1000)
    link = homelink.Link(None)
    echo = socket.create_server(("127.0.0.1", 0))

    def serve_echo():
        conn, _ = echo.accept()
        with conn:
            conn.sendall(conn.recv(100).upper())

    threading.Thread(target=serve_echo, daemon=True).start()
    with pyindex.serve(tmp_path) as url, homelink.proxy(link) as via:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": via}))
        assert opener.open(f"{url}/f.bin", timeout=10).read() == b"z" * 1000
        assert link.bytes == 0  # 127.0.0.0/8 passes unpaced: the local index paces its own bytes
        port = echo.getsockname()[1]
        host, pport = via.removeprefix("http://").split(":")
        with socket.create_connection((host, int(pport)), timeout=10) as s:
            s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1024)
            assert head.startswith(b"HTTP/1.1 200")
            s.sendall(b"hello")
            assert s.recv(100) == b"HELLO"
    echo.close()


def test_the_proxy_streams_a_slow_body_instead_of_holding_it(tmp_path):
    """A paced 1.5 MB body takes 1.5 s; the client's read timeout is 0.5 s: it only holds when the
    proxy passes each block on as it arrives (pip times out on a silent proxy)."""
    (tmp_path / "big.bin").write_bytes(b"b" * 1_500_000)
    link = homelink.Link(8)  # 1 MB/s
    with pyindex.serve(tmp_path, link=link) as url, homelink.proxy(homelink.Link(None)) as via:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": via}))
        start = time.monotonic()
        assert opener.open(f"{url}/big.bin", timeout=0.5).read() == b"b" * 1_500_000
        assert time.monotonic() - start >= 1.2
