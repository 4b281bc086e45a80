"""Checks of role ``cuda``: nvcc on a login shell's PATH, the wished release, CUDA_HOME set."""

from __future__ import annotations

import re

import pytest

from dlrig.verify.hints import HINT_MARK, HINT_SEP

APPLY = "run `dlrig apply INVENTORY --roles cuda`"
PROFILE = "/etc/profile.d/dlrig-cuda.sh"


def _msg(reason: str, hint: str) -> str:
    return f"{reason}{HINT_SEP}{HINT_MARK}{hint}"


@pytest.fixture(autouse=True)
def _gpu_host(settings):
    if settings.get("cpu_only"):
        pytest.skip("cpu_only: no CUDA toolkit on this host")


def _login(host, cmd: str):
    return host.run(f"bash -lc {cmd!r}")


def test_nvcc_on_login_path(host):
    res = _login(host, "command -v nvcc && nvcc --version")
    assert res.rc == 0 and "release" in res.stdout, _msg(
        f"nvcc is not on a login shell's PATH ({(res.stderr or res.stdout).strip()[-200:] or 'not found'})", APPLY)


def test_nvcc_is_the_wished_release(host, settings):
    want = settings.get("cuda_version")
    if not want:
        pytest.skip("cuda_version not set: the resolver picked the release")
    out = _login(host, "nvcc --version").stdout
    m = re.search(r"release (\d+\.\d+)", out)
    assert m and m.group(1) == str(want), _msg(
        f"nvcc is CUDA {m.group(1) if m else '?'}, cuda_version is {want}", APPLY)


def test_cuda_home_points_at_the_toolkit(host, settings):
    if not settings.get("cuda_profile", True):
        pytest.skip("cuda_profile is off")
    assert host.file(PROFILE).exists, _msg(f"{PROFILE} is missing", APPLY)
    home = _login(host, 'echo "$CUDA_HOME"').stdout.strip()
    assert home and host.file(f"{home}/bin/nvcc").exists, _msg(
        f"CUDA_HOME={home or '(unset)'} has no bin/nvcc", APPLY)
