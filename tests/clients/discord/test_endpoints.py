"""The configured Discord API base reaches discord.py's webhook adapter, which answers
interactions (callback, follow-ups, @original), not only the bot's HTTPClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from discord.http import Route
from discord.webhook import async_

from carrier_cli.clients.discord.endpoints import configure_endpoints

BASE = "http://127.0.0.1:9/api/v10"


@pytest.fixture(autouse=True)
def restore_base() -> Iterator[None]:
    saved = Route.BASE, async_.Route.BASE
    Route.BASE = async_.Route.BASE = "https://discord.com/api/v10"
    try:
        yield
    finally:
        Route.BASE, async_.Route.BASE = saved


def test_interaction_callbacks_and_follow_ups_use_the_configured_base() -> None:
    configure_endpoints("http://127.0.0.1:9", None)
    adapter_route = async_.Route
    callback = adapter_route(
        "POST",
        "/interactions/{webhook_id}/{webhook_token}/callback",
        webhook_id=1,
        webhook_token="t",
    )
    follow_up = adapter_route(
        "POST", "/webhooks/{webhook_id}/{webhook_token}", webhook_id=2, webhook_token="t"
    )
    assert callback.url == f"{BASE}/interactions/1/t/callback"
    assert follow_up.url == f"{BASE}/webhooks/2/t"


def test_a_webhook_route_class_of_its_own_gets_the_base_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As discord.py 1.x had: the adapter's own Route (and BASE), not http.Route."""

    class OwnRoute(Route):
        BASE = "https://discord.com/api/v10"

    monkeypatch.setattr(async_, "Route", OwnRoute)
    configure_endpoints("http://127.0.0.1:9", None)
    assert OwnRoute("POST", "/webhooks/1/t").url == f"{BASE}/webhooks/1/t"
