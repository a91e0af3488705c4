"""The messages actions add after the reply (`TurnResult.extra_messages`) on Discord, end to
end in-process: real discord.py against the fake Discord, the real runtime with a plugin
action, and the fake model server through the real `openai` SDK."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from carrier_cli.runtime.context import TurnContext
from carrier_cli.runtime.outgoing import ActionOutput, OutgoingFile
from carrier_cli.runtime.plugins import ActionExample, Plugin
from tests.clients.discord.test_bot import CHANNELS, wait_until
from tests.clients.discord.test_media import Start, server, start, xml
from tests.support.fake_discord import FakeDiscordServer, SentMessage
from tests.support.model_server import FakeModelServer

__all__ = ["server", "start"]  # fixtures: the fake Discord and the bot on the real runtime

# Three paragraphs of 1,500 characters: 4,500 in all, over Discord's 2,000 per message.
LONG_NOTE = "\n\n".join(f"Part {n}: " + "word " * 298 for n in range(3))


@dataclass
class _Note:
    """An action whose text is a message of its own after the reply."""

    name: str
    text: str
    with_file: bool = False
    description: str = "Add a note."
    similes: Sequence[str] = ()
    examples: Sequence[Sequence[ActionExample]] = ()

    async def validate(self, ctx: TurnContext) -> bool:
        return True

    async def handler(self, ctx: TurnContext) -> ActionOutput:
        files = [OutgoingFile("notes.txt", b"the notes\n", "text/plain")] if self.with_file else []
        return ActionOutput(text=self.text, files=files)


PLUGIN = Plugin(
    name="notes-test",
    actions=[_Note("LONG_NOTE", LONG_NOTE, with_file=True), _Note("SHORT_NOTE", "And one more.")],
)


def _words(text: str) -> list[str]:
    return text.split()


async def _answer_in(server: FakeDiscordServer, channel_id: str) -> list[SentMessage]:
    """The bot's messages in the channel once the last of the answer (the file) is there."""

    def done() -> list[SentMessage] | None:
        sent = server.sent_messages(channel_id)
        return sent if any(m.files for m in sent) else None

    answer: list[SentMessage] = await wait_until(done, 20)
    return answer


def _check_answer(sent: list[SentMessage], asked_id: str, *, in_place: bool) -> None:
    """The reply, then the long note in chunks of at most 2,000 characters, the short note,
    and the long note's file last, each posted once."""
    assert len(sent) == 6, [m.content[:40] or m.files for m in sent]
    reply, *rest = sent
    assert reply.content == "Noted."
    assert reply.reply_to == (asked_id if in_place else None)
    *texts, files = rest
    assert [f.filename for f in files.files] == ["notes.txt"] and not files.content
    *long_chunks, short = texts
    assert len(long_chunks) == 3 and all(len(c.content) <= 2000 for c in long_chunks)
    assert _words(" ".join(c.content for c in long_chunks)) == _words(LONG_NOTE)
    assert short.content == "And one more."
    assert all(m.reply_to is None for m in rest), "only the reply's first chunk is a reply"
    nonces = [m.nonce for m in sent]
    assert len(set(nonces)) == len(nonces), "each message has its own nonce"


async def test_action_messages_follow_the_reply_in_order_split_and_rate_limited(
    start: Start, server: FakeDiscordServer, model_server: FakeModelServer
) -> None:
    await start("gpt-4o-mini", plugins=[PLUGIN])
    model_server.push(xml("Noted.", "REPLY,LONG_NOTE,SHORT_NOTE"))
    channel = CHANNELS[0]
    server.rate_limit_next(1, retry_after=0.3, after=1)  # the reply passes, the next is limited
    asked = await server.adispatch_message(f"<@{server.bot_id}> take notes", channel_id=channel)
    sent = await _answer_in(server, channel)
    _check_answer(sent, asked["id"], in_place=True)
    assert [ch for ch, _ in server.rate_limited] == [channel]
    assert sent[1].at - server.rate_limited[0][1] >= 0.25, "discord.py waited retry_after"


async def test_action_messages_go_to_the_thread_the_reply_went_to(
    start: Start, server: FakeDiscordServer, model_server: FakeModelServer
) -> None:
    await start("gpt-4o-mini", plugins=[PLUGIN], reply_in_thread=True)
    model_server.push(xml("Noted.", "REPLY,LONG_NOTE,SHORT_NOTE"))
    asked = await server.adispatch_message(
        f"<@{server.bot_id}> notes in a thread", channel_id=CHANNELS[1]
    )
    thread = asked["id"]  # a thread opened on a message has the message's id
    sent = await _answer_in(server, thread)
    _check_answer(sent, asked["id"], in_place=False)
    assert not server.sent_messages(CHANNELS[1]), "nothing in the parent channel"
