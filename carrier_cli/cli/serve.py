"""`carrier serve`: the HTTP + WebSocket API (logic in carrier_cli.clients.api.server; this
module parses flags and keeps its imports to typer so `carrier --help` stays fast)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: Annotated[
            str | None,
            typer.Option(
                "--host",
                help="Address to listen on (default: the api_host setting, 127.0.0.1; "
                "0.0.0.0: every interface).",
            ),
        ] = None,
        port: Annotated[
            int | None,
            typer.Option("--port", help="Port (default: the api_port setting, 8000; 0: any)."),
        ] = None,
        character: Annotated[
            list[str] | None,
            typer.Option(
                "--character",
                help="Character name or file to serve; repeat for several. Default: the "
                "`character` setting.",
            ),
        ] = None,
        client: Annotated[
            list[str] | None,
            typer.Option(
                "--client",
                help="Also run this client in the same process, sharing the runtimes "
                "(e.g. discord); repeat for several.",
            ),
        ] = None,
        no_auth: Annotated[
            bool,
            typer.Option(
                "--no-auth",
                help="Accept requests without an API key (only with a loopback --host).",
            ),
        ] = False,
        grace: Annotated[
            float | None,
            typer.Option("--grace", help="Seconds to finish in-flight requests and turns on stop."),
        ] = None,
        role: Annotated[
            str,
            typer.Option(
                "--role",
                help="all: run turns in this process; api: hand them to `carrier run --role "
                "worker` processes over Redis (needs REDIS_URL).",
                metavar="api|all",
            ),
        ] = "all",
    ) -> None:
        """Serve characters over HTTP and WebSocket until SIGINT/SIGTERM.

        Example: carrier serve --port 8000 --character characters/carrier.yaml
        """
        import asyncio
        import logging
        import os

        from carrier_cli import startup_gc
        from carrier_cli.clients.api.server import ServeOptions
        from carrier_cli.clients.api.server import serve as run_server
        from carrier_cli.clients.registry import available_clients
        from carrier_cli.state import STATE

        settings = STATE.settings(shutdown_grace=grace).settings
        if not STATE.debug and not STATE.verbose and not os.environ.get("CARRIER_LOG_LEVEL"):
            level = logging.getLevelName(settings.log_level.upper())
            logging.getLogger("carrier_cli").setLevel(level if isinstance(level, int) else 20)
            logging.getLogger("carrier").setLevel(level if isinstance(level, int) else 20)
        options = ServeOptions(
            host=host if host is not None else settings.api_host,
            port=port if port is not None else settings.api_port,
            characters=character or [None],
            clients=client or [],
            no_auth=no_auth,
            role=role.strip().lower(),
        )

        def out(line: str) -> None:
            typer.echo(line)

        startup_gc.resume()  # a long-lived server: the usual collector from here on
        asyncio.run(run_server(options, settings, available_clients(), out=out))
