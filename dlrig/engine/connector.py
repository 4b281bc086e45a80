"""``@dlrig-ssh/HOST``: pyinfra's SSH connector with TCP_NODELAY on its socket.

Registered in pyproject as the ``dlrig-ssh`` entry point of the ``pyinfra.connectors`` group, so
plain ``pyinfra INVENTORY deploys/workstation.py`` uses it as well as ``dlrig``. An inventory names
a host ``"@dlrig-ssh/rig"``; the host is then called ``rig`` (not ``@dlrig-ssh/rig``), and every
``ssh_*`` setting works as with pyinfra's own ``ssh`` connector, which this one only extends.
"""

from __future__ import annotations

from pyinfra.api.exceptions import InventoryError
from pyinfra.connectors.ssh import SSHConnector

from dlrig.engine.tcp import set_nodelay

NAME = "dlrig-ssh"


class DlrigSSHConnector(SSHConnector):
    """pyinfra's SSH connector; after connecting, TCP_NODELAY is set on the connection's socket."""

    @staticmethod
    def make_names_data(name=None):
        if not name:
            raise InventoryError(f"@{NAME} needs a host: @{NAME}/HOSTNAME")
        yield name, {"ssh_hostname": name}, []

    def connect(self) -> None:
        super().connect()  # raises ConnectError when it cannot connect
        if self.client is not None:
            set_nodelay(self.client)
