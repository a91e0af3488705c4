"""`/v1/ws` end to end: a real `carrier serve` process, the fake model server and the
`websockets` library as the client. One server serves the module; every test talks in its
own rooms so their events do not mix."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.clients.api.ws_client import (
    Frame,
    authed,
    closed_code,
    completed_for,
    is_type,
    open_ws,
    recv,
    send,
    subscribe,
    until,
)
from tests.support.api_server import ServeProcess, serve_env, start_serve, write_character
from tests.support.model_server import ModelServerProcess, Reply

pytestmark = [pytest.mark.slow, pytest.mark.service]

AGENT = "Carrier"
# No fact evaluator calls: the model server's scripted replies go to the turns they are for.
NO_FACTS = "settings:\n  fact_interval: 1000000\n"


@pytest.fixture(scope="module")
def serve(
    model: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("ws")
    character = write_character(root / "carrier.yaml", AGENT, NO_FACTS)
    # No rate limit here: the tests send hundreds of messages with one key (the limit on
    # WebSocket messages has its own test and server).
    env = {"CARRIER_API_RATE_LIMIT": "0"}
    process = start_serve(root / "home", model.url, characters=[character], env=env)
    try:
        assert process.key
        yield process
    finally:
        process.terminate()


def api_keys(serve: ServeProcess, model: ModelServerProcess, *args: str) -> str:
    """`carrier api-keys ...` (the real CLI) against the server's database; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "api-keys", *args],
        cwd=serve.home.parent,
        env=serve_env(serve.home, model.url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def read_key(serve: ServeProcess, model: ModelServerProcess) -> str:
    return api_keys(serve, model, "create", "reader", "--scope", "read").splitlines()[-1]


def message(room: str, text: str, client_id: str, **extra: object) -> dict[str, object]:
    return {
        "type": "message",
        "agent": AGENT,
        "room": room,
        "text": text,
        "client_id": client_id,
        **extra,
    }


# -- authentication ------------------------------------------------------------------------------
async def test_auth_by_subprotocol_and_app_level_ping(serve: ServeProcess) -> None:
    ws = await open_ws(serve.url, serve.key)
    try:
        assert ws.subprotocol == "carrier.v1"
        first = await recv(ws)
        assert first["type"] == "authenticated"
        assert first["scope"] == "admin" and first["agents"] == [AGENT]
        assert serve.key not in json.dumps(first)
        await send(ws, {"type": "ping", "id": 7})
        assert await recv(ws) == {"type": "pong", "id": 7}
    finally:
        await ws.close()


async def test_auth_by_first_frame(serve: ServeProcess) -> None:
    ws = await open_ws(serve.url, serve.key, first_frame_auth=True)
    try:
        assert ws.subprotocol is None
        await send(ws, {"type": "auth", "key": serve.key})
        first = await recv(ws)
        assert first["type"] == "authenticated" and first["key_name"] == "admin"
        await subscribe(ws, AGENT, "auth-first")
    finally:
        await ws.close()


async def test_no_auth_frame_within_five_seconds_is_closed_4401(serve: ServeProcess) -> None:
    began = time.monotonic()
    ws = await open_ws(serve.url, None)
    code, frames = await closed_code(ws)
    assert code == 4401
    assert [f["code"] for f in frames] == ["auth_timeout"]
    assert 4.5 <= time.monotonic() - began < 15


@pytest.mark.parametrize("query", ["key={key}", "api_key={key}", "token=x"])
async def test_key_in_url_is_refused_even_when_valid(serve: ServeProcess, query: str) -> None:
    assert serve.key
    ws = await open_ws(serve.url, serve.key, query=query.format(key=serve.key))
    code, frames = await closed_code(ws)
    assert code == 1008
    assert [f["code"] for f in frames] == ["key_in_url"]
    assert serve.key not in json.dumps(frames)


async def test_wrong_key_is_closed_4401_by_subprotocol_and_by_frame(serve: ServeProcess) -> None:
    wrong = "crr_" + "x" * 40
    ws = await open_ws(serve.url, wrong)
    code, frames = await closed_code(ws)
    assert code == 4401 and [f["code"] for f in frames] == ["unauthorized"]
    assert wrong not in json.dumps(frames)

    ws = await open_ws(serve.url, wrong, first_frame_auth=True)
    await send(ws, {"type": "auth", "key": wrong})
    code, frames = await closed_code(ws)
    assert code == 4401 and [f["code"] for f in frames] == ["unauthorized"]

    ws = await open_ws(serve.url, None)  # anything but auth first
    await send(ws, {"type": "subscribe", "agent": AGENT, "room": "r1"})
    code, frames = await closed_code(ws)
    assert code == 4401 and [f["code"] for f in frames] == ["unauthorized"]


async def test_a_revoked_key_is_refused(serve: ServeProcess, model: ModelServerProcess) -> None:
    key = api_keys(serve, model, "create", "short-lived", "--scope", "chat").splitlines()[-1]
    ws = await authed(serve.url, key)
    await ws.close()
    api_keys(serve, model, "revoke", "short-lived")
    ws = await open_ws(serve.url, key)
    code, frames = await closed_code(ws)
    assert code == 4401 and [f["code"] for f in frames] == ["unauthorized"]


async def test_read_key_can_subscribe_but_not_send(serve: ServeProcess, read_key: str) -> None:
    ws = await authed(serve.url, read_key)
    try:
        await subscribe(ws, AGENT, "read-only")
        await send(ws, message("read-only", "hello?", "r-1"))
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == "forbidden"
        assert error["client_id"] == "r-1" and "chat" in error["message"]
        await send(ws, {"type": "ping"})
        assert (await recv(ws))["type"] == "pong"  # still open
    finally:
        await ws.close()


# -- conversation --------------------------------------------------------------------------------
def frame_text(frame: dict[str, object]) -> str:
    data = frame["data"]
    assert isinstance(data, dict)
    return str(data["message"]["text"])


async def test_two_clients_see_each_others_messages_and_replies(serve: ServeProcess) -> None:
    a = await authed(serve.url, serve.key)
    b = await authed(serve.url, serve.key)
    try:
        await subscribe(a, AGENT, "shared")
        await subscribe(b, AGENT, "shared")
        await send(a, message("shared", "hello from A", "a-1", sender={"id": "ada", "name": "Ada"}))
        seen_by_b = await until(b, is_type("reply.completed"))
        seen_by_a = await until(a, completed_for("a-1"))

        kinds = [f["type"] for f in seen_by_b]
        assert kinds[0] == "message.created" and frame_text(seen_by_b[0]) == "hello from A"
        sender = seen_by_b[0]["data"]["message"]["sender"]
        assert sender["key"] == "ada" and sender["name"] == "Ada" and sender["agent"] is False
        assert kinds[1] == "typing" and seen_by_b[1]["data"]["state"] == "start"
        typing_stop = next(i for i, f in enumerate(seen_by_b) if f["type"] == "typing" and i > 1)
        assert seen_by_b[typing_stop]["data"]["state"] == "stop"
        assert set(kinds[2:typing_stop]) == {"reply.token"}
        assert kinds[typing_stop + 1 :] == ["message.created", "reply.completed"]
        for frame in seen_by_b:
            assert set(frame) >= {"id", "type", "created", "data", "agent", "room"}
            assert frame["agent"] == AGENT and "client_id" not in frame  # not B's message
        # The deltas are the reply; every frame names the same reply id.
        tokens = [f for f in seen_by_b if f["type"] == "reply.token"]
        completed = seen_by_b[-1]["data"]["reply"]
        assert (
            "".join(t["data"]["text"] for t in tokens) == completed["text"] == "Echo: hello from A"
        )
        reply_created = seen_by_b[-2]
        assert {t["data"]["reply_id"] for t in tokens} == {completed["id"]} == {reply_created["id"]}
        assert reply_created["data"]["message"]["sender"]["agent"] is True
        # A, the sender, saw the same and its own events carry its client_id.
        assert [f["type"] for f in seen_by_a] == kinds
        assert all(f.get("client_id") == "a-1" for f in seen_by_a if f["type"] != "typing")

        await send(b, message("shared", "and hello from B", "b-1"))
        seen = await until(a, is_type("reply.completed"))
        assert frame_text(seen[0]) == "and hello from B"
        assert seen[-1]["data"]["reply"]["text"] == "Echo: and hello from B"
        await until(b, completed_for("b-1"))
    finally:
        await a.close()
        await b.close()


async def test_sender_gets_its_reply_without_subscribing(serve: ServeProcess) -> None:
    ws = await authed(serve.url, serve.key)
    try:
        await send(ws, message("unsubscribed", "just me", "solo"))
        frames = await until(ws, completed_for("solo"))
        assert all(f.get("client_id") == "solo" for f in frames)
        tokens = "".join(f["data"]["text"] for f in frames if f["type"] == "reply.token")
        assert tokens == frames[-1]["data"]["reply"]["text"] == "Echo: just me"
        assert "typing" not in {f["type"] for f in frames}  # room events need a subscription
    finally:
        await ws.close()


async def test_unsubscribe_stops_the_room_events(serve: ServeProcess) -> None:
    quiet = await authed(serve.url, serve.key)
    talker = await authed(serve.url, serve.key)
    try:
        await subscribe(quiet, AGENT, "leave-me")
        await send(quiet, {"type": "unsubscribe", "agent": AGENT, "room": "leave-me"})
        assert (await recv(quiet))["type"] == "unsubscribed"
        await send(talker, message("leave-me", "anyone there?", "t-1"))
        await until(talker, completed_for("t-1"))
        await asyncio.sleep(0.2)
        await send(quiet, {"type": "ping", "id": "after"})
        assert await recv(quiet) == {"type": "pong", "id": "after"}  # nothing came before it
    finally:
        await quiet.close()
        await talker.close()


# -- bad frames ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ("{not json", "invalid_json", None),
        ('{"type": "ping", "id": ' + "9" * 5000 + "}", "invalid_json", None),
        ("[" * 100_000 + "]" * 100_000, "invalid_json", None),
        ("[1, 2]", "invalid_frame", "type"),
        ('{"agent": "Carrier"}', "invalid_frame", "type"),
        ('{"type": "shout"}', "invalid_frame", "type"),
        ('{"type": "subscribe", "agent": "Carrier"}', "invalid_frame", "room"),
        ('{"type": "subscribe", "agent": "Nobody", "room": "r1"}', "not_found", "agent"),
        (
            '{"type": "subscribe", "agent": "Carrier", "room": "' + str(uuid.UUID(int=1)) + '"}',
            "not_found",
            "room",
        ),
        (
            '{"type": "subscribe", "agent": "Carrier", "room": "r1", "since": "abc"}',
            "invalid_frame",
            "since",
        ),
        (
            '{"type": "message", "agent": "Carrier", "room": "r1", "text": "", "client_id": "c9"}',
            "invalid_frame",
            "text",
        ),
        (
            '{"type": "message", "agent": "Carrier", "room": "r1", "text": 5}',
            "invalid_frame",
            "text",
        ),
        (
            '{"type": "message", "agent": "Carrier", "room": "r1", "text": "' + "x" * 32_001 + '"}',
            "invalid_frame",
            "text",
        ),
        ('{"type": "auth", "key": "again"}', "already_authenticated", None),
    ],
)
async def test_invalid_frames_get_an_error_frame_and_the_connection_stays(
    serve: ServeProcess, frame: str, code: str, field: str | None
) -> None:
    ws = await authed(serve.url, serve.key)
    try:
        await ws.send(frame)
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == code, error
        assert error.get("field") == field
        if field:
            assert f"`{field}`" in error["message"] or field in error["message"].lower()
        if '"client_id": "c9"' in frame:
            assert error["client_id"] == "c9"
        await send(ws, {"type": "ping"})
        assert (await recv(ws))["type"] == "pong"
    finally:
        await ws.close()


