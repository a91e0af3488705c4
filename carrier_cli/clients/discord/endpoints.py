"""Pointing discord.py at another REST base and gateway (gateway proxies, the test fake).

discord.py keeps both as class attributes (`Route.BASE`, `DiscordWebSocket.DEFAULT_GATEWAY`)
and falls back to DEFAULT_GATEWAY after an invalidated session, so the override has to be
made there rather than per connection. They are process-wide, which matches Carrier: every
bot in one process talks to the same Discord.

Interaction answers (the callback, follow-ups, edits of @original) do not go through the
bot's HTTPClient but through discord.py's webhook adapter (discord.webhook.async_), which
builds its own URLs from the `Route` class its module imported. In discord.py 2.x that is
http.Route (so one assignment covers both), but the adapter had its own base in 1.x and
nothing makes it stay shared: `configure_endpoints` sets the base on every Route class the
webhook modules hold, and tests/clients/discord/test_endpoints.py checks the adapter's URL.
Missing it would not fail loudly: a slash command would be answered at discord.com (or
nowhere, offline) while every other request reached the configured base.
"""

from __future__ import annotations

import re
from typing import Any

from carrier_cli.errors import ConfigError

API_VERSION = 10
_VERSIONED = re.compile(r"/api/v\d+/?$")


def normalise_api_base(value: str) -> str:
    """`http://host:port` or `.../api/v10` both work; the result ends in /api/v10."""
    base = value.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(
            f"discord_api_base (CARRIER_DISCORD_API_BASE) must be an http(s) URL, got {value!r}.",
            hint="Example: https://discord.com/api/v10 or http://127.0.0.1:8080.",
        )
    if _VERSIONED.search(base):
        return base
    return f"{base}/api/v{API_VERSION}"


def normalise_gateway_url(value: str) -> str:
    url = value.strip()
    if not url.startswith(("ws://", "wss://", "http://", "https://")):
        raise ConfigError(
            "discord_gateway_url (CARRIER_DISCORD_GATEWAY_URL) must be a ws(s) URL, "
            f"got {value!r}.",
            hint="Example: wss://gateway.discord.gg/ or ws://127.0.0.1:8080/gateway.",
        )
    return url


def configure_endpoints(api_base: str | None, gateway_url: str | None) -> None:
    """Apply the overrides (None leaves discord.py's default in place)."""
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    if api_base:
        base = normalise_api_base(api_base)
        for route in {Route, *_webhook_routes()}:
            route.BASE = base
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(normalise_gateway_url(gateway_url))


def _webhook_routes() -> list[Any]:
    """The Route classes of discord.py's webhook adapters (interaction responses)."""
    from discord.webhook import async_, sync

    return [getattr(module, "Route", None) for module in (async_, sync) if hasattr(module, "Route")]
