"""TCP_NODELAY for SSH connections: one small function, importable without pyinfra or paramiko.

An SSH command is a few small packets each way (channel open, exec request, data, exit status,
EOF, close). With Nagle's algorithm on, the client holds back a small packet until the previous
one is acknowledged, and the server delays that ACK (Linux: up to 40 ms): ~45 ms of a ~50 ms
command on a test host. OpenSSH sets TCP_NODELAY on its sessions; paramiko does not.
See docs/tcp-nodelay.md.
"""

from __future__ import annotations

import socket
from typing import Any


def set_nodelay(conn: Any) -> bool:
    """Set TCP_NODELAY on a socket, or on the socket of a paramiko Transport or SSHClient.

    True when set; False for what has no TCP socket (a ProxyCommand pipe, a closed client).
    """
    if hasattr(conn, "get_transport"):  # a paramiko SSHClient
        conn = conn.get_transport()
    sock = getattr(conn, "sock", conn)  # a paramiko Transport keeps its socket in .sock
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


def nodelay_is_set(conn: Any) -> bool:
    """Whether TCP_NODELAY is on for ``conn``'s socket (read back from the kernel: getsockopt)."""
    if hasattr(conn, "get_transport"):
        conn = conn.get_transport()
    sock = getattr(conn, "sock", conn)
    return isinstance(sock, socket.socket) and bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
