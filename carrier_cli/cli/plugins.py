"""`carrier plugins ...`: see which runtime plugins are installed and what a character loads."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="List runtime plugins (actions, providers, evaluators).", no_args_is_help=True
)


@app.command("list")
def list_plugins(
    character: Annotated[
        str | None,
        typer.Option("--character", help="Show what this character's runtime loads instead."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Installed `carrier.plugins` entry points, or the plugins a character's runtime loads
    (built-ins, autoloaded entry points and the character's `plugins:` list)."""
    from dataclasses import asdict

    from carrier_cli.output import out, print_json
    from carrier_cli.runtime.plugins import describe_for_character, describe_installed

    if character is not None:
        from carrier_cli.character import resolve_character

        infos = describe_for_character(resolve_character(character).plugins)
    else:
        infos = describe_installed()
    if as_json:
        print_json([asdict(i) for i in infos])
        return
    from rich.markup import escape

    console = out()
    if not infos:
        console.print("No plugins installed in the carrier.plugins entry-point group.")
        return
    for info in infos:
        flag = "" if info.autoload else " (opt-in: list it under plugins: in a character)"
        console.print(f"[bold]{escape(info.name)}[/bold]  {escape(info.origin)}{escape(flag)}")
        if info.error:
            console.print(f"  [red]failed to load:[/red] {escape(info.error)}")
            continue
        if info.description:
            console.print(f"  {escape(info.description)}")
        for label, names in (
            ("actions", info.actions),
            ("providers", info.providers),
            ("evaluators", info.evaluators),
        ):
            if names:
                console.print(f"  {label}: {escape(', '.join(names))}")
