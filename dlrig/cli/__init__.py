"""The ``dlrig`` command line: one click group; each module beside this one is a command family.

Nothing else in dlrig imports this package: it sits on top of every layer.
"""

from __future__ import annotations

import click

from dlrig import __version__
from dlrig.cli import demo, init, lock, resolve, revert, run, verify


class _Group(click.Group):
    """Ctrl-C anywhere outside a run (a prompt, an inventory being read) exits 130, like an
    interrupted run, with one line; click's own handling prints "Aborted!" and exits 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.Abort as e:
            if not isinstance(e.__context__, KeyboardInterrupt):
                raise
        except KeyboardInterrupt:
            pass
        click.echo("\ndlrig: interrupted; nothing more was done", err=True)
        raise SystemExit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dlrig")
def main() -> None:
    """Turn a fresh Ubuntu box into a verified deep-learning workstation, repeatably."""


for _command in (init.init, run.plan, run.apply, run.check, run.settings, demo.demo, resolve.resolve, resolve.doctor,
                 verify.verify, verify.bench, lock.lock,
                 lock.backup, lock.cache, revert.files, revert.revert):
    main.add_command(_command)
