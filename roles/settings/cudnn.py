"""Settings of role ``cudnn``: the resolved cuDNN packages (PyTorch wheels bundle their own; this is for nvcc builds).

Importable without pyinfra: ``dlrig check`` validates with them before any connection;
roles/cudnn.py, the deploy, imports its defaults from here.
"""

from __future__ import annotations

from dlrig.engine.settings import Setting, declare

DEFAULTS = declare(
    "cudnn",
    Setting("cudnn_install", True, "bool", "install cuDNN system-wide (torch wheels carry their own)"),
    Setting("cudnn_dev", True, "bool", "also the headers/dev packages (building against cuDNN)"),
)
