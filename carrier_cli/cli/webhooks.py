"""`carrier webhooks list|test|deliveries|redeliver` (logic in carrier_cli.webhooks.admin;
this module parses the arguments and prints, and imports only typer at load)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from datetime import datetime

    from carrier_cli.config import Settings
    from carrier_cli.memory.outbox import Delivery

app = typer.Typer(
    help="Webhooks: the configured receivers, a signed test delivery, the delivery log.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _settings() -> Settings:
    from carrier_cli.state import STATE

    return STATE.settings().settings


@app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """The configured webhooks: name, URL, events and where the secret is (never it)."""
    from carrier_cli.output import notice, out, print_json, table

    hooks = [hook.display() for hook in _settings().webhooks]
    if as_json:
        print_json(hooks)
        return
    if not hooks:
        notice("No webhooks configured: add a `webhooks:` list to config.yaml.")
        return
    grid = table()
    for header in ("name", "url", "events", "secret"):
        grid.add_column(header, overflow="fold")
    for hook in hooks:
        secret = hook.get("secret_env") or hook.get("secret_key") or hook.get("secret", "")
        if "secret_env" in hook:
            secret = f"${secret}"
        grid.add_row(hook["name"], hook["url"], ", ".join(hook["events"]), secret)
    out().print(grid)


@app.command("test")
def test_cmd(
    target: Annotated[
        str, typer.Argument(metavar="URL", help="A webhook's URL or name, or any http(s) URL.")
    ],
    secret_env: Annotated[
        str | None,
        typer.Option(
            "--secret-env",
            help="Environment variable holding the secret to sign with (for a URL that is "
            "not a configured webhook).",
        ),
    ] = None,
) -> None:
    """Send a signed `webhook.test` event now and print the status and time."""
    import asyncio
    import os

    from carrier_cli.errors import InputError, RuntimeFailure
    from carrier_cli.webhooks.admin import send_test

    secret = None
    if secret_env is not None:
        secret = os.environ.get(secret_env)
        if not secret:
            raise InputError(
                f"--secret-env names ${secret_env}, which is not set.",
                hint=f"Export {secret_env} with the receiver's secret.",
            )
        from carrier_cli.redact import register_secret

        register_secret(secret)
    result = asyncio.run(send_test(_settings(), target, secret))
    outcome = result.outcome
    shown = outcome.status if outcome.status is not None else "no response"
    if not outcome.delivered:
        raise RuntimeFailure(
            f"Test delivery {result.delivery} was not accepted: {outcome.error} "
            f"({outcome.ms:.0f} ms).",
            hint="The receiver must answer 2xx; check its URL, that it is running, and its "
            "logs." + (" It would be retried." if outcome.retry else ""),
        )
    typer.echo(f"{shown} in {outcome.ms:.0f} ms (delivery {result.delivery})")


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


@app.command("deliveries")
def deliveries_cmd(
    failed: Annotated[bool, typer.Option("--failed", help="Only the failed ones.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most N.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The latest deliveries, newest first: status, attempts, the last answer or error."""
    import asyncio

    from carrier_cli.output import notice, print_json
    from carrier_cli.webhooks.admin import delivery_json, list_deliveries

    rows = asyncio.run(list_deliveries(_settings().database_url, failed=failed, limit=limit))
    if as_json:
        print_json([delivery_json(d) for d in rows])
        return
    if not rows:
        notice("No failed deliveries." if failed else "No webhook deliveries yet.")
        return
    _print_table(rows)


def _print_table(rows: list[Delivery]) -> None:
    from carrier_cli.output import out, table

    grid = table()
    for header in ("id", "status", "webhook", "event", "tries", "last", "when"):
        grid.add_column(header, no_wrap=True)
    grid.add_column("error", overflow="fold")
    for d in rows:
        when = d.delivered_at if d.status == "delivered" else d.next_attempt_at
        if d.status == "failed":
            when = d.updated_at
        grid.add_row(
            d.id[:12],
            d.status,
            d.webhook,
            d.event_type,
            str(d.attempts),
            str(d.last_status) if d.last_status is not None else "-",
            _when(when),
            d.last_error or "",
        )
    out().print(grid)


@app.command("redeliver")
def redeliver_cmd(
    delivery: Annotated[
        str, typer.Argument(metavar="ID", help="A delivery id or a unique prefix of it.")
    ],
) -> None:
    """Make a delivery pending again (same delivery id); a running sender sends it."""
    import asyncio

    from carrier_cli.output import notice
    from carrier_cli.webhooks.admin import redeliver

    found = asyncio.run(redeliver(_settings().database_url, delivery))
    notice(
        f"Delivery {found.id} ({found.event_type} to {found.webhook}) is pending again; a "
        "running `carrier serve` or `carrier run` with webhooks sends it."
    )
