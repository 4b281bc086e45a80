"""pyinfra deploy file for ``dlrig revert``: the roles named by ``dlrig_roles`` (config-only ones,
:data:`dlrig.roles.footprint.REVERTIBLE`) back to the distribution's defaults."""

from dlrig.deploys import sudo_password
from dlrig.roles.footprint import REVERTIBLE
from dlrig.roles.revert import REVERT
from pyinfra import host

from dlrig.engine.catalogue import parse_roles

sudo_password(host)
for _name in parse_roles(host.data.get("dlrig_roles")):
    if _name in REVERTIBLE:
        REVERT[_name]()
