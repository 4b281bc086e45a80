"""What every command shares: failing with exit 2, ``--data`` parsing, validation before any
connection, the common options and the Jupyter password prompt."""

from __future__ import annotations

import ast
import functools
import json
import sys
from typing import TYPE_CHECKING, Any, Callable

import click

if TYPE_CHECKING:  # the engine loads when a command runs, not for `dlrig --help`
    from dlrig.engine.inventory import UserError

EXIT_USAGE = 2


def fail(err: UserError | str | list[str]) -> None:
    """Each line as ``dlrig: error: ...`` on stderr, then exit 2 (bad input; nothing was touched)."""
    from dlrig.engine.inventory import UserError

    lines = err.lines if isinstance(err, UserError) else [err] if isinstance(err, str) else err
    for line in lines:
        click.echo(f"dlrig: error: {line}", err=True)
    if "--json" in sys.argv[1:]:  # the same reason for programs reading --json
        import json

        click.echo(json.dumps({"ok": False, "error": "\n".join(lines)}))
    sys.exit(EXIT_USAGE)


def parse_data(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--data key=value`` pairs; a value is read as a Python literal (``True``, ``[1, 2]``), else as
    JSON (``true``, ``null``: pyinfra's own ``--data`` is JSON), else kept as a string."""
    from dlrig.engine.inventory import UserError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--data {pair!r}: use KEY=VALUE, e.g. --data jupyter_port=8890")
        if key == "_sudo_password":
            raise UserError("--data _sudo_password: a command line shows in `ps` and in apply's log; use "
                            "--sudo-password-prompt or the DLRIG_SUDO_PASSWORD environment variable")
        out[key] = _literal(raw)
    return out


def _literal(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        pass
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def prepare(inventory: str, roles: str | None, data: tuple[str, ...]):
    """Everything checked before any connection: inventory, roles, every host's settings."""
    from dlrig.engine.catalogue import parse_roles
    from dlrig.engine.inventory import UserError, load_inventory, validate

    try:
        override = parse_data(data)
        if roles:
            try:
                override["dlrig_roles"] = parse_roles(roles)
            except KeyError as e:
                raise UserError(f"--roles {roles}: {e.args[0]}") from None
        hosts = load_inventory(inventory, override)
        validate(hosts)
        from dlrig.engine import preflight

        preflight.check(hosts)
    except UserError as e:
        fail(e)
    return hosts, override


inventory_arg = click.argument("inventory")
roles_opt = click.option("--roles", help="Comma-separated roles to run (default: all), e.g. base,ssh.")
data_opt = click.option("--data", "data", multiple=True, metavar="KEY=VALUE", help="Override a setting for every host.")
json_opt = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")


def jupyter_password_option(f: Callable) -> Callable:
    """``--jupyter-password-prompt`` for ``dlrig apply``: ask for the password, hash it here.

    The clear text stays in this process's memory: only the hash travels, as
    ``--data jupyter_password_hash=HASH``. A decorator: one line on the command.
    """
    @functools.wraps(f)
    def wrapper(*args, jupyter_password_prompt: bool = False, **kwargs):
        if jupyter_password_prompt:
            from dlrig.engine.passwords import hash_password

            password = click.prompt("Jupyter password", hide_input=True, confirmation_prompt=True, err=True)
            kwargs["data"] = (*kwargs.get("data", ()), f"jupyter_password_hash={hash_password(password)}")
            del password
        return f(*args, **kwargs)

    return click.option(
        "--jupyter-password-prompt",
        is_flag=True,
        help="Ask for the Jupyter password and send only its hash (jupyter_password_hash).",
    )(wrapper)


def tail(text: str, lines: int = 15) -> str:
    """The last lines of a subprocess's output, for an error report."""
    return "\n".join(text.strip().splitlines()[-lines:])


def sudo_password_option(f: Callable) -> Callable:
    """``--sudo-password-prompt``: ask for the sudo password once; dlrig's children (plan's and
    apply's pyinfra, the apply lock) get it through ``DLRIG_SUDO_PASSWORD`` (dlrig.engine.sudopass)."""
    @functools.wraps(f)
    def wrapper(*args, sudo_password_prompt: bool = False, **kwargs):
        if sudo_password_prompt:
            import os

            from dlrig.engine.sudopass import ENV

            os.environ[ENV] = click.prompt("sudo password", hide_input=True, err=True)
        return f(*args, **kwargs)

    return click.option(
        "--sudo-password-prompt",
        is_flag=True,
        help="Ask once for the sudo password on the hosts (or set DLRIG_SUDO_PASSWORD).",
    )(wrapper)
