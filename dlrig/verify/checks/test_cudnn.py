"""Checks of role ``cudnn``: cuDNN packages installed and libcudnn present."""

from __future__ import annotations

import pytest

from dlrig.verify.hints import HINT_MARK, HINT_SEP

APPLY = "run `dlrig apply INVENTORY --roles cudnn`"


def _msg(reason: str, hint: str) -> str:
    return f"{reason}{HINT_SEP}{HINT_MARK}{hint}"


@pytest.fixture(autouse=True)
def _wanted(settings):
    if settings.get("cpu_only") or not settings.get("cudnn_install", True):
        pytest.skip("cuDNN not wanted on this host (cpu_only or cudnn_install=False)")


def test_cudnn_package_installed(host):
    res = host.run("dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\\n' "
                   "'libcudnn*' 'cudnn*' nvidia-cudnn 2>/dev/null")
    ok = [line for line in res.stdout.splitlines() if line.startswith("ii")]
    assert ok, _msg("no cuDNN package is installed (libcudnn9-cuda-*, libcudnn8, nvidia-cudnn)", APPLY)


def test_libcudnn_present(host):
    res = host.run("ldconfig -p 2>/dev/null | grep -m1 'libcudnn.so' || "
                   "find /usr/lib /usr/local -name 'libcudnn.so*' -print -quit 2>/dev/null")
    assert res.stdout.strip(), _msg("libcudnn.so is nowhere in the linker path or /usr/lib, /usr/local", APPLY)
