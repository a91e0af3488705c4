"""The fake Discord's interactions themselves, over plain HTTP: the refusals discord.py and
the commands depend on must be Discord's, or the slash command tests would pass against
something Discord is not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.fake_discord import FakeDiscordServer
from tests.support.fake_interactions import FLAG_EPHEMERAL, FLAG_LOADING


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscordServer]:
    server = FakeDiscordServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _post(url: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body, **kwargs) as response:
        return response.status, await response.json() if response.status != 204 else None


async def test_callback_once_within_the_deadline_then_follow_ups(fake: FakeDiscordServer) -> None:
    record = await fake.interactions.adispatch_command("ask", {"text": "hi"})
    callback = f"{fake.api_base}/interactions/{record.id}/{record.token}/callback"
    hook = f"{fake.api_base}/webhooks/{fake.app_id}/{record.token}"
    status, body = await _post(hook + "?wait=1", {"content": "too early"})
    assert (status, body["code"]) == (404, 10015), "no follow-up before the first answer"
    status, body = await _post(
        callback + "?with_response=1", {"type": 5, "data": {"flags": FLAG_EPHEMERAL}}
    )
    assert status == 200 and body["interaction"]["response_message_loading"]
    assert body["resource"]["message"]["flags"] == FLAG_EPHEMERAL | FLAG_LOADING
    status, body = await _post(callback, {"type": 4, "data": {"content": "again"}})
    assert (status, body["code"]) == (400, 40060)
    status, first = await _post(hook + "?wait=1", {"content": "one"})
    assert status == 200 and first["id"] == record.original["id"]  # type: ignore[index]
    assert first["flags"] == FLAG_EPHEMERAL, "the thinking message, ephemeral as deferred"
    status, second = await _post(hook + "?wait=1", {"content": "two"})
    assert status == 200 and second["id"] != first["id"] and second["flags"] == 0
    assert record.texts == ["one", "two"]
    status, body = await _post(hook + "?wait=1", {"content": "x" * 2001})
    assert (status, body["code"]) == (400, 50035)


async def test_late_unknown_and_expired_tokens_are_refused(fake: FakeDiscordServer) -> None:
    interactions = fake.interactions
    status, body = await _post(f"{fake.api_base}/interactions/1/nope/callback", {"type": 5})
    assert (status, body["code"], body["message"]) == (404, 10062, "Unknown interaction")
    interactions.ack_deadline = 0.0
    late = await interactions.adispatch_command("about")
    status, body = await _post(
        f"{fake.api_base}/interactions/{late.id}/{late.token}/callback", {"type": 5}
    )
    assert (status, body["code"]) == (404, 10062)
    interactions.ack_deadline = 3.0
    record = await interactions.adispatch_command("about")
    await _post(f"{fake.api_base}/interactions/{record.id}/{record.token}/callback", {"type": 5})
    interactions.expire(record)
    status, body = await _post(
        f"{fake.api_base}/webhooks/{fake.app_id}/{record.token}?wait=1", {"content": "late"}
    )
    assert (status, body["code"]) == (401, 50027)


async def test_command_sync_needs_the_bot_token_and_the_scope(fake: FakeDiscordServer) -> None:
    url = f"{fake.api_base}/applications/{fake.app_id}"
    auth = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.put(url + "/commands", json=[{"name": "ask"}]) as response:
            assert response.status == 401
        async with http.put(url + "/commands", json=[{"name": "ask"}], headers=auth) as response:
            commands = await response.json()
            assert response.status == 200 and commands[0]["name"] == "ask" and commands[0]["id"]
        fake.interactions.without_commands_scope.add(fake.guild_id)
        guild = f"{url}/guilds/{fake.guild_id}/commands"
        async with http.put(guild, json=[], headers=auth) as response:
            assert response.status == 403 and (await response.json())["code"] == 50001
    assert fake.interactions.sync_calls == [(fake.app_id, None, ["ask"])]
