"""Plans of roles conda, pytorch and jupyter on @fake hosts (FAKES: canned facts, see harness.py).

The torch build comes from the real resolver (dlrig.gpu.resolver) reading the canned lspci (an RTX
2070 Super) or cpu_only; what is proven here is which commands dlrig would run, not that they work
(tests/hosts/test_ml_hosts.py runs them on Debian 12 hosts).
"""

from __future__ import annotations

import json

import pytest

from dlrig.engine import pyenv
from tests.plans.harness import commands, fake_host, plan

ROLES = ["conda", "pytorch", "jupyter"]
HASH = "sha1:0123456789ab:" + "a" * 40  # a fake hash (any hex passes the format check)
PREFIX = "/home/alice/miniforge3"
ENV = f"{PREFIX}/envs/dl"
PY = f"{ENV}/bin/python"


def ops_of(os: str, facts=None, **data):
    data = {"ssh_user": "alice", "jupyter_password_hash": HASH, **data}
    return plan([fake_host("rig", os, facts=facts, **data)], ROLES)["rig"]


def names(ops, role):
    return [o["operation"] for o in ops if o["role"] == role]


@pytest.mark.parametrize("os", ["ubuntu-22.04", "ubuntu-24.04", "debian-12", "debian-13"])
def test_gpu_host_fresh_gets_a_cuda_torch_from_the_resolvers_index(os):
    ops = ops_of(os)
    text = commands(ops, "pytorch")
    assert f"install Miniforge into {PREFIX} (checksum-verified)" in names(ops, "conda")
    conda = commands(ops, "conda")
    assert "sha256sum" in conda and "bash \"$tmp/installer.sh\" -b -p" in conda
    assert "channels:\n  - conda-forge\nchannel_priority: strict" in conda
    assert f"{PREFIX}/bin/conda env create -p {PREFIX}/envs/dl -f {PREFIX}/dlrig/dl.environment.yml" in text
    torch_cmd = next(c for o in ops for c in o["commands"] if "-m pip install" in c and "torch==" in c)
    assert "--index-url https://download.pytorch.org/whl/cu1" in torch_cmd  # a CUDA variant, never cpu
    assert "whl/cpu" not in text and "torch.version.cuda" in torch_cmd
    assert "pip install -c \"$c\" fastai ipykernel" in text
    assert f"{PY} -m ipykernel install --user --name dl" in text


def test_gpu_host_with_a_cu128_mirror_index_and_a_wheelhouse():
    ops = ops_of("ubuntu-22.04", pip_index_url="https://mirror.example/whl/cu128",
                 pip_find_links=["http://10.0.0.2/wheels/"], torch_version="2.8.0", extra_packages=["timm"])
    torch_cmd = next(c for o in ops for c in o["commands"] if "torch==" in c)
    wanted = "--index-url https://mirror.example/whl/cu128 --find-links http://10.0.0.2/wheels/ torch==2.8.0 'torchvision==0.23.*'"
    # uv pip when the env has uv (use_uv, the default), pip otherwise: the same index, links and pins
    assert torch_cmd.startswith(f"if [ -x {ENV}/bin/uv ]; then SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "
                                f"{ENV}/bin/uv pip install --python {PY} --index-strategy unsafe-best-match {wanted}; "
                                f"else {PY} -m pip install {wanted}; fi && ")
    assert "torch.version.cuda" in torch_cmd
    text = commands(ops, "pytorch")
    assert f"{PY} -m pip install --find-links http://10.0.0.2/wheels/ uv" in text  # uv itself, by pip
    assert "unsafe-best-match -c \"$c\" --find-links http://10.0.0.2/wheels/ fastai ipykernel timm" in text
    assert "-m pip install -c \"$c\" --find-links http://10.0.0.2/wheels/ fastai ipykernel timm" in text


def test_use_uv_false_installs_with_pip_only():
    ops = ops_of("ubuntu-22.04", pip_index_url="https://mirror.example/whl/cu128", torch_version="2.8.0",
                 use_uv=False)
    text = commands(ops, "pytorch") + commands(ops, "jupyter")
    torch_cmd = next(c for o in ops for c in o["commands"] if "torch==" in c)
    assert torch_cmd.startswith(f"{PY} -m pip install --index-url https://mirror.example/whl/cu128 torch==2.8.0")
    assert not any("uv" in n for n in names(ops, "pytorch")) and "bin/uv" not in text


def test_cpu_only_host_gets_the_cpu_index_and_no_cuda_check():
    ops = ops_of("ubuntu-24.04", cpu_only=True)
    torch_cmd = next(c for o in ops for c in o["commands"] if "torch==" in c)
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_cmd
    assert "torch.version.cuda" not in torch_cmd


