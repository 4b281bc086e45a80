"""Start a Python module in a child process that imports the same dlrig as this one.

``python -m MODULE`` puts the working directory first on ``sys.path``: run from a clone of this
repository, that imports the clone's ``dlrig/`` instead of the installed package (and, before the
clone knew its ``roles/`` and ``deploys/``, crashed). Python 3.11's ``-P`` drops that entry, but
dlrig supports 3.10. So every child is started through a few lines of ``-c`` that drop the working
directory and put first the folder this process's own ``dlrig`` came from: the installed package
for an installed dlrig (from any working directory), the checkout for ``python -m dlrig`` run inside
a checkout (the tests). Parent and children always run the same code.
"""

from __future__ import annotations

import os
import sys

import dlrig

# argv: -c ROOT MODULE ARGS...; ROOT goes first on sys.path, '' (the working directory) goes.
_LAUNCHER = (
    "import runpy, sys\n"
    "root, module = sys.argv[1:3]\n"
    "del sys.argv[1:3]\n"
    "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
    "sys.path.insert(0, root) if root not in sys.path else None\n"
    "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
)


def dlrig_root() -> str:
    """The folder holding the ``dlrig`` package this process imported (site-packages or a checkout)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(dlrig.__file__)))


def python_module(module: str, *args: str, python: str | None = None) -> list[str]:
    """The argv of ``python -m MODULE ARGS`` that cannot pick up a ``dlrig/`` from the working directory."""
    return [python or sys.executable, "-c", _LAUNCHER, dlrig_root(), module, *args]
