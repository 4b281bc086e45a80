"""Throw-away Debian 12 (bookworm) test hosts on this machine, reached over real SSH.

The parts: :mod:`.image` (the golden image, built once and cached), :mod:`.nshost` (one host:
its own root and its own sshd in private namespaces on 127.0.X.Y, with SSH helpers),
:mod:`.pool` (starting and stopping many; inventories), :mod:`.system` (local plumbing).

Typical use::

    from dlrig.testing import test_hosts, write_inventory

    with test_hosts(2, Path("/tmp/work")) as hosts:
        hosts[0].ssh("hostname")
        write_inventory(hosts, Path("/tmp/work/inventory.py"))

Needs root, debootstrap, unshare (util-linux), ssh/ssh-keygen (openssh-client), tar and zstd.
"""

from dlrig.testing.image import USER, golden_image, image_key
from dlrig.testing.nshost import TestHost
from dlrig.testing.pool import HostPool, cleanup_stale, test_hosts, write_inventory
from dlrig.testing.system import HostError, SSHCommandError, missing_requirements

__all__ = [
    "USER", "golden_image", "image_key", "TestHost", "HostPool", "cleanup_stale", "test_hosts",
    "write_inventory", "HostError", "SSHCommandError", "missing_requirements",
]