def _env_fact(torch: str, cuda: str | None, **more):
    dists = {"torch": torch, "torchvision": "0.28.0", "fastai": "2.8.12", "ipykernel": "7.4.0",
             "jupyterlab": "4.6.4", **more}
    return [json.dumps({"python": "3.11.9", "dists": dists, "torch_cuda": cuda})]


CONDA_OK = ["exists", "conda", "meta conda-24.11.3-py312_0.json",
            "marker url=x", "marker sha256=2e1ad2188fe69fcdd522c2b20c08c800a5c7411b775eca768318b1540ed32e53"]


def test_new_torch_version_updates_the_env_in_place():
    facts = {"dlrig-installer": CONDA_OK, "torch_cuda": _env_fact("2.13.0", "13.0"),
             "kernels/dl/kernel.json": ["file"]}
    ops = ops_of("debian-12", facts=facts, torch_version="2.14.1")
    assert not any("install Miniforge" in n for n in names(ops, "conda"))
    pytorch = names(ops, "pytorch")
    assert not any("create the dl environment" in n for n in pytorch)
    assert "torch + torchvision from https://download.pytorch.org/whl/cu126 " \
           "(torch 2.13.0 installed, torch_version is 2.14.1)" in pytorch[-2:] or any(
        "torch 2.13.0 installed, torch_version is 2.14.1" in n for n in pytorch)
    assert "torch==2.14.1 'torchvision==0.29.*'" in commands(ops, "pytorch")


def test_cpu_build_on_a_gpu_host_is_replaced():
    facts = {"dlrig-installer": CONDA_OK, "torch_cuda": _env_fact("2.14.1+cpu", None, torchvision="0.29.1")}
    ops = ops_of("debian-12", facts=facts)
    torch_cmd = next(c for o in ops for c in o["commands"] if "torch==" in c)
    assert "--force-reinstall" in torch_cmd and "torch.version.cuda" in torch_cmd


def test_other_installed_miniforge_is_left_alone():
    other = ["exists", "conda", "meta conda-23.1.0-py310_0.json", "marker url=old", "marker sha256=" + "c" * 64]
    ops = ops_of("debian-12", facts={"dlrig-installer": other})
    assert not any("install Miniforge" in n for n in names(ops, "conda"))


def test_python_version_mismatch_is_refused():
    from pyinfra.api import DeployError

    facts = {"dlrig-installer": CONDA_OK, "torch_cuda": _env_fact("2.14.1", "13.0")}
    with pytest.raises(DeployError, match="has Python 3.11.9, python_version is 3.12"):
        ops_of("debian-12", facts=facts, python_version="3.12")


def test_jupyter_started_and_restartable_only_where_systemd_runs():
    booted = ops_of("debian-12", facts={"/run/systemd/system": ["yes"]}, cpu_only=True)
    text = commands(booted, "jupyter")
    assert f"systemctl start {pyenv.JUPYTER_UNIT}" in text
    assert f"systemctl enable {pyenv.JUPYTER_UNIT}" in text
    chroot = ops_of("debian-12", cpu_only=True)
    assert "systemctl start" not in commands(chroot, "jupyter")
    assert f"systemctl enable {pyenv.JUPYTER_UNIT}" in commands(chroot, "jupyter")
    cfg = next(c for o in chroot for c in o["commands"] if c.startswith("UPLOAD /home/alice/.jupyter/"))
    assert f'hashed_password = "{HASH}"' in cfg and 'c.ServerApp.ip = "127.0.0.1"' in cfg


def test_without_a_hash_the_installed_password_is_kept_else_refused():
    from pyinfra.api import DeployError

    kept = plan([fake_host("rig", "debian-12", facts={"hashed_password": [
        f'c.PasswordIdentityProvider.hashed_password = "{HASH}"']}, ssh_user="alice", cpu_only=True)], ROLES)["rig"]
    cfg = next(c for o in kept for c in o["commands"] if c.startswith("UPLOAD /home/alice/.jupyter/"))
    assert f'hashed_password = "{HASH}"' in cfg
    with pytest.raises(DeployError, match="jupyter_password_hash is not set .* --jupyter-password-prompt"):
        plan([fake_host("rig", "debian-12", ssh_user="alice", cpu_only=True)], ROLES)
    # `dlrig plan` (dlrig_plan_only) plans on without a hash; apply (without it) refuses as above.
    planned = plan([fake_host("rig", "debian-12", ssh_user="alice", cpu_only=True, dlrig_plan_only=True)], ROLES)
    assert any(c.startswith("UPLOAD /home/alice/.jupyter/") for o in planned["rig"] for c in o["commands"])
