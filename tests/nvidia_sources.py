"""NVIDIA CUDA-repository package names for tests, read from the recorded sources in
tools/sources/nvidia-repo/ (never from the code under test): packages.tsv's templates, each shown
verbatim in its excerpt, and the Driver Installation Guide's branch where Ubuntu's names lose the
branch number."""

from __future__ import annotations

import re
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[1] / "tools" / "sources" / "nvidia-repo"


def rows() -> list[list[str]]:
    return [line.split("\t") for line in (SOURCES / "packages.tsv").read_text().splitlines()
            if line and not line.startswith("#")]


def name(part: str, key: str, **fields) -> str:
    (template,) = [r[2] for r in rows() if r[0] == part and r[1] == key]
    return template.format(**fields)


def unversioned_from() -> int:
    text = (SOURCES / "driver-installation-guide-recent-updates.md").read_text()
    return int(re.search(r"Starting with branch (\d+), the Ubuntu packages", text).group(1))


def cudnn(major: int, cuda_major: int | None = None) -> list[str]:
    return [name("cudnn", f"{major}{s}", cuda_major=cuda_major) for s in ("", "-dev")]
