"""`carrier version`."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version(
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Show Carrier's version and the Python it runs on."""
        import platform

        from carrier_cli import __version__

        if json_out:
            from carrier_cli.output import print_json

            print_json({"carrier": __version__, "python": platform.python_version()})
        else:
            typer.echo(f"carrier {__version__} (Python {platform.python_version()})")
