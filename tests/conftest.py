"""Shared pytest setup. Fixtures live in helper modules and are imported here."""

from tests import hostfixtures
from tests.hostfixtures import *  # noqa: F401,F403


def pytest_configure(config):
    hostfixtures.register_markers(config)


def pytest_collection_modifyitems(config, items):
    hostfixtures.skip_unrunnable_host_tests(items)
