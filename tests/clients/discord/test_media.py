"""Images and files on Discord end to end, in-process: real discord.py against the fake
Discord (its CDN route and multipart uploads), the real runtime, and the fake model server
through the real `openai` and `anthropic` SDKs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.character import Character
from carrier_cli.clients.discord.attachments import (
    Found,
    Limits,
    allowed_hosts,
    ingest_texts,
    on_cdn,
    read_all,
)
from carrier_cli.config import Settings
from carrier_cli.llm.anthropic_chat import AnthropicChatModel
from carrier_cli.llm.factory import ModelConfig
from carrier_cli.llm.openai_chat import OpenAIChatModel
from carrier_cli.llm.retry import RetryPolicy
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import MemoryKind
from carrier_cli.runtime.agent import AgentRuntime
from carrier_cli.runtime.context import TurnContext
from carrier_cli.runtime.outgoing import ActionOutput, Embed, EmbedField, OutgoingFile
from carrier_cli.runtime.plugins import ActionExample, Plugin
from carrier_cli.runtime.types import IncomingMessage
from tests.clients.discord.media_files import noise_png, pdf, png
from tests.clients.discord.test_bot import (
    CHANNELS,
    Running,
    StandInRuntime,
    make_settings,
    server,
    start_bot,
    wait_until,
)
from tests.support.fake_discord import FakeDiscordServer
from tests.support.model_server import FakeModelServer

__all__ = ["server"]  # the fake Discord fixture, shared with test_bot

Start = Callable[..., Awaitable[tuple[Running, AgentRuntime]]]


def xml(text: str, actions: str = "REPLY") -> str:
    return (
        f"<response><thought>ok</thought><actions>{actions}</actions><text>{text}</text></response>"
    )


@dataclass
class _Offer:
    """A provider offering a file for the turn (SEND_FILE sends it if the model asks)."""

    name: str = "report"

    async def get(self, ctx: TurnContext) -> None:
        ctx.offer_file(OutgoingFile("report.csv", b"day,visits\nmon,3\n", "text/csv", "Visits"))


@dataclass
class _Card:
    """An action answering with an embed and a file (ActionOutput)."""

    name: str = "SHOW_CARD"
    description: str = "Show the launch card."
    similes: Sequence[str] = ()
    examples: Sequence[Sequence[ActionExample]] = ()

    async def validate(self, ctx: TurnContext) -> bool:
        return True

    async def handler(self, ctx: TurnContext) -> ActionOutput:
        card = Embed(
            title="Launch",
            description="x" * 5000,  # over Discord's 4096: cut, not refused
            fields=(EmbedField("Pad", "39A", inline=True),),
        )
        return ActionOutput(embeds=[card], files=[OutgoingFile("pad.png", png(8, 8, "blue"))])


PLUGIN = Plugin(name="media-test", actions=[_Card()], providers=[_Offer()])


@pytest.fixture
async def start(
    server: FakeDiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> AsyncIterator[Start]:
    started: list[tuple[Running, AgentRuntime]] = []

    async def run(
        model_name: str = "gpt-4o-mini",
        *,
        provider: str = "openai",
        plugins: list[Plugin] | None = None,
        **discord: Any,
    ) -> tuple[Running, AgentRuntime]:
        character = Character.model_validate(
            {"name": "Carrier", "bio": ["Looks closely."], "clients": {"discord": discord}}
        )
        retry = RetryPolicy(max_retries=0)
        model: OpenAIChatModel | AnthropicChatModel
        if provider == "openai":
            model = OpenAIChatModel(
                api_key="sk-test", base_url=model_server.openai_base_url, retry=retry
            )
        else:
            model = AnthropicChatModel(
                api_key="sk-test", base_url=model_server.anthropic_base_url, retry=retry
            )
        store = await MemoryStore.open(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}")
        runtime = await AgentRuntime.create(
            character,
            Settings(),
            store=store,
            model=model,
            model_config=ModelConfig(provider=provider, large=model_name, small=model_name),
            plugins=plugins,
        )
        runtime._owns_model = runtime._owns_store = True  # closed with the runtime
        running = await start_bot(server, runtime, make_settings(server))  # type: ignore[arg-type]
        started.append((running, runtime))
        return running, runtime

    yield run
    for running, runtime in started:
        running.stop.set()
        await asyncio.wait_for(running.task, 10)
        await runtime.aclose()


def reply_requests(model_server: FakeModelServer) -> list[Any]:
    return [r for r in model_server.requests() if "<actions>" in r.prompt_text]


async def ask(server: FakeDiscordServer, text: str, **kwargs: Any) -> Any:
    sent = await server.adispatch_message(
        f"<@{server.bot_id}> {text}", channel_id=kwargs.pop("channel", CHANNELS[0]), **kwargs
    )
    return await wait_until(
        lambda: next((m for m in server.sent_messages() if m.reply_to == sent["id"]), None), 20
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_picture_reaches_a_vision_model_as_an_image(
    start: Start, server: FakeDiscordServer, model_server: FakeModelServer, provider: str
) -> None:
    name = "gpt-4o-mini" if provider == "openai" else "claude-haiku-4-5"
    await start(name, provider=provider)
    picture = server.add_attachment("cat.png", png(), "image/png")
    reply = await ask(server, "what colour is this?", attachments=[picture])
    request = reply_requests(model_server)[-1]
    assert request.images == [("image/png", png())]
    assert "[saw image 1: image/png 64x48, mostly red]" in reply.content  # about the picture
    assert any(path.endswith("/cat.png") for path in server.cdn_requests)


async def test_a_text_only_model_gets_an_honest_description(
    start: Start, server: FakeDiscordServer, model_server: FakeModelServer
) -> None:
    model_server.text_only = ["gpt-3.5-turbo"]  # images would be answered with a 400
    await start("gpt-3.5-turbo")
    picture = server.add_attachment("cat.png", png(), "image/png")
    reply = await ask(server, "what colour is this?", attachments=[picture])
    request = reply_requests(model_server)[-1]
    assert request.images == []
    assert "that you cannot see" in request.prompt_text
    assert "what colour is this? [image: cat.png, 64x48]" in reply.content
    assert "saw image" not in reply.content
    assert server.cdn_requests == []  # Discord gave the size: nothing fetched for nothing


async def test_an_image_embed_is_read_through_discords_media_proxy(
    start: Start, server: FakeDiscordServer, model_server: FakeModelServer
) -> None:
    await start("gpt-4o")
    hosted = server.add_attachment("sunset.png", png(32, 32, "blue"), "image/png")
    embed = {
        "type": "image",
        "url": "https://example.com/sunset.png",
        "thumbnail": {
            "url": "https://example.com/sunset.png",
            "proxy_url": hosted["proxy_url"],
            "width": 32,
            "height": 32,
        },
    }
    reply = await ask(server, "https://example.com/sunset.png nice?", embeds=[embed])
    assert "mostly blue" in reply.content
    assert server.cdn_requests == [hosted["proxy_url"].split("?")[0].split(":", 2)[2][5:]]


async def test_a_pdf_is_read_into_the_turns_context(
    start: Start, server: FakeDiscordServer, model_server: FakeModelServer
) -> None:
    await start("gpt-4o-mini", ingest_attachments=True)
    document = server.add_attachment(
        "launch.pdf", pdf("Launch window: 12 March, 06:14 UTC (pad 39A)."), "application/pdf"
    )
    await ask(server, "when is the launch?", attachments=[document])
    prompt = reply_requests(model_server)[-1].prompt_text
    assert "## launch.pdf\nLaunch window: 12 March, 06:14 UTC (pad 39A)." in prompt
    assert "[file: launch.pdf]" in prompt


async def test_too_large_and_foreign_files_are_refused_unfetched(
    start: Start, server: FakeDiscordServer, model_server: FakeModelServer
) -> None:
    await start("gpt-4o-mini", max_image_bytes=5000, max_images=2)
    big = server.add_attachment("big.png", png(), "image/png", size=2_000_000)
    liar = server.add_attachment("liar.png", noise_png(100, 100), "image/png", size=100)
    foreign = {
        "id": "1",
        "filename": "tracker.png",
        "size": 10,
        "url": "https://tracker.example/pixel.png",
        "proxy_url": "https://tracker.example/pixel.png",
        "content_type": "image/png",
        "width": 1,
        "height": 1,
    }
    await ask(server, "look", attachments=[big, liar, foreign])
    request = reply_requests(model_server)[-1]
    prompt = request.prompt_text
    assert request.images == []
    assert "[image: big.png, 64x48, not read: larger than the 5 kB limit]" in prompt
    assert "[image: liar.png, 100x100, not read: larger than the 5 kB limit]" in prompt
    assert "tracker.png, 1x1, not read: over the limit of 2 images per message" in prompt
    assert not any("big.png" in path for path in server.cdn_requests)  # declared: not fetched
    assert any("liar.png" in path for path in server.cdn_requests)  # cut off while reading


async def test_a_url_off_discords_cdn_is_never_fetched() -> None:
    hosts = allowed_hosts("http://127.0.0.1:9/api/v10")
    assert on_cdn("https://cdn.discordapp.com/attachments/1/2/a.png", hosts)
    assert on_cdn("https://media.discordapp.net/attachments/1/2/a.png", hosts)
    assert on_cdn("http://127.0.0.1:9/attachments/1/2/a.png", hosts)
    assert not on_cdn("http://cdn.discordapp.com/attachments/1/2/a.png", hosts)  # https only
    assert not on_cdn("https://cdn.discordapp.com.evil.example/a.png", hosts)
    assert not on_cdn("https://evil.example/a.png", allowed_hosts(None))
    found = [Found(url="https://evil.example/a.png", filename="a.png", content_type="image/png")]
    (record,) = await read_all(found, Limits(), allowed_hosts(None))
    assert record["note"] == "not on Discord's CDN, not fetched" and "data" not in record


async def test_send_file_and_embeds_are_sent_as_discord_files_and_embeds(
    start: Start, server: FakeDiscordServer, model_server: FakeModelServer
) -> None:
    await start("gpt-4o-mini", plugins=[PLUGIN])
    model_server.push(xml("Here is the report.", "REPLY,SEND_FILE"))
    reply = await ask(server, "send me the report")
    prompt = reply_requests(model_server)[-1].prompt_text
    assert "# Files you can send\n- report.csv: Visits" in prompt
    assert "SEND_FILE" in prompt
    files_message = await wait_until(
        lambda: next((m for m in server.sent_messages() if m.files), None)
    )
    assert reply.content == "Here is the report."
    (upload,) = files_message.files
    assert (upload.filename, upload.data) == ("report.csv", b"day,visits\nmon,3\n")
    assert upload.description == "Visits"

    model_server.push(xml("The card:", "REPLY,SHOW_CARD"))
    await ask(server, "show the card")
    card_message = await wait_until(
        lambda: next((m for m in server.sent_messages() if m.embeds), None)
    )
    (embed,) = card_message.embeds
    assert embed["title"] == "Launch" and len(embed["description"]) == 4096
    assert embed["fields"] == [{"name": "Pad", "value": "39A", "inline": True}]
    assert [f.filename for f in card_message.files] == ["pad.png"]


async def test_without_offers_send_file_is_not_offered(
    start: Start, server: FakeDiscordServer, model_server: FakeModelServer
) -> None:
    await start("gpt-4o-mini")
    await ask(server, "hello")
    assert "SEND_FILE" not in reply_requests(model_server)[-1].prompt_text


async def test_a_channels_order_holds_while_an_image_is_fetched(
    server: FakeDiscordServer,
) -> None:
    async def echo(message: IncomingMessage) -> str:
        return f"re: {message.text}"

    runtime = StandInRuntime(Character(name="Carrier"), echo)
    running = await start_bot(server, runtime, make_settings(server))
    server.cdn_delay = 0.5
    picture = server.add_attachment("slow.png", png(), "image/png")
    await server.adispatch_message("first, with a picture", attachments=[picture])
    await server.adispatch_message("second, right after")
    await wait_until(lambda: len(runtime.seen) == 2, 10)
    assert [m.text for m in runtime.seen] == ["first, with a picture", "second, right after"]
    running.stop.set()
    await asyncio.wait_for(running.task, 10)


async def test_attached_documents_become_knowledge_of_the_channel(store: MemoryStore) -> None:
    agent_id = await store.ensure_agent("Carrier")
    records = [
        {"filename": "launch.md", "kind": "text", "text": "The launch is on 12 March."},
        {"filename": "cat.png", "kind": "image"},
    ]
    assert await ingest_texts(store, agent_id, records, channel_id="42") == 1
    assert await ingest_texts(store, agent_id, records, channel_id="42") == 0  # unchanged
    documents = await store.list(agent_id=agent_id, kinds=[MemoryKind.DOCUMENT])
    assert [d.metadata["source"] for d in documents] == ["discord:42/launch.md"]


@dataclass
class _TwoBigFiles:
    name: str = "big-files"

    async def get(self, ctx: TurnContext) -> None:
        for index in range(2):  # 12 MB together: over Discord's 10 MB per message
            ctx.offer_file(OutgoingFile(f"part{index}.bin", b"\0" * 6_000_000))


async def test_files_discord_refuses_are_logged_and_the_reply_stands(
    start: Start,
    server: FakeDiscordServer,
    model_server: FakeModelServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await start("gpt-4o-mini", plugins=[Plugin(name="big", providers=[_TwoBigFiles()])])
    model_server.push(xml("Both parts.", "REPLY,SEND_FILE"))
    with caplog.at_level("ERROR", logger="carrier_cli.discord"):
        reply = await ask(server, "send both parts")
        await wait_until(lambda: "refused the files" in caplog.text)
    assert reply.content == "Both parts."
    assert "413" in caplog.text and "part0.bin, part1.bin" in caplog.text
    assert not any(m.files for m in server.sent_messages())
    assert not any(m.content == "sorry!" for m in server.sent_messages())  # no apology


async def test_a_link_to_an_image_on_discords_cdn_is_read_but_other_links_are_not(
    start: Start, server: FakeDiscordServer, model_server: FakeModelServer
) -> None:
    await start("gpt-4o-mini")
    hosted = server.add_attachment("copied.png", png(16, 16, "green"), "image/png")
    reply = await ask(server, f"seen this? {hosted['url']} and https://example.com/other.png")
    assert "[saw image 1: image/png 16x16, mostly green]" in reply.content
    assert len(reply_requests(model_server)[-1].images) == 1
    assert [p for p in server.cdn_requests if "copied.png" in p]
