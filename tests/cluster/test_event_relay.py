"""Cross-process events: two real `carrier serve` processes on one PostgreSQL and one Redis.

A message posted to A over REST reaches a WebSocket subscribed on B (message.created for
the incoming message and the reply, the streamed reply.token deltas, reply.completed),
each exactly once, and a subscriber on A does not get A's events twice through Redis. A
Redis restart is survived (logged both ways); a REDIS_URL with nothing behind it stops
`carrier serve` and `carrier run` with one paragraph and exit 1. The cross-process latency
(event created on A -> frame on B) is printed as p50/p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.api.ws_client import authed, is_type, recv, subscribe, until
from tests.support.api_server import ServeProcess, serve_env, start_serve, write_character
from tests.support.model_server import ModelServerProcess
from tests.support.redis_server import RedisServer, free_port, start_redis

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.postgres]

AGENT = "Carrier"
NO_FACTS = "settings:\n  fact_interval: 1000000\n"
MESSAGES = f"/v1/agents/{AGENT}/messages"


@dataclass
class Cluster:
    a: ServeProcess
    b: ServeProcess
    redis: RedisServer
    key: str
    env: dict[str, str]
    character: Path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def cluster(
    model: ModelServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin_url: str,
) -> Iterator[Cluster]:
    from tests.support.postgres import _run, with_database

    root = tmp_path_factory.mktemp("xevents")
    redis = start_redis(root)
    name = f"carrier_xev_{uuid.uuid4().hex[:12]}"
    _run(postgres_admin_url, f'CREATE DATABASE "{name}"')
    env = {
        "DATABASE_URL": with_database(postgres_admin_url, name),
        "REDIS_URL": redis.url,
        "CARRIER_API_RATE_LIMIT": "0",
    }
    character = write_character(root / "carrier.yaml", AGENT, NO_FACTS)
    started: list[ServeProcess] = []
    try:
        # A first: it creates the schema and the first admin key, which B (same database)
        # then accepts too.
        a = start_serve(root / "home-a", model.url, characters=[character], env=env)
        started.append(a)
        assert a.key
        b = start_serve(root / "home-b", model.url, characters=[character], env=env)
        started.append(b)
        assert b.key is None  # the database already had a key
        yield Cluster(a, b, redis, a.key, env, character)
    finally:
        for process in started:
            with contextlib.suppress(Exception):
                process.terminate()
        redis.stop()
        with contextlib.suppress(Exception):
            _run(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def drain(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """Whatever else arrives within `seconds` (a duplicate would)."""
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            frames.append(await recv(ws, seconds))
    return frames


def message_frames(frames: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [
        f for f in frames if f["type"] == "message.created" and f["data"]["message"]["text"] == text
    ]


async def post_streamed(cluster: Cluster, room: str, text: str) -> str:
    """POST to A with `stream: true`; the SSE body."""
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(
            cluster.a.url + MESSAGES,
            json={"room": room, "text": text, "stream": True},
            headers=cluster.headers(),
        )
        assert r.status_code == 200, r.text
        return r.text


async def test_a_message_posted_to_a_reaches_a_websocket_on_b_once(cluster: Cluster) -> None:
    on_b = await authed(cluster.b.url, cluster.key)
    on_a = await authed(cluster.a.url, cluster.key)
    try:
        await subscribe(on_b, AGENT, "across")
        await subscribe(on_a, AGENT, "across")
        body = await post_streamed(cluster, "across", "hello from A")
        assert "event: done" in body
        seen_b = await until(on_b, is_type("reply.completed"))
        seen_b += await drain(on_b, 1.0)
        seen_a = await until(on_a, is_type("reply.completed"))
        seen_a += await drain(on_a, 0.5)

        for seen in (seen_b, seen_a):
            ids = [(f["type"], f["id"]) for f in seen]
            assert len(ids) == len(set(ids)), f"an event arrived twice: {ids}"
            incoming = message_frames(seen, "hello from A")
            assert len(incoming) == 1
            assert incoming[0]["data"]["message"]["sender"]["agent"] is False
            completed = [f for f in seen if f["type"] == "reply.completed"]
            assert len(completed) == 1
            reply = completed[0]["data"]["reply"]
            assert reply["text"] == "Echo: hello from A"
            replies = [
                f
                for f in seen
                if f["type"] == "message.created" and f["data"]["message"]["sender"]["agent"]
            ]
            assert [f["id"] for f in replies] == [reply["id"]]
            tokens = [f for f in seen if f["type"] == "reply.token"]
            assert tokens, "no reply.token frames"
            assert "".join(t["data"]["text"] for t in tokens) == reply["text"]
            assert {t["data"]["reply_id"] for t in tokens} == {reply["id"]}
            assert all(f["agent"] == AGENT and f.get("room") for f in seen)
        # B saw the same events as A (which ran the turn), in the same order.
        assert [(f["type"], f["id"]) for f in seen_b] == [(f["type"], f["id"]) for f in seen_a]
    finally:
        await on_b.close()
        await on_a.close()


async def test_a_turn_on_b_reaches_a_websocket_on_a(cluster: Cluster) -> None:
    """The other way round: every server both publishes and receives."""
    on_a = await authed(cluster.a.url, cluster.key)
    try:
        await subscribe(on_a, AGENT, "back")
        async with httpx.AsyncClient(timeout=60) as client:
            r = await client.post(
                cluster.b.url + MESSAGES,
                json={"room": "back", "text": "hello from B"},
                headers=cluster.headers(),
            )
        assert r.status_code == 200, r.text
        seen = await until(on_a, is_type("reply.completed"))
        assert len(message_frames(seen, "hello from B")) == 1
        assert seen[-1]["data"]["reply"]["text"] == "Echo: hello from B"
    finally:
        await on_a.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def test_cross_process_event_latency(cluster: Cluster) -> None:
    """message stored on A -> its frame on B, over 200 message.created events (and on A
    itself, the same-process baseline, to show what the relay adds)."""
    turns = 100
    on_b = await authed(cluster.b.url, cluster.key)
    on_a = await authed(cluster.a.url, cluster.key)
    latencies: dict[str, list[float]] = {"b": [], "a": []}
    try:
        await subscribe(on_b, AGENT, "latency")
        await subscribe(on_a, AGENT, "latency")

        async def read(ws: Any, into: list[float]) -> None:
            while len(into) < 2 * turns:
                frame = await recv(ws, 30)
                if frame["type"] == "message.created":
                    created = datetime.fromisoformat(frame["created"])
                    into.append((datetime.now(UTC) - created).total_seconds() * 1000)

        readers = [
            asyncio.create_task(read(on_b, latencies["b"])),
            asyncio.create_task(read(on_a, latencies["a"])),
        ]
        async with httpx.AsyncClient(timeout=60) as client:
            for n in range(turns):
                r = await client.post(
                    cluster.a.url + MESSAGES,
                    json={"room": "latency", "text": f"ping {n}"},
                    headers=cluster.headers(),
                )
                assert r.status_code == 200, r.text
        await asyncio.wait_for(asyncio.gather(*readers), 30)
    finally:
        await on_b.close()
        await on_a.close()
    for where, values in latencies.items():
        assert len(values) == 2 * turns, where
        label = "on B (other process, via Redis)" if where == "b" else "on A (same process)"
        print(
            f"\nevent latency, message stored on A -> WebSocket frame {label}, "
            f"{len(values)} events: p50 {statistics.median(values):.2f} ms, "
            f"p99 {percentile(values, 0.99):.2f} ms, max {max(values):.2f} ms"
        )
    # Every event reached B (checked above); how fast is bench/scale_bench.py's figure (goal
    # p99 <= 20 ms), not an assertion here: a p99 bound failed at 255 ms with four test
    # workers on two loaded cores, which says nothing about the relay.


async def test_a_discord_turn_in_carrier_run_reaches_a_websocket_on_b(
    cluster: Cluster, model: ModelServerProcess, tmp_path: Path
) -> None:
    """`carrier run` (no API of its own) publishes its turns' events; B shows them."""
    from tests.clients.discord.harness import start_carrier
    from tests.support.fake_discord import FakeDiscordServer

    channel = "200000000000000001"
    discord = FakeDiscordServer(guilds={"100000000000000001": [channel]})
    discord.start_in_thread()
    runner = None
    try:
        runner = start_carrier(
            discord, model.url, tmp_path / "home-run", [cluster.character], env=cluster.env
        )
        runner.wait_status()
        assert runner.log_lines("Relaying events over Redis")
        first = discord.dispatch_message("first hello", channel_id=channel, mention_bot=True)
        discord.wait_reply(first)
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.get(
                cluster.b.url + f"/v1/agents/{AGENT}/rooms", headers=cluster.headers()
            )
        assert r.status_code == 200, r.text
        body = r.json()
        rooms = body["rooms"] if isinstance(body, dict) else body
        room_id = next(room["id"] for room in rooms if room["source"] == "discord")
        on_b = await authed(cluster.b.url, cluster.key)
        try:
            await subscribe(on_b, AGENT, room_id)
            second = discord.dispatch_message("second hello", channel_id=channel, mention_bot=True)
            seen = await until(on_b, is_type("reply.completed"))
            reply = discord.wait_reply(second)
            created = [f for f in seen if f["type"] == "message.created"]
            assert len(created) == 2, seen
            assert "second hello" in created[0]["data"]["message"]["text"]
            assert created[0]["data"]["message"]["source"] == "discord"
            assert created[1]["data"]["message"]["text"] == reply.content
            assert seen[-1]["data"]["reply"]["text"] == reply.content
            assert all(f["room"] == room_id for f in seen)
        finally:
            await on_b.close()
    finally:
        if runner is not None:
            assert runner.terminate() == 0, runner.stderr[-3000:]
        discord.stop_thread()


