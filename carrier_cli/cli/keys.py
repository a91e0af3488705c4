"""`carrier keys set|get|list|remove|path`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

app = typer.Typer(
    help="Store API keys and tokens in the system keyring (or a private 0600 file).",
    no_args_is_help=True,
)

NameArg = Annotated[
    str, typer.Argument(help="openai, anthropic, discord, instagram or ftp (NAME:CHARACTER ok).")
]


@app.command("set")
def set_key(name: NameArg) -> None:
    """Store a key: typed at a hidden prompt, or read from stdin when piped."""
    from carrier_cli.output import notice
    from carrier_cli.secrets import SecretStore, validate_key_name, validate_key_value

    validate_key_name(name)
    if sys.stdin.isatty():
        value = typer.prompt(f"Value for '{name}'", hide_input=True)
    else:
        value = sys.stdin.read()
    value = validate_key_value(name, value)
    store = SecretStore()
    store.set(name, value)
    if store.uses_file:
        notice(f"No system keyring here: stored in {store.paths.secrets_file} (mode 0600).")
    typer.echo(f"Stored key '{name}' in {store.backend_name}.", err=True)


@app.command("get")
def get_key(
    name: NameArg,
    reveal: Annotated[bool, typer.Option("--reveal", help="Print the full value.")] = False,
) -> None:
    """Show a stored key, masked unless --reveal (the only way a value is ever printed)."""
    from carrier_cli.config import mask_secret
    from carrier_cli.errors import InputError
    from carrier_cli.secrets import SecretStore, validate_key_name

    validate_key_name(name)
    found = SecretStore().get(name)
    if found is None:
        raise InputError(
            f"No stored key '{name}'.", hint=f"Store one with `carrier keys set {name}`."
        )
    typer.echo(found.value if reveal else mask_secret(found.value))


@app.command("list")
def list_keys(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Names of the stored keys and where each is stored; never the values."""
    from carrier_cli.config import KEY_NAMES, env_names
    from carrier_cli.secrets import SecretStore

    store = SecretStore()
    names = store.names()
    rows = []
    for name in names:
        setting = KEY_NAMES.get(name.split(":", 1)[0], "")
        rows.append(
            {
                "name": name,
                "setting": setting,
                "stored_in": store.backend_name,
                "env": env_names(setting)[-1] if setting else "",
            }
        )
    if json_out:
        from carrier_cli.output import print_json

        print_json(rows)
        return
    if not rows:
        typer.echo("No stored keys. Add one with `carrier keys set openai`.")
        return
    for row in rows:
        typer.echo(f"{row['name']:20} {row['stored_in']}  (overridden by ${row['env']})")


@app.command("remove")
def remove_key(name: NameArg) -> None:
    """Delete a stored key."""
    from carrier_cli.errors import InputError
    from carrier_cli.secrets import SecretStore, validate_key_name

    validate_key_name(name)
    if not SecretStore().remove(name):
        raise InputError(f"No stored key '{name}' to remove.", hint="See `carrier keys list`.")
    typer.echo(f"Removed key '{name}'.")


@app.command("path")
def key_path() -> None:
    """Where keys are stored on this machine."""
    from carrier_cli.secrets import SecretStore

    typer.echo(SecretStore().backend_name)
