"""Shared by test_cli_help and the one-off capture: every ``dlrig [CMD] --help`` text, at 80 columns."""

from __future__ import annotations


def help_texts() -> dict[str, str]:
    from click.testing import CliRunner

    from dlrig.cli import main

    runner = CliRunner()
    out = {}
    for args in [[], *([name] for name in sorted(main.commands))]:
        r = runner.invoke(main, [*args, "--help"], prog_name="dlrig", terminal_width=80)
        assert r.exit_code == 0, r.output
        out["dlrig " + " ".join([*args, "--help"])] = r.output
    return out
