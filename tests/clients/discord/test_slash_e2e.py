"""Slash commands through the real `carrier run --client discord --sync-commands` process:
the real runtime and memory, the fake Discord's interactions and the fake model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.discord.harness import CarrierProcess, start_carrier, write_character
from tests.support.fake_discord import FakeDiscordServer, fake_discord_fixture
from tests.support.fake_interactions import FLAG_EPHEMERAL, InteractionRecord
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.service]

GUILD = "100000000000000001"
CHANNEL = "200000000000000001"


discord = fake_discord_fixture({GUILD: [CHANNEL]})


@pytest.fixture(scope="module")
def bot(
    discord: FakeDiscordServer, model: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CarrierProcess]:
    root: Path = tmp_path_factory.mktemp("discord-slash")
    character = write_character(root / "carrier.yaml", respond_only_to_mentions=True)
    process = start_carrier(
        discord, model.url, root / "home", [character], args=["--sync-commands"]
    )
    try:
        process.wait_status()
        yield process
    finally:
        process.terminate()


def command(discord: FakeDiscordServer, name: str, **options: Any) -> InteractionRecord:
    return discord._call(  # type: ignore[no-any-return]
        lambda: discord.interactions.adispatch_command(name, options)
    )


def test_sync_commands_flag_registers_them_globally(
    bot: CarrierProcess, discord: FakeDiscordServer
) -> None:
    calls = discord.wait_for(lambda: discord.interactions.sync_calls, what="the sync")
    assert calls == [(discord.app_id, None, ["ask", "forget", "about", "memory"])]
    discord.wait_for(lambda: bot.log_lines("synced 4 slash commands globally"), what="its log")


def test_ask_is_answered_by_the_runtime_and_stored(
    bot: CarrierProcess, discord: FakeDiscordServer
) -> None:
    record = command(discord, "ask", text="hello by slash command")
    discord.wait_for(lambda: record.original and record.original.get("content"), what="the answer")
    assert record.callbacks[0]["type"] == 5
    assert record.texts == ["Echo: hello by slash command"]
    assert not record.original or not record.original["flags"] & FLAG_EPHEMERAL
    texts = [m.get("text") for m in bot.message_memories()]
    assert "hello by slash command" in texts, "the question is in memory like a message"
    assert "Echo: hello by slash command" in texts


def test_about_names_the_model(bot: CarrierProcess, discord: FakeDiscordServer) -> None:
    record = command(discord, "about")
    discord.wait_for(lambda: record.callbacks, what="the answer")
    content = record.callbacks[0]["data"]["content"]
    assert "**Carrier**" in content and "A test bot." in content and "Model: openai" in content