# -- replay --------------------------------------------------------------------------------------
async def test_reconnect_with_since_replays_missed_messages_exactly_once(
    serve: ServeProcess,
) -> None:
    room = "replay"
    first = await authed(serve.url, serve.key)
    await subscribe(first, AGENT, room)
    await send(first, message(room, "one", "m1"))
    seen = await until(first, completed_for("m1"))
    last_id = [f for f in seen if f["type"] == "message.created"][-1]["id"]
    await first.close()

    other = await authed(serve.url, serve.key)
    try:
        for n in ("two", "three"):
            await send(other, message(room, n, n))
            await until(other, completed_for(n))

        again = await authed(serve.url, serve.key)
        try:
            # A live message lands while the replay is being read: still exactly once.
            await send(other, message(room, "four", "four"))
            await subscribe(again, AGENT, room, since=last_id)
            # Until the replay is over and the reply to "four" was seen, replayed or live.
            # (Not its reply.completed: a live event, which a turn done before the
            # subscription sent to nobody; 2 of 6 runs once turns got faster.)
            got: set[str] = set()

            def replay_and_reply_seen(f: Frame) -> bool:
                if f["type"] == "replayed":
                    got.add("replayed")
                elif f["type"] == "message.created" and frame_text(f) == "Echo: four":
                    got.add("reply")
                return got == {"replayed", "reply"}

            frames = await until(again, replay_and_reply_seen)
            done = next(f for f in frames if f["type"] == "replayed")
            assert done["truncated"] is False and done["since"] == last_id
            created = [f for f in frames if f["type"] == "message.created"]
            ids = [f["id"] for f in created]
            assert len(ids) == len(set(ids)), "a message was sent twice"
            texts = [frame_text(f) for f in created]
            assert texts == ["two", "Echo: two", "three", "Echo: three", "four", "Echo: four"]
            replayed = [f for f in created if f.get("replay")]
            assert done["count"] == len(replayed) >= 4
            assert last_id not in ids
            await until(other, completed_for("four"))
        finally:
            await again.close()
    finally:
        await other.close()


