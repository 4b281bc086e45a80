"""Custom pyinfra facts that pyinfra itself lacks. One place for each fact."""

from __future__ import annotations

from pyinfra.api import FactBase


class DpkgAudit(FactBase):
    """Lines of ``dpkg --audit``: empty when no package is half-installed or unconfigured."""

    default = list

    def command(self) -> str:
        return "dpkg --audit 2>&1 || true"

    def requires_command(self) -> str:
        return "dpkg"

    def process(self, output):
        return [line for line in output if line.strip()]

