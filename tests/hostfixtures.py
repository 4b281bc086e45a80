"""Pytest fixtures for dlrig test hosts (Debian 12, or 13 where asked, over real SSH, see dlrig.testing.nshost).

Imported into tests/conftest.py. Tests that start hosts are marked ``hosts`` and skip with a
reason when this machine cannot run them (not root, debootstrap missing, ...).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dlrig.testing import image as IMAGE
from dlrig.testing import nshost as NSHOST
from dlrig.testing import pool as POOL
from dlrig.testing import system as SYSTEM

__all__ = ["golden_image", "golden_image_trixie", "make_hosts"]

MARKERS = {
    "hosts": "starts Debian test hosts (needs root, debootstrap, unshare, ssh, zstd)",
    "slow": "slow test (network downloads, big installs)",
    "vm": "boots qemu VMs (the VM tier, tests/vm: needs root, qemu-system-x86, ovmf, debootstrap)",
    "vm_full": "VM tests around the whole workstation on one shared VM (long under TCG; not in CI yet)",
}


def register_markers(config: pytest.Config) -> None:
    """Register the ``hosts``, ``slow`` and ``vm`` markers (call from pytest_configure)."""
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def skip_unrunnable_host_tests(items: list[pytest.Item]) -> None:
    """Skip ``hosts``-marked tests, with the reason, where test hosts cannot run."""
    reason = SYSTEM.missing_requirements()
    if reason is None:
        return
    if os.environ.get("CI") and any(item.get_closest_marker("hosts") for item in items):
        # CI installs everything (.ci/run): a missing tool there is a broken CI, not a skip.
        raise pytest.UsageError(f"CI cannot run the host tests: {reason}")
    marker = pytest.mark.skip(reason=f"test hosts unavailable: {reason}")
    for item in items:
        if item.get_closest_marker("hosts"):
            item.add_marker(marker)


def image_of(suite: str = IMAGE.SUITE) -> Path:
    """The cached golden image of ``suite`` (built once per recipe; DLRIG_CACHE, DLRIG_DEBIAN_MIRROR)."""
    reason = SYSTEM.missing_requirements()
    if reason:
        pytest.skip(f"test hosts unavailable: {reason}")
    return IMAGE.golden_image(suite=suite)


@pytest.fixture(scope="session")
def golden_image() -> Path:
    """The Debian 12 (bookworm) golden image."""
    return image_of()


@pytest.fixture(scope="session")
def golden_image_trixie() -> Path:
    """The Debian 13 (trixie) golden image."""
    return image_of("trixie")


@pytest.fixture
def make_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., list[NSHOST.TestHost]]]:
    """Factory: ``make_hosts(n, names=None, suite="bookworm", **pool_kw)`` -> started hosts, stopped at test end."""
    pools: list[POOL.HostPool] = []

    def make(n: int = 1, names: list[str] | None = None, suite: str = IMAGE.SUITE,
             **pool_kw) -> list[NSHOST.TestHost]:
        pool = POOL.HostPool(tmp_path_factory.mktemp("hosts"), image_of(suite), **pool_kw)
        pools.append(pool)
        return pool.start_many(n, names)

    yield make
    errors = []
    for pool in pools:
        try:
            pool.stop_all()
        except SYSTEM.HostError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("test host teardown failed: " + "; ".join(errors))
