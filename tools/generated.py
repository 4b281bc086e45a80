"""The one `main` of the table generators (gen_nvidia_packages.py, gen_ubuntu_packages.py, gpu_table.py):
write the generated file, or with --check only say whether the shipped file equals it (exit 1 if not)."""

from __future__ import annotations

from pathlib import Path


def write_or_check(out: Path, text: str, check: bool, tool: str) -> int:
    if check:
        same = out.exists() and out.read_text() == text
        print(f"{out.name} is up to date" if same else f"{out} differs from {tool}'s output: run python3 tools/{tool}")
        return 0 if same else 1
    out.write_text(text)
    print(f"wrote {out}")
    return 0
