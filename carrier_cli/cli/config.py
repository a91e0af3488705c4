"""`carrier config show|path|init`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Show and create configuration.", no_args_is_help=True)


@app.command("show")
def show(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every effective setting, where it came from, with secrets masked."""
    from carrier_cli.state import STATE

    loaded = STATE.settings()
    rows = loaded.display_rows()
    if json_out:
        from carrier_cli.output import print_json

        print_json({name: {"value": value, "source": src} for name, value, src in rows})
        return
    from carrier_cli.output import out
    from carrier_cli.output import table as Table

    table = Table(title="Effective configuration", title_justify="left")
    table.add_column("setting", style="cyan")
    table.add_column("value")
    table.add_column("source", style="dim")
    for name, value, src in rows:
        table.add_row(name, value, src)
    out().print(table)


@app.command("path")
def path(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The config file in use and Carrier's directories."""
    from carrier_cli.config import find_config_file
    from carrier_cli.paths import carrier_paths
    from carrier_cli.state import STATE

    paths = carrier_paths()
    active = find_config_file(STATE.config_path, paths, Path.cwd())
    data = {
        "config_file": str(active) if active else None,
        "user_config_file": str(paths.config_file),
        "config_dir": str(paths.config_dir),
        "data_dir": str(paths.data_dir),
        "cache_dir": str(paths.cache_dir),
        "log_dir": str(paths.log_dir),
    }
    if json_out:
        from carrier_cli.output import print_json

        print_json(data)
        return
    from carrier_cli.output import key_value_lines

    shown = {k: "(none: defaults and environment)" if v is None else v for k, v in data.items()}
    for line in key_value_lines(shown.items()):
        typer.echo(line)


@app.command("init")
def init(
    target: Annotated[
        Path | None,
        typer.Option("--path", help="Where to write (default: the user config file)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented config.yaml with every setting and its default."""
    from carrier_cli.config_template import render_config_yaml
    from carrier_cli.errors import InputError
    from carrier_cli.paths import carrier_paths

    dest = target or carrier_paths().config_file
    if dest.exists() and not force:
        raise InputError(f"{dest} already exists.", hint="Pass --force to overwrite it.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render_config_yaml(), encoding="utf-8")
    typer.echo(f"Wrote {dest}")
