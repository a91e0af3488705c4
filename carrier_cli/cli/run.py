"""`carrier run`: the long-running process serving characters on Discord (and Instagram).

Logic lives in carrier_cli.clients.supervisor and the client packages; this module parses
flags, and keeps its imports to typer so `carrier --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

# Client name -> "module:coroutine function" with the signature
# `async def client(runtime, settings, stop_event) -> None`. Imported only when used.
CLIENTS: dict[str, str] = {
    "discord": "carrier_cli.clients.discord:run_discord_client",
    "instagram": "carrier_cli.clients.instagram.autopost:run_instagram_client",
}


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        client: Annotated[
            list[str] | None,
            typer.Option(
                "--client",
                help=f"Client to run; repeat for several ({', '.join(CLIENTS)}). Default: discord.",
            ),
        ] = None,
        character: Annotated[
            list[str] | None,
            typer.Option(
                "--character",
                help="Character name or file; repeat to run several in one process "
                "(one Discord bot token each). Default: the `character` setting.",
            ),
        ] = None,
        grace: Annotated[
            float | None,
            typer.Option("--grace", help="Seconds to finish in-flight turns on SIGINT/SIGTERM."),
        ] = None,
    ) -> None:
        """Serve characters on Discord (and other clients) until SIGINT/SIGTERM.

        Example: carrier run --client discord --character characters/carrier.yaml
        """
        import asyncio
        import logging
        import os

        from carrier_cli.clients.supervisor import run_clients
        from carrier_cli.state import STATE

        settings = STATE.settings(shutdown_grace=grace).settings
        if not STATE.debug and not STATE.verbose and not os.environ.get("CARRIER_LOG_LEVEL"):
            # A server process logs what it does; `log_level` (default INFO) says how much.
            level = logging.getLevelName(settings.log_level.upper())
            logging.getLogger("carrier_cli").setLevel(level if isinstance(level, int) else 20)
        asyncio.run(run_clients(client or ["discord"], character or [None], settings, CLIENTS))
