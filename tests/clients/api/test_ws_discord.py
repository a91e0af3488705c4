"""A Discord message arriving in a room a WebSocket client follows: `carrier serve --client
discord` (the real process, discord.py against the fake Discord server) shares its runtime
with the API, so the Discord turn's events reach `/v1/ws` subscribers of that room."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator

import pytest

from tests.clients.api.ws_client import authed, recv, send, subscribe, until
from tests.support.api_server import ServeProcess, start_serve, write_character
from tests.support.fake_discord import FakeDiscordServer, fake_discord_fixture
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.service]

AGENT = "Carrier"
GUILD = "100000000000000001"
CHANNEL = "200000000000000001"


discord = fake_discord_fixture({GUILD: [CHANNEL]})


@pytest.fixture(scope="module")
def serve(
    model: ModelServerProcess,
    discord: FakeDiscordServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("ws-discord")
    character = write_character(root / "carrier.yaml", AGENT)
    process = start_serve(
        root / "home",
        model.url,
        characters=[character],
        args=["--client", "discord"],
        env=discord.env(),
    )
    try:
        discord.wait_for(lambda: discord.connected, 30, "the bot to connect")
        yield process
    finally:
        process.terminate()


def stored(serve: ServeProcess, query: str, *args: object) -> list[tuple[object, ...]]:
    """Read the server's SQLite database (the test's independent view of what it stored)."""
    db = sqlite3.connect(serve.home / "data" / "carrier.db", timeout=10)
    try:
        return db.execute(query, args).fetchall()
    finally:
        db.close()


def as_uuid(value: object) -> str:
    return str(uuid.UUID(str(value)))


async def test_discord_messages_reach_a_subscribed_websocket(
    serve: ServeProcess, discord: FakeDiscordServer
) -> None:
    first = discord.dispatch_message("first hello", channel_id=CHANNEL, mention_bot=True)
    first_reply = discord.wait_reply(first)
    rooms = stored(
        serve, "SELECT id FROM rooms WHERE source = 'discord' AND external_id = ?", CHANNEL
    )
    assert len(rooms) == 1
    room_id = as_uuid(rooms[0][0])
    messages = stored(
        serve,
        "SELECT id FROM memories WHERE room_id = ? AND kind = 'message' ORDER BY created_at",
        rooms[0][0],
    )
    assert len(messages) == 2  # the message and the bot's reply
    first_id = as_uuid(messages[0][0])

    ws = await authed(serve.url, serve.key)
    try:
        # By room id, replaying what came after the first message: the bot's reply.
        subscribed = await subscribe(ws, AGENT, room_id, since=first_id)
        assert subscribed["room"]["source"] == "discord"
        assert subscribed["room"]["key"] == CHANNEL
        replayed = await until(ws, lambda f: f["type"] == "replayed")
        assert replayed[-1]["count"] == 1
        assert replayed[0]["data"]["message"]["text"] == first_reply.content
        assert replayed[0]["data"]["message"]["sender"]["agent"] is True

        second = discord.dispatch_message("second hello", channel_id=CHANNEL, mention_bot=True)
        frames = await until(ws, lambda f: f["type"] == "reply.completed")
        second_reply = discord.wait_reply(second)
        created = [f for f in frames if f["type"] == "message.created"]
        assert len(created) == 2
        incoming, reply = created
        assert "second hello" in incoming["data"]["message"]["text"]
        assert incoming["data"]["message"]["source"] == "discord"
        assert incoming["data"]["message"]["sender"]["agent"] is False
        assert incoming["data"]["room"]["id"] == room_id == incoming["room"]
        assert reply["data"]["message"]["sender"]["agent"] is True
        assert reply["data"]["message"]["in_reply_to"] == incoming["id"]
        assert frames[-1]["data"]["reply"]["text"] == second_reply.content
        assert reply["data"]["message"]["text"] == second_reply.content
        typing = [f["data"]["state"] for f in frames if f["type"] == "typing"]
        assert typing == ["start", "stop"]

        # Subscribing to any room is fine; sending goes to API rooms only.
        await send(
            ws,
            {"type": "message", "agent": AGENT, "room": room_id, "text": "hi", "client_id": "d"},
        )
        error = await recv(ws)
        assert error["code"] == "invalid_room" and error["client_id"] == "d"
    finally:
        await ws.close()
