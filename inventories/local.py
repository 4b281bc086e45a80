"""This machine: dlrig runs pyinfra's @local connector (no SSH), as root or with sudo.

    dlrig plan inventories/local.py            # safe: a dry run, changes nothing
    sudo dlrig apply inventories/local.py --roles base

Reboots are never done to the machine dlrig runs on.
"""

hosts = [("@local", {})]
