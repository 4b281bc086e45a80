"""Shared pytest setup. Fixtures live in helper modules and are imported here."""

import os

import pytest

from tests import hostfixtures
from tests.hostfixtures import *  # noqa: F401,F403


def pytest_configure(config):
    hostfixtures.register_markers(config)


def pytest_collection_modifyitems(config, items):
    hostfixtures.skip_unrunnable_host_tests(items)



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """DLRIG_REQUIRE_TORCH=1 (.ci/run): a test skipped because torch does not import is a failure."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("DLRIG_REQUIRE_TORCH") == "1" and report.skipped and "could not import 'torch'" in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = ("torch does not import but DLRIG_REQUIRE_TORCH=1: install the CPU torch wheel "
                           f"(README, Tests): {report.longrepr}")
