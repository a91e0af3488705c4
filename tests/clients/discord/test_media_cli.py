"""The acceptance check for pictures, as a new user meets it: the real `carrier run --client
discord` process, a picture sent to the bot on the fake Discord (served from its CDN
route), the fake model server behind the real `openai` SDK. A vision model answers about
the picture; a text-only model answers honestly that it has only the file's name and size."""

from __future__ import annotations

from pathlib import Path

import pytest

from carrier_cli.runtime.attachments import describe
from tests.clients.discord.harness import start_carrier
from tests.clients.discord.media_files import png
from tests.support.fake_discord import FakeDiscordServer, fake_discord_fixture
from tests.support.model_server import ModelServerProcess, model_server_fixture

pytestmark = [pytest.mark.slow, pytest.mark.service]

GUILD = "100000000000000001"
CHANNELS = ["200000000000000001", "200000000000000002"]


discord = fake_discord_fixture({GUILD: CHANNELS})


model = model_server_fixture(text_only=["gpt-3.5-turbo"])


def character(path: Path, model_name: str) -> Path:
    path.write_text(
        "name: Carrier\nbio: [Looks at what people send.]\n"
        f"model:\n  provider: openai\n  name: {model_name}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("model_name", "channel"), [("gpt-4o-mini", CHANNELS[0]), ("gpt-3.5-turbo", CHANNELS[1])]
)
def test_a_picture_gets_an_answer_about_it_or_an_honest_one(
    discord: FakeDiscordServer,
    model: ModelServerProcess,
    tmp_path: Path,
    model_name: str,
    channel: str,
) -> None:
    bot = start_carrier(
        discord, model.url, tmp_path / "home", [character(tmp_path / "c.yaml", model_name)]
    )
    try:
        bot.wait_status()
        picture = discord.add_attachment("cat.png", png(), "image/png", channel_id=channel)
        sent = discord.dispatch_message(
            f"<@{discord.bot_id}> what is in this picture?",
            channel_id=channel,
            attachments=[picture],
        )
        reply = discord.wait_reply(sent, timeout=30)
    finally:
        assert bot.terminate() == 0
    chat = [r for r in model.requests("/v1/chat/completions") if "<actions>" in r.prompt_text]
    request = chat[-1]
    if model_name == "gpt-4o-mini":
        assert request.images == [("image/png", png())]
        assert "[saw image 1: image/png 64x48, mostly red]" in reply.content
    else:
        assert request.images == [] and request.status == 200  # no 400 from the model
        assert "that you cannot see" in request.prompt_text
        assert "[image: cat.png, 64x48]" in reply.content and "saw image" not in reply.content
    stored = [m for m in bot.message_memories() if m.get("attachments")]
    assert describe(stored[0]["attachments"][0]) == "[image: cat.png, 64x48]"
    assert "data" not in stored[0]["attachments"][0]
