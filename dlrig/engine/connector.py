"""``@dlrig-ssh/HOST``: pyinfra's SSH connector with TCP_NODELAY on its socket.

Registered in pyproject as the ``dlrig-ssh`` entry point of the ``pyinfra.connectors`` group, so
plain ``pyinfra INVENTORY deploys/workstation.py`` uses it as well as ``dlrig``. An inventory names
a host ``"@dlrig-ssh/rig"``; the host is then called ``rig`` (not ``@dlrig-ssh/rig``), and every
``ssh_*`` setting works as with pyinfra's own ``ssh`` connector, which this one only extends.

It also reads facts in batches while pyinfra prepares the operations (:mod:`dlrig.engine.factbatch`):
a no-op run costs one SSH command for the facts the last run read, not one per fact.
"""

from __future__ import annotations

from paramiko import SSHException
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import InventoryError
from pyinfra.api.state import StateStage
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.connectors.util import (
    CommandOutput,
    OutputLine,
    make_unix_command_for_host,
)

from dlrig.engine import factbatch, noopread
from dlrig.engine.tcp import set_nodelay

NAME = "dlrig-ssh"
COLLECTING = noopread.start_collecting()  # dlrig asked what this run reads (the verified no-op)


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

    # --- fact reads while pyinfra prepares: one SSH command for the whole last run's reads ---------

    # Arguments that make a command something other than a plain read (or need a prompt/askpass).
    _NOT_BATCHED = ("_stdin", "_get_pty", "_sudo_password", "_su_password")

    def _fact_command(self, command, print_output: bool, print_input: bool, arguments: dict) -> str | None:
        """The exact command line a fact read sends, or None when it is not answered from a batch."""
        if self.state is None or self.state.current_stage != StateStage.Prepare:
            return None
        return self._plain_command(command, print_output, print_input, arguments)

    def _plain_command(self, command, print_output: bool, print_input: bool, arguments: dict) -> str | None:
        """The exact command line of a plain read (no stdin, pty, password, printing), or None."""
        if self.state is None or print_output or print_input:
            return None
        if any(arguments.get(k) for k in self._NOT_BATCHED) or self.host.connector_data.get("prompted_sudo_password"):
            return None
        if arguments.get("_success_exit_codes") not in (None, [0]):
            return None
        # What pyinfra's own run_shell_command leaves out of the command line, the rest as it passes it.
        unix = {k: v for k, v in arguments.items() if k not in ("_get_pty", "_timeout", "_stdin", "_success_exit_codes")}
        return make_unix_command_for_host(self.state, self.host, command, **unix).get_raw_value()

    def _record(self):
        d = self.host.data
        return factbatch.record_path(self.host.name, d.get("ssh_hostname"), d.get("ssh_port"), d.get("ssh_user"))

    def _prefetch(self) -> None:
        """Once per run: the last run's fact commands, in one SSH command."""
        self._answers: dict[str, list[str]] = {}
        self._seen: list[str] = []
        commands = factbatch.load_record(self._record())
        if not commands:
            return
        script, marker = factbatch.batch_script(commands)
        try:
            _, output = super().run_shell_command(StringCommand(script), _timeout=factbatch.TIMEOUT)
        except (TimeoutError, OSError, SSHException):  # then each read runs by itself, as without a batch
            return
        # Each read's own status is in its line: parsed even when a part of the batch (sudo) failed.
        self._answers = factbatch.parse_batch(output.stdout_lines, commands, marker)

    @property
    def _collector(self) -> noopread.Collector:
        if not hasattr(self, "_noop"):
            self._noop = noopread.Collector()
        return self._noop

    def run_shell_command(self, command, print_output: bool = False, print_input: bool = False, **arguments):
        raw = self._fact_command(command, print_output, print_input, arguments)
        if raw is None:
            return self._run_after_prepare(command, print_output, print_input, arguments)
        if not hasattr(self, "_answers"):
            self._prefetch()
        self._seen.append(raw)
        if raw in self._answers:
            self._collector.read(raw, self._answers[raw])
            return True, CommandOutput([OutputLine("stdout", line) for line in self._answers[raw]])
        ok, output = super().run_shell_command(command, print_output=print_output, print_input=print_input,
                                               **arguments)
        if ok:  # read again in this prepare: the same answer (no operation has run yet)
            self._answers[raw] = output.stdout_lines
            self._collector.read(raw, output.stdout_lines)
        else:
            self._collector.spoil()
        return ok, output

    def _run_after_prepare(self, command, print_output: bool, print_input: bool, arguments: dict):
        """A command outside the batch. pyinfra 3 generates each operation's commands again while it
        executes, reading its facts again: in a run where no operation ran a command on this host (the
        only runs dlrig records for a verified no-op) every command here is such a read, noted like
        the others; one that cannot be replayed (stdin, a pty, a password) or fails spoils the record."""
        ok, output = super().run_shell_command(command, print_output=print_output, print_input=print_input,
                                               **arguments)
        raw = self._plain_command(command, print_output, print_input, arguments) if COLLECTING else None
        if raw is None or not ok:
            self._collector.spoil()
        else:
            self._collector.read(raw, output.stdout_lines)
        return ok, output

    def put_file(self, *args, **kwargs):
        self._collector.spoil()
        return super().put_file(*args, **kwargs)

    def get_file(self, *args, **kwargs):
        self._collector.spoil()
        return super().get_file(*args, **kwargs)

    def disconnect(self) -> None:
        if getattr(self, "_seen", None):
            factbatch.save_record(self._record(), self._seen)
        if COLLECTING:
            self._collector.write(self.host.name)
        super().disconnect()
