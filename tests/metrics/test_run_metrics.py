"""`carrier run --client discord --metrics-port N` end to end: the real process against the
fake Discord and model servers, scraped over HTTP and parsed with prometheus_client's
parser, as Prometheus would. One bot process serves the module."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.discord.harness import CarrierProcess, start_carrier, write_character
from tests.metrics.scrape import SERIES_TYPES, families, label_sets, value
from tests.support.fake_discord import FakeDiscordServer, fake_discord_fixture
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.service]

GUILD = "100000000000000001"
CHANNELS = [str(200000000000000101 + i) for i in range(4)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


discord = fake_discord_fixture({GUILD: CHANNELS})


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def bot(
    discord: FakeDiscordServer,
    model: ModelServerProcess,
    port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CarrierProcess]:
    root = tmp_path_factory.mktemp("metrics-bot")
    character = write_character(root / "carrier.yaml", respond_only_to_mentions=True)
    env = {"CARRIER_DISCORD_TURN_TIMEOUT": "20", "CARRIER_SHUTDOWN_GRACE": "5"}
    process = start_carrier(
        discord, model.url, root / "home", [character], env=env, args=["--metrics-port", str(port)]
    )
    try:
        process.wait_status()
        yield process
    finally:
        process.terminate()


def scrape(port: int) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return families(response.text)


def scrape_until(port: int, ready: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        parsed = scrape(port)
        if ready(parsed):
            return parsed
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never showed {what}")
        time.sleep(0.1)


def test_every_series_is_there_with_its_type(bot: CarrierProcess, port: int) -> None:
    parsed = scrape(port)
    assert {name: parsed[name].type for name in SERIES_TYPES} == SERIES_TYPES
    gauge = "carrier_discord_queued_messages"
    assert label_sets(parsed, gauge) == [{"character": "Carrier"}]
    assert value(parsed, gauge, character="Carrier") == 0


def test_a_message_moves_the_turn_and_search_metrics(
    bot: CarrierProcess, discord: FakeDiscordServer, port: int
) -> None:
    before = scrape(port)
    turns = "carrier_turns_total"
    where = {"character": "Carrier", "client": "discord", "decision": "direct"}
    message = discord.dispatch_message("hello metrics", dm=True, author_id="400000000000000201")
    assert discord.wait_reply(message).content == "Echo: hello metrics"
    after = scrape_until(
        port, lambda p: value(p, turns, **where) > value(before, turns, **where), "the turn"
    )
    assert value(after, turns, **where) == value(before, turns, **where) + 1
    count = "carrier_turn_duration_seconds_count"
    assert value(after, count, character="Carrier", client="discord") >= 1
    searches = "carrier_memory_search_duration_seconds_count"
    assert value(after, searches, backend="sqlite") > value(before, searches, backend="sqlite")
    # No room, channel or user id ever becomes a label.
    labels = {k for family in after.values() for s in family.samples for k in s.labels}
    assert not labels & {"room", "room_id", "channel", "user", "user_id", "message_id"}


def test_a_rate_limited_send_is_a_send_retry(
    bot: CarrierProcess, discord: FakeDiscordServer, port: int
) -> None:
    retries = "carrier_discord_send_retries_total"
    before = value(scrape(port), retries, character="Carrier")
    discord.rate_limit_next(1, retry_after=0.2)
    message = discord.dispatch_message(f"<@{discord.bot_id}> rate me", channel_id=CHANNELS[0])
    discord.wait_reply(message)
    parsed = scrape_until(
        port, lambda p: value(p, retries, character="Carrier") > before, "the send retry"
    )
    assert value(parsed, retries, character="Carrier") == before + 1


def test_a_resumed_gateway_is_a_reconnect(
    bot: CarrierProcess, discord: FakeDiscordServer, port: int
) -> None:
    reconnects = "carrier_discord_gateway_reconnects_total"
    before = value(scrape(port), reconnects, character="Carrier")
    resumes = discord.resumes
    discord.close_gateway(4000)
    discord.wait_for(lambda: discord.resumes > resumes, what="the resume", timeout=20)
    parsed = scrape_until(
        port, lambda p: value(p, reconnects, character="Carrier") > before, "the reconnect"
    )
    assert value(parsed, reconnects, character="Carrier") == before + 1


def test_model_calls_are_counted(
    bot: CarrierProcess, discord: FakeDiscordServer, model: ModelServerProcess, port: int
) -> None:
    """Needs ucore: the OpenAI model emitting a CallRecord per attempt to its observers."""
    message = discord.dispatch_message(
        f"<@{discord.bot_id}> count my tokens", channel_id=CHANNELS[1]
    )
    discord.wait_reply(message)
    parsed = scrape_until(
        port,
        lambda p: value(p, "carrier_model_calls_total", purpose="reply", outcome="ok") > 0,
        "a model call",
    )
    [labels] = [
        s
        for s in label_sets(parsed, "carrier_model_calls_total")
        if s["purpose"] == "reply" and s["outcome"] == "ok"
    ]
    assert labels["character"] == "Carrier" and labels["provider"] == "openai"
    tokens = "carrier_model_tokens_total"
    assert value(parsed, tokens, character="Carrier", purpose="reply", kind="input") > 0
    assert value(parsed, tokens, character="Carrier", purpose="reply", kind="output") > 0


def test_the_server_stops_with_the_process(
    discord: FakeDiscordServer, model: ModelServerProcess, tmp_path: Path
) -> None:
    """Its own process (not the module's bot): SIGTERM ends the bot and the endpoint."""
    port = free_port()
    token = "second-bot-token-0123456789"
    discord.add_bot(token, "Second")
    character = write_character(tmp_path / "second.yaml", name="Second")
    process = start_carrier(
        discord,
        model.url,
        tmp_path / "home",
        [character],
        token=token,
        args=["--metrics-port", str(port)],
    )
    try:
        process.wait_status()
        assert "carrier_turns" in scrape(port)
    finally:
        code = process.terminate()
    assert code == 0, process.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