async def test_replay_skips_what_this_connection_already_saw(serve: ServeProcess) -> None:
    ws = await authed(serve.url, serve.key)
    try:
        await send(ws, message("seen", "first", "s1"))
        seen = await until(ws, completed_for("s1"))
        await send(ws, message("seen", "second", "s2"))  # its events reach ws unsubscribed
        await until(ws, completed_for("s2"))
        await subscribe(ws, AGENT, "seen", since=seen[0]["id"])
        frames = await until(ws, is_type("replayed"))
        assert frames == [frames[-1]] and frames[-1]["count"] == 0
    finally:
        await ws.close()


async def test_since_from_another_room_is_refused(serve: ServeProcess) -> None:
    ws = await authed(serve.url, serve.key)
    try:
        await subscribe(ws, AGENT, "room-x")
        await send(ws, message("room-x", "in x", "x1"))
        frames = await until(ws, completed_for("x1"))
        await send(
            ws, {"type": "subscribe", "agent": AGENT, "room": "room-y", "since": frames[0]["id"]}
        )
        error = await recv(ws)
        assert error["code"] == "not_found" and error["field"] == "since"
    finally:
        await ws.close()


# -- back-pressure -------------------------------------------------------------------------------
async def test_slow_consumer_is_closed_4008_and_the_server_stays_healthy(
    serve: ServeProcess, model: ModelServerProcess
) -> None:
    # One room per turn keeps the prompts small; at most 30 turns (30 MB of frames).
    rooms = [f"flood-{n}" for n in range(30)]
    # No compression: the frames below would deflate to almost nothing.
    slow = await authed(serve.url, serve.key, recv_buffer=4096, max_queue=1, compression=None)
    fast = await authed(serve.url, serve.key)
    try:
        for room in rooms:
            await subscribe(slow, AGENT, room)
        # Each reply streams 300 deltas of 1,000 characters: about 1 MB of frames per turn
        # for the slow client, which reads nothing now. Flood until the server says it let
        # the slow consumer go (however much the kernel's socket buffers hold here).
        body = "y" * 996
        chunks = ["<response><thought>t</thought><actions>REPLY</actions><text>"]
        chunks += [f"{i:03d} {body}" for i in range(300)] + ["</text></response>"]
        produced = 0
        for turn, room in enumerate(rooms):
            model.push(Reply(text="".join(chunks), chunks=chunks))
            await send(fast, message(room, f"flood {turn}", f"f{turn}"))
            frames = await until(fast, completed_for(f"f{turn}"), timeout=60)
            produced += len(frames)
            if "slow consumer" in serve.stderr:
                break
        assert "slow consumer" in serve.stderr, f"{produced} frames did not overflow"
        # The server is fine: it answers HTTP, old and new connections.
        async with httpx.AsyncClient() as client:
            assert (await client.get(serve.url + "/healthz")).status_code == 200
        await send(fast, {"type": "ping"})
        assert (await recv(fast))["type"] == "pong"
        fresh = await authed(serve.url, serve.key)
        await fresh.close()

        code, received = await closed_code(slow, timeout=30)
        assert code == 4008
        assert len(received) < produced  # frames were dropped, not buffered without bound
        assert "slow consumer" in serve.stderr and "Traceback" not in serve.stderr
    finally:
        await fast.close()
        await slow.close()


