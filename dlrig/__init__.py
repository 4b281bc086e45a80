"""dlrig: a verified deep-learning workstation from one inventory file and one command."""

__version__ = "0.1.0"
