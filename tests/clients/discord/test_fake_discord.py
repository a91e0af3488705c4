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


async def test_enforce_nonce_returns_the_first_message_and_500_after_create(
    fake: FakeDiscordServer,
) -> None:
    """As on Discord: with enforce_nonce a repeated nonce (same author, same channel) gets
    the first message back; without it, or from another author, it is a new message."""
    url = f"{fake.api_base}/channels/{fake.channel_id}/messages"
    other_token = "fake-bot-token-other-0123"
    fake.add_bot(other_token, "Other")
    async with aiohttp.ClientSession(headers=auth(fake)) as http:
        body = {"content": "once", "nonce": "42-r0", "enforce_nonce": True}
        async with http.post(url, json=body) as response:
            assert response.status == 200
            first = await response.json()
        async with http.post(url, json={**body, "content": "changed"}) as response:
            assert response.status == 200
            again = await response.json()
        assert again["id"] == first["id"] and again["content"] == "once"
        async with http.post(url, json={"content": "dup", "nonce": "42-r0"}) as response:
            assert (await response.json())["id"] != first["id"], "no enforce_nonce: a duplicate"
        headers = {"Authorization": f"Bot {other_token}"}
        other = {**body, "content": "other"}
        async with http.post(url, json=other, headers=headers) as response:
            assert (await response.json())["id"] != first["id"], "another author's nonce"
        fake.fail_after_create_next(1)
        retry = {"content": "flaky", "nonce": "43-r0", "enforce_nonce": True}
        async with http.post(url, json=retry) as response:
            assert response.status == 500
        async with http.post(url, json=retry) as response:
            assert response.status == 200
            created = await response.json()
        async with http.get(f"{url}/{created['id']}") as response:
            assert (await response.json())["content"] == "flaky"
        async with http.get(url, params={"after": first["id"], "limit": "2"}) as response:
            page = [m["content"] for m in await response.json()]
        assert page == ["other", "dup"], "the two right after, newest first (as Discord)"
    contents = [m.content for m in fake.sent_messages()]
    assert contents == ["once", "dup", "other", "flaky"]
    assert fake.nonce_hits == 2