async def test_replay_is_bounded_and_says_what_was_missed(serve: ServeProcess) -> None:
    room = "long-gone"
    ws = await authed(serve.url, serve.key)
    try:
        await subscribe(ws, AGENT, room)
        await send(ws, message(room, "the start", "start"))
        start = await until(ws, completed_for("start"))
        since = start[0]["id"]  # the first message: 201 messages and more come after it
        await ws.close()
        ws = await authed(serve.url, serve.key)
        for n in range(101):
            await send(ws, message(room, f"filler {n}", f"n{n}"))
            await until(ws, completed_for(f"n{n}"))
        await ws.close()
        ws = await authed(serve.url, serve.key)
        await subscribe(ws, AGENT, room, since=since)
        frames = await until(ws, is_type("replayed"))
        done = frames[-1]
        assert done["truncated"] is True and done["count"] == 200
        assert "200" in done["message"] and "/messages" in done["message"]
        texts = [frame_text(f) for f in frames[:-1]]
        assert len(texts) == 200 and texts[-1] == "Echo: filler 100"
        assert texts[0] == "filler 1"  # the newest 200 of the 203 after `since`
    finally:
        await ws.close()


async def test_sigterm_closes_open_websockets_and_finishes_the_turn(
    model: ModelServerProcess, tmp_path: Path
) -> None:
    character = write_character(tmp_path / "carrier.yaml", AGENT, NO_FACTS)
    own = start_serve(tmp_path / "home", model.url, characters=[character])
    try:
        idle = await authed(own.url, own.key)
        busy = await authed(own.url, own.key)
        await subscribe(idle, AGENT, "bye")
        model.push(Reply(text=None, delay=1.0))  # the turn is in flight at SIGTERM
        await send(busy, message("bye", "slow one", "slow"))
        await until(idle, is_type("typing"))
        began = time.monotonic()
        own.process.send_signal(signal.SIGTERM)
        code, _ = await closed_code(idle, timeout=15)
        assert code in (1001, 1012)
        assert await asyncio.to_thread(own.process.wait, 20) == 0
        # The turn finished (its reply is checked below) and the process left on its own;
        # the bound only catches a hang after the drain (10 s failed at 11.5 s with four
        # test workers on two loaded cores).
        assert time.monotonic() - began < 20
    finally:
        own.kill()
    # The turn in flight was finished, not cut: its reply is stored.
    db = sqlite3.connect(tmp_path / "home" / "data" / "carrier.db")
    try:
        texts = [
            json.loads(r[0])["text"]
            for r in db.execute("SELECT content FROM memories WHERE kind = 'message'")
        ]
    finally:
        db.close()
    assert "slow one" in texts and "Echo: slow one" in texts


