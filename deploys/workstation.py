"""The whole workstation: every role in dlrig's order (or those named by ``dlrig_roles``).

    pyinfra inventories/example.py deploys/workstation.py
"""

from dlrig.deploys import run_roles

run_roles()
