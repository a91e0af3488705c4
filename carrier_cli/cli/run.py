"""`carrier run`: the long-running process serving characters on Discord (and Instagram).

Logic lives in carrier_cli.clients.supervisor and the client packages; this module parses
flags, and keeps its imports to typer so `carrier --help` stays fast. The clients `--client`
accepts are the `carrier.clients` entry points (carrier_cli.clients.registry); they are
looked up only when `run` runs or its help is shown, never for `carrier --help`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperOption

_CLIENT_HELP = "Client to run; repeat for several ({names}). Default: discord."


class _RunCommand(TyperCommand):
    """Fills the installed client names into the `--client` help when help is shown, so
    building the CLI never scans the installed distributions."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from carrier_cli.clients.registry import available_clients

        names = ", ".join(available_clients())
        for param in self.params:
            if isinstance(param, TyperOption) and param.name == "client":
                param.help = _CLIENT_HELP.format(names=names)
        super().format_help(ctx, formatter)


def register(app: typer.Typer) -> None:
    @app.command("run", cls=_RunCommand)
    def run(
        client: Annotated[
            list[str] | None,
            typer.Option("--client", help=_CLIENT_HELP.format(names="see carrier run --help")),
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
        metrics_port: Annotated[
            int | None,
            typer.Option(
                "--metrics-port",
                help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics (see "
                "--metrics-host).",
                metavar="PORT",
            ),
        ] = None,
        metrics_host: Annotated[
            str,
            typer.Option(
                "--metrics-host",
                help="Address the --metrics-port server listens on (0.0.0.0: every interface, "
                "e.g. in a container scraped from outside).",
            ),
        ] = "127.0.0.1",
        role: Annotated[
            str,
            typer.Option(
                "--role",
                help="all: the clients (default discord); worker: run the turns `carrier serve "
                "--role api` queues in Redis (needs REDIS_URL; clients only if --client is "
                "given).",
                metavar="worker|all",
            ),
        ] = "all",
        shards: Annotated[
            str | None,
            typer.Option(
                "--shards",
                help="Split the Discord bot into N gateway shards (every process of the bot "
                "gives the same N), or `auto`: Discord's recommendation, all in this process.",
                metavar="N|auto",
            ),
        ] = None,
        shard_ids: Annotated[
            str | None,
            typer.Option(
                "--shard-ids",
                help="The shards this process runs, e.g. 0,1 (with --shards N; default: all).",
                metavar="IDS",
            ),
        ] = None,
        sync_commands: Annotated[
            bool,
            typer.Option(
                "--sync-commands",
                help="Register the Discord slash commands globally on start (Discord takes "
                "up to an hour to show them everywhere; per guild, instantly: "
                "clients.discord.sync_commands: guild in the character).",
            ),
        ] = False,
    ) -> None:
        """Serve characters on Discord (and other clients) until SIGINT/SIGTERM.

        Example: carrier run --client discord --character characters/carrier.yaml
        """
        import asyncio
        import logging
        import os

        from carrier_cli import startup_gc
        from carrier_cli.clients.registry import available_clients
        from carrier_cli.clients.supervisor import run_clients
        from carrier_cli.state import STATE
        from carrier_cli.webhooks.sender import services as webhook_services

        clients = available_clients()
        shard_flags = _shard_flags(shards, shard_ids, client or ["discord"])
        if sync_commands:
            shard_flags["discord_sync_commands"] = True
        settings = STATE.settings(shutdown_grace=grace, **shard_flags).settings
        role = role.strip().lower()
        check_role(role, settings.redis_url)
        if not STATE.debug and not STATE.verbose and not os.environ.get("CARRIER_LOG_LEVEL"):
            # A server process logs what it does; `log_level` (default INFO) says how much.
            level = logging.getLevelName(settings.log_level.upper())
            logging.getLogger("carrier_cli").setLevel(level if isinstance(level, int) else 20)
            logging.getLogger("carrier").setLevel(level if isinstance(level, int) else 20)
        server = None
        if metrics_port is not None:  # before any runtime is built: they all get counted
            from carrier_cli.metrics import serve_metrics

            server = serve_metrics(metrics_port, metrics_host)
            logging.getLogger("carrier_cli.run").info("Metrics at %s", server.url)
        hooks = webhook_services(settings)

        async def main() -> None:
            from carrier_cli.cluster import event_relay

            # With redis_url: Redis must answer before any runtime opens (exit 1 otherwise);
            # this process only publishes its events (no WebSocket hub to feed).
            relay = await event_relay.open_relay(settings, receive=False)
            services = [*hooks, *event_relay.services(relay)]
            try:
                if role == "worker":
                    specs: list[str | None] = list(character) if character else [None]
                    await run_worker(client or [], specs, settings, clients, services)
                else:
                    await run_clients(
                        client or ["discord"],
                        character or [None],
                        settings,
                        clients,
                        services=services,
                    )
            finally:
                if relay is not None:  # closed by its service; here too if that never ran
                    await relay.close()

        startup_gc.resume()  # a long-lived server: the usual collector from here on
        try:
            asyncio.run(main())
        finally:
            if server is not None:
                server.close()


def check_role(role: str, redis_url: str | None) -> None:
    from carrier_cli.errors import InputError

    if role not in ("worker", "all"):
        raise InputError(
            f"--role {role!r} is not a role of carrier run.",
            hint="Use --role all (the clients, the default) or --role worker (the turns "
            "`carrier serve --role api` queues in Redis).",
        )
    if role == "worker" and not redis_url:
        raise InputError(
            "--role worker takes its turns from Redis, but no Redis is configured.",
            hint="Set REDIS_URL (or redis_url in config.yaml) to the Redis of the "
            "`carrier serve --role api` processes.",
        )


async def run_worker(
    client_names: list[str],
    characters: Sequence[str | None],
    settings: Any,
    registry: Any,
    services: Sequence[tuple[str, Any]] = (),
) -> None:
    """Redis first (a clear error, exit 1, when it is absent), then the runtimes and the
    queue worker under the supervisor, beside any --client given."""
    from carrier_cli.clients.supervisor import run_clients
    from carrier_cli.cluster.redis_client import connect
    from carrier_cli.cluster.worker import worker_service

    redis = await connect(settings.redis_url)
    try:
        await run_clients(
            client_names,
            characters,
            settings,
            registry,
            services=[("worker", worker_service(redis)), *services],
        )
    finally:
        await redis.aclose()


def _shard_flags(shards: str | None, shard_ids: str | None, clients: list[str]) -> dict[str, Any]:
    """--shards / --shard-ids as setting overrides, each checked here so a bad one is named
    as the flag (the rules between them, and with the settings, are the client's)."""
    if shards is None and shard_ids is None:
        return {}
    from carrier_cli.clients.discord.sharding import parse_shard_count, parse_shard_ids
    from carrier_cli.errors import ConfigError

    used = "--shards" if shards is not None else "--shard-ids"
    if "discord" not in clients:
        raise ConfigError(
            f"{used} splits the Discord bot, but this process runs no Discord client.",
            hint="Add --client discord, or leave the flag out.",
        )
    overrides: dict[str, Any] = {}
    try:
        if shards is not None:
            overrides["discord_shards"] = parse_shard_count(shards)
    except ValueError as exc:
        raise ConfigError(
            f"--shards {exc}.", hint="Example: --shards 4 --shard-ids 0,1, or --shards auto."
        ) from None
    try:
        if shard_ids is not None:
            overrides["discord_shard_ids"] = ",".join(map(str, parse_shard_ids(shard_ids)))
    except ValueError as exc:
        raise ConfigError(
            f"--shard-ids {exc}.", hint="Example: --shards 4 --shard-ids 0,1."
        ) from None
    return overrides
