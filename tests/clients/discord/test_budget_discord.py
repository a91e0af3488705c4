"""Acceptance (issue 12): with a tiny daily budget and `refuse`, the next Discord message
gets the configured message and no model call reaches the server. The real `carrier run`
process, real discord.py, the fake Discord server and the fake model server (which
reports usage like OpenAI does)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from carrier_cli.memory.store import MemoryStore
from carrier_cli.usage.caps import UsageIncrement, period_keys
from tests.clients.discord.harness import CarrierProcess, start_carrier
from tests.support.fake_discord import FakeDiscordServer, fake_discord_fixture
from tests.support.model_server import ModelServerProcess, model_server_fixture

pytestmark = [pytest.mark.slow, pytest.mark.service]

REFUSAL = "My budget for today is spent; back tomorrow (test)."
CHAT = "/v1/chat/completions"


model = model_server_fixture("function")


discord = fake_discord_fixture(scope="function")


def budget_character(path: Path, daily_tokens: int) -> Path:
    path.write_text(
        "name: Carrier\nusername: carrier\nbio: [A test bot.]\n"
        f"budget:\n  daily_tokens: {daily_tokens}\n  action: refuse\n"
        f'  message: "{REFUSAL}"\n',
        encoding="utf-8",
    )
    return path


def start(
    discord: FakeDiscordServer, model: ModelServerProcess, root: Path, character: Path
) -> CarrierProcess:
    env = {"CARRIER_DISCORD_TYPING_INTERVAL": "0.2", "CARRIER_SHUTDOWN_GRACE": "5"}
    process = start_carrier(discord, model.url, root / "home", [character], env=env)
    process.wait_status()
    return process


async def _spend(url: str, scope: str, tokens: int) -> None:
    store = await MemoryStore.open(url)  # creates the schema, as `carrier db init` would
    try:
        day, month = period_keys(datetime.now(UTC))
        await store.add_usage(
            [UsageIncrement(scope, day, tokens), UsageIncrement(scope, month, tokens)]
        )
    finally:
        await store.close()


def test_spent_budget_refuses_without_a_model_call(
    discord: FakeDiscordServer, model: ModelServerProcess, tmp_path: Path
) -> None:
    """The budget was spent earlier today (by this bot or another process on the same
    database): the next message gets the configured message, the model server nothing."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    asyncio.run(_spend(f"sqlite:///{home / 'data' / 'carrier.db'}", "character:Carrier", 50))
    bot = start(discord, model, tmp_path, budget_character(tmp_path / "c.yaml", 50))
    try:
        message = discord.dispatch_message("hello, are you there?", dm=True)
        assert discord.wait_reply(message).content == REFUSAL
        time.sleep(0.5)  # no background call (facts) follows either
        assert model.requests(CHAT) == []
    finally:
        assert bot.terminate() == 0


def test_a_tiny_daily_budget_is_spent_by_one_turn_then_refused(
    discord: FakeDiscordServer, model: ModelServerProcess, tmp_path: Path
) -> None:
    """Counting what the server reported (needs the providers' CallRecords: issue 12's
    llm-layer records): the first reply spends more than 5 tokens, the next is refused."""
    bot = start(discord, model, tmp_path, budget_character(tmp_path / "c.yaml", 5))
    try:
        first = discord.dispatch_message("first question", dm=True)
        assert discord.wait_reply(first).content == "Echo: first question"
        calls = len(model.requests(CHAT))
        assert calls >= 1
        second = discord.dispatch_message("second question", dm=True)
        assert discord.wait_reply(second).content == REFUSAL
        time.sleep(0.5)
        assert len(model.requests(CHAT)) == calls  # no model call for the refused turn
    finally:
        assert bot.terminate() == 0
    assert bot.log_lines("budget reached: character:Carrier daily_tokens")
