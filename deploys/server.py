"""A headless box without the GPU stack: base system, remote access and power settings only.

    pyinfra inventories/example.py deploys/server.py
"""

from dlrig.deploys import run_roles

from dlrig.engine.catalogue import ORDER

run_roles([r for r in ORDER if r in ("base", "ssh", "firewall", "power", "unattended_upgrades")])
