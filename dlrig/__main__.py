"""``python -m dlrig``: the same as the ``dlrig`` command."""

from dlrig.cli import main

main()