def wait_for_line(process: ServeProcess, text: str, after: int, timeout: float = 30) -> int:
    """The index of the first stderr line from `after` on containing `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = process.stderr_lines
        for index in range(after, len(lines)):
            if text in lines[index]:
                return index
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in the log:\n" + "\n".join(process.stderr_lines[after:]))


async def test_events_flow_again_after_a_redis_restart(cluster: Cluster) -> None:
    if cluster.redis.process is None:
        pytest.skip("CARRIER_TEST_REDIS_URL: this test cannot restart that server")
    marks = {id(p): len(p.stderr_lines) for p in (cluster.a, cluster.b)}
    cluster.redis.restart()
    for process in (cluster.a, cluster.b):
        down = wait_for_line(process, "Redis unreachable", marks[id(process)])
        back = wait_for_line(process, "Redis reconnected", down)
        assert back > down
        assert "Traceback" not in "\n".join(process.stderr_lines[marks[id(process)] :])
    on_b = await authed(cluster.b.url, cluster.key)
    try:
        await subscribe(on_b, AGENT, "after-restart")
        body = await post_streamed(cluster, "after-restart", "still there?")
        assert "event: done" in body
        seen = await until(on_b, is_type("reply.completed"))
        assert len(message_frames(seen, "still there?")) == 1
        assert any(f["type"] == "reply.token" for f in seen)
        assert seen[-1]["data"]["reply"]["text"] == "Echo: still there?"
    finally:
        await on_b.close()


@pytest.mark.parametrize("command", ["serve", "run"])
def test_redis_url_with_nothing_behind_it_exits_1_in_one_paragraph(
    command: str, model: ModelServerProcess, tmp_path: Path
) -> None:
    port = free_port()
    url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
    home = tmp_path / "home"
    home.mkdir()
    args = ["serve", "--port", "0"] if command == "serve" else ["run", "--client", "discord"]
    done = subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args],
        cwd=tmp_path,
        env=serve_env(home, model.url, {"REDIS_URL": url, "DISCORD_TOKEN": "x" * 60}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    err = done.stderr.strip()
    assert "Traceback" not in err and "listening" not in done.stdout
    assert f"Could not reach Redis at redis://:***@127.0.0.1:{port}/0" in err.replace("\n  ", " ")
    assert "hunter2-secret" not in err + done.stdout
    assert "\n\n" not in err and len(err.splitlines()) <= 5, err
    # Before any runtime opened: no database was created in the home.
    assert not list(home.rglob("*.db")), list(home.rglob("*"))


def test_events_are_json_round_trips() -> None:
    """The wire form keeps every field of an event (ids, room, time, data)."""
    from carrier_cli.cluster.event_relay import decode, encode
    from carrier_cli.runtime.events import AgentEvent

    event = AgentEvent(
        "reply.token",
        uuid.uuid4(),
        AGENT,
        {"text": "hé", "reply_id": "r", "n": [1, {"x": None}]},
        room_id=uuid.uuid4(),
    )
    origin, back = decode(encode(event, "p1"))
    assert origin == "p1" and back == event
    assert json.loads(encode(event, "p1"))["origin"] == "p1"
