"""Settings of role ``pytorch``: one conda environment with torch (the build that fits the driver) and fastai.

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/pytorch.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

import re

from dlrig.engine import pyenv
from dlrig.engine.settings import Setting, declare


def _env_name(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value) and value != "base":
        return None
    return "letters, digits, '.', '_' or '-' (not 'base'), e.g. 'dl'"


def _python_version(value: str) -> str | None:
    if re.fullmatch(r"3\.(1[0-9]|[0-9])(\.\d+)?", value):
        return None
    return "a Python 3 version such as '3.11' (fastai needs >= 3.10)"


def _torch_version(value: str) -> str | None:
    if re.fullmatch(r"2\.\d+(\.\d+)?", value):
        return None
    return "a torch release such as '2.14.1' (no +cuXXX suffix: the variant comes from the resolver)"


def _urls(value: list) -> str | None:
    for v in value:
        if not (v.startswith(("http://", "https://", "file://")) or v.startswith("/")):
            return f"{v!r}: give http(s):// or file:// URLs or absolute paths on the host"
    return None


DEFAULTS = declare(
    "pytorch",
    Setting("env_name", "dl", "str", "the conda environment with torch, fastai and Jupyter", check=_env_name),
    Setting("python_version", "3.11", "str", "Python of that environment", check=_python_version),
    Setting(
        "pip_index_url",
        None,
        "url",
        "index torch/torchvision come from; None: the resolver's (download.pytorch.org/whl/<variant>)",
        nullable=True,
    ),
    Setting(
        "pip_find_links",
        [],
        "list",
        "extra wheel locations (wheelhouses, mirrors) pip looks in for every package",
        item_kind="str",
        check=_urls,
    ),
    Setting(
        "extra_packages",
        [],
        "list",
        "more pip requirements for the environment, e.g. ['pandas>=2.2', 'timm']",
        item_kind="str",
        check=pyenv.check_requirements,
    ),
    Setting(
        "use_uv",
        True,
        "bool",
        "install the environment's packages with `uv pip` (uv from PyPI into the env; many times faster "
        "than pip, same index, find-links and versions); False: pip",
    ),
    Setting(
        "torch_version",
        None,
        "str",
        "torch release to install, e.g. '2.14.1'; None: the resolver's choice",
        nullable=True,
        check=_torch_version,
    ),
)
