"""The fake Discord itself: the details discord.py depends on must hold, or the end-to-end
tests would pass against something real Discord is not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.fake_discord import FakeDiscordServer


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscordServer]:
    server = FakeDiscordServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def auth(server: FakeDiscordServer) -> dict[str, str]:
    return {"Authorization": f"Bot {server.token}"}


async def test_rest_auth_and_exact_json_content_type(fake: FakeDiscordServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(fake.api_base + "/users/@me") as response:
            assert response.status == 401
            assert (await response.json())["message"] == "401: Unauthorized"
        async with http.get(fake.api_base + "/users/@me", headers=auth(fake)) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            assert (await response.json())["id"] == fake.bot_id
        async with http.get(
            fake.api_base + "/oauth2/applications/@me", headers=auth(fake)
        ) as response:
            assert (await response.json())["bot"]["id"] == fake.bot_id


async def test_message_limits_and_rate_limit_shape(fake: FakeDiscordServer) -> None:
    url = f"{fake.api_base}/channels/{fake.channel_id}/messages"
    async with aiohttp.ClientSession(headers=auth(fake)) as http:
        async with http.post(url, json={"content": "x" * 2001}) as response:
            assert response.status == 400
            assert (await response.json())["code"] == 50035
        async with http.post(url, json={"content": ""}) as response:
            assert response.status == 400
        fake.rate_limit_next(1, retry_after=0.5)
        async with http.post(url, json={"content": "hi"}) as response:
            assert response.status == 429
            assert response.headers["Via"] and response.headers["Retry-After"] == "1"
            assert response.headers["X-RateLimit-Remaining"] == "0"
            body = await response.json()
            assert body["retry_after"] == 0.5 and body["global"] is False
        async with http.post(url, json={"content": "hi"}) as response:
            assert response.status == 200
            assert (await response.json())["author"]["id"] == fake.bot_id
        async with http.post(f"{fake.api_base}/channels/{fake.channel_id}/typing") as response:
            assert response.status == 204
    assert [m.content for m in fake.sent_messages()] == ["hi"]


async def test_gateway_hello_identify_ready_and_resume_replay(fake: FakeDiscordServer) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(fake.gateway_url)
        hello = await ws.receive_json()
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
        await ws.send_json({"op": 1, "d": None})
        assert (await ws.receive_json())["op"] == 11
        await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 37377}})
        ready = await ws.receive_json()
        assert ready["t"] == "READY" and ready["d"]["resume_gateway_url"].endswith("/resume")
        assert (await ws.receive_json())["t"] == "GUILD_CREATE"
        session, seq = ready["d"]["session_id"], 2
        await fake.aclose_gateway(4000)
        await ws.receive()
        assert ws.close_code == 4000
        missed = await fake.adispatch_message("while away", dm=True)
        ws = await http.ws_connect(ready["d"]["resume_gateway_url"])
        await ws.receive_json()  # HELLO
        await ws.send_json({"op": 6, "d": {"token": fake.token, "session_id": session, "seq": seq}})
        replayed = await ws.receive_json()
        assert replayed["t"] == "MESSAGE_CREATE" and replayed["d"]["id"] == missed["id"]
        assert "guild_id" not in replayed["d"], "a DM has no guild"
        assert (await ws.receive_json())["t"] == "RESUMED"
        await ws.close()


async def test_refused_intents_and_bad_token_close_codes(fake: FakeDiscordServer) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(fake.gateway_url)
        await ws.receive_json()
        await ws.send_json({"op": 2, "d": {"token": "wrong"}})
        await ws.receive()
        assert ws.close_code == 4004
        fake.refuse_intents = True
        ws = await http.ws_connect(fake.gateway_url)
        await ws.receive_json()
        await ws.send_json({"op": 2, "d": {"token": fake.token}})
        await ws.receive()
        assert ws.close_code == 4014