def docs_snippet() -> str:
    text = (Path(__file__).resolve().parents[3] / "docs" / "websocket.md").read_text()
    return text.split("```js\n", 1)[1].split("```", 1)[0]


async def test_the_browser_snippet_in_the_docs_works(serve: ServeProcess, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    assert serve.key
    script = docs_snippet()
    assert 'const API = "ws://127.0.0.1:8000/v1/ws";' in script
    script = script.replace("ws://127.0.0.1:8000", serve.url.replace("http://", "ws://"))
    script = script.replace("crr_your_chat_key", serve.key)
    (tmp_path / "snippet.mjs").write_text(script)
    done = await asyncio.to_thread(
        subprocess.run,
        [node, "--experimental-websocket", str(tmp_path / "snippet.mjs")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "reply: Echo: hi" in done.stdout, done.stdout + done.stderr
    assert "closed:" in done.stdout and "error:" not in done.stdout + done.stderr


@pytest.mark.postgres
async def test_round_trip_and_replay_on_postgresql(
    model: ModelServerProcess, postgres_url: str, tmp_path: Path
) -> None:
    character = write_character(tmp_path / "carrier.yaml", AGENT, NO_FACTS)
    own = start_serve(
        tmp_path / "home",
        model.url,
        characters=[character],
        env={"CARRIER_DATABASE_URL": postgres_url},
    )
    try:
        a = await authed(own.url, own.key)
        b = await authed(own.url, own.key)
        await subscribe(a, AGENT, "pg")
        await subscribe(b, AGENT, "pg")
        await send(a, message("pg", "on postgres", "p1"))
        seen = await until(b, is_type("reply.completed"))
        assert seen[-1]["data"]["reply"]["text"] == "Echo: on postgres"
        await until(a, completed_for("p1"))
        since = seen[0]["id"]
        await b.close()
        await send(a, message("pg", "while b was away", "p2"))
        await until(a, completed_for("p2"))
        b = await authed(own.url, own.key)
        await subscribe(b, AGENT, "pg", since=since)
        frames = await until(b, is_type("replayed"))
        assert [frame_text(f) for f in frames[:-1]] == [
            "Echo: on postgres",
            "while b was away",
            "Echo: while b was away",
        ]
        await a.close()
        await b.close()
    finally:
        own.terminate()
    assert not (tmp_path / "home" / "data" / "carrier.db").exists()  # it was PostgreSQL


async def test_a_rest_message_reaches_the_rooms_websocket(serve: ServeProcess) -> None:
    ws = await authed(serve.url, serve.key)
    try:
        await subscribe(ws, AGENT, "rest-room")
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(
                f"{serve.url}/v1/agents/{AGENT}/messages",
                headers=serve.headers(),
                json={"room": "rest-room", "text": "via rest"},
            )
        if answer.status_code == 404 and "No such endpoint" in answer.text:
            pytest.skip("POST /v1/agents/{agent}/messages is not on this branch yet")
        assert answer.status_code == 200, answer.text
        frames = await until(ws, is_type("reply.completed"))
        created = [f for f in frames if f["type"] == "message.created"]
        assert [frame_text(f) for f in created] == ["via rest", "Echo: via rest"]
        assert created[0]["id"] == answer.json()["message_id"]
        assert frames[-1]["data"]["reply"]["text"] == answer.json()["reply"]["text"]
    finally:
        await ws.close()


async def test_messages_count_against_the_keys_rate_limit(
    model: ModelServerProcess, tmp_path: Path
) -> None:
    character = write_character(tmp_path / "carrier.yaml", AGENT, NO_FACTS)
    env = {"CARRIER_API_RATE_LIMIT": "2"}
    own = start_serve(tmp_path / "home", model.url, characters=[character], env=env)
    try:
        ws = await authed(own.url, own.key)
        for n in range(2):
            await send(ws, message("limited", f"m{n}", f"ok{n}"))
            await until(ws, completed_for(f"ok{n}"))
        await send(ws, message("limited", "one too many", "over"))
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == "rate_limited"
        assert error["client_id"] == "over" and "Retry after" in error["hint"]
        await send(ws, {"type": "ping"})
        assert (await recv(ws))["type"] == "pong"  # subscribing and pings are not limited
        await ws.close()
    finally:
        own.terminate()
