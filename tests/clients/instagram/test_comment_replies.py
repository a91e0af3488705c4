"""The agent answers comments: a real AgentRuntime (fake model server), the real Graph
client against the fake Graph API, and the replies table on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.character.loader import load_character
from carrier_cli.clients.instagram import rate_limits
from carrier_cli.clients.instagram.comment_replies import (
    Account,
    CommentPoller,
    CommentReplier,
    Rules,
    run_comment_replies,
)
from carrier_cli.clients.instagram.comments import Comment
from carrier_cli.clients.instagram.graph import GraphClient
from carrier_cli.clients.instagram.journal import make_owner
from carrier_cli.clients.instagram.options import CommentOptions
from carrier_cli.config import load_settings
from carrier_cli.memory import comment_replies as rows
from carrier_cli.runtime.agent import AgentRuntime
from tests.support.instagram_servers import FakeGraph
from tests.support.model_server import FakeModelServer

VOICE = "Fair winds, Sam! That quay wakes up slowly at dawn, like an old sailor."


def reply_xml(text: str) -> str:
    return (
        f"<response><thought>a friendly answer</thought><actions>REPLY</actions>"
        f"<text>{text}</text></response>"
    )


def write_character(path: Path, extra: str = "") -> Path:
    path.write_text(
        "name: Marina\nusername: marina\nbio: [A sailor who photographs harbours.]\n"
        "style: {all: [Speaks like an old sailor.]}\n"
        "clients:\n  instagram:\n    reply_to_comments: true\n" + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture(autouse=True)
def _fresh_governors() -> Iterator[None]:
    rate_limits.forget_governors()
    yield
    rate_limits.forget_governors()


@pytest.fixture
def graph_env(
    fake_graph: FakeGraph,
    model_server: FakeModelServer,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> FakeGraph:
    env = {
        "INSTAGRAM_ACCOUNT_ID": fake_graph.account_id,
        "INSTAGRAM_ACCESS_TOKEN": fake_graph.token,
        "CARRIER_GRAPH_API_BASE": fake_graph.url,
        "CARRIER_INSTAGRAM_RETRY_DELAY": "0.02",
        "CARRIER_INSTAGRAM_COMMENT_POLL_INTERVAL": "0.05",
        "OPENAI_BASE_URL": model_server.openai_base_url,
        "OPENAI_API_KEY": "sk-test-ig-0123456789",
        "CARRIER_MAX_RETRIES": "1",
        "CARRIER_EMBEDDING_PROVIDER": "openai",
        "DATABASE_URL": db_url,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return fake_graph


class Harness:
    def __init__(self, runtime: AgentRuntime, graph: GraphClient, fake: FakeGraph) -> None:
        self.runtime = runtime
        self.graph = graph
        self.fake = fake
        self.account = Account(fake.account_id, fake.username)

    def replier(self, owner: str | None = None) -> CommentReplier:
        rules = Rules.of(self.runtime.character.clients.instagram)
        return CommentReplier(self.runtime, self.graph, self.account, owner or make_owner(), rules)

    def poller(self, replier: CommentReplier | None = None) -> CommentPoller:
        return CommentPoller(replier or self.replier(), media_count=10)


@pytest.fixture
async def harness_for(graph_env: FakeGraph, tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[tuple[AgentRuntime, GraphClient]] = []

    async def make(extra: str = "") -> Harness:
        settings = load_settings().settings
        character = load_character(write_character(tmp_path / "marina.yaml", extra))
        runtime = await AgentRuntime.create(character, settings)
        graph = GraphClient(CommentOptions.from_settings(settings).graph)
        await graph.__aenter__()
        opened.append((runtime, graph))
        return Harness(runtime, graph, graph_env)

    yield make
    for runtime, graph in opened:
        await graph.close()
        await runtime.aclose()


def chat_calls(model_server: FakeModelServer) -> int:
    return len(model_server.requests("/v1/chat/completions"))


async def test_a_comment_is_answered_once_in_the_characters_voice(
    harness_for: Any, model_server: FakeModelServer
) -> None:
    h: Harness = await harness_for()
    fake = h.fake
    post = fake.comments.add_post("Morning light on the quay.")
    comment = fake.comments.add_comment(post, "What a view! Where is this harbour?")
    model_server.push(reply_xml(VOICE))

    stats = await h.poller().poll()
    assert stats.outcomes == {"replied": 1}
    [reply] = fake.comments.replies_by_account(comment)
    assert reply.text == VOICE
    row = await rows.get(h.runtime.store, comment)
    assert row is not None and (row.status, row.reply_id) == ("replied", reply.id)
    # The model saw the comment in the post's room, from its author.
    prompt = model_server.requests("/v1/chat/completions")[-1].body
    assert "Where is this harbour?" in str(prompt) and "sam.sails" in str(prompt)

    calls = chat_calls(model_server)
    for _ in range(2):  # a second poller (a rerun) and the same one: nothing twice
        again = await h.poller().poll()
        assert again.outcomes.get("replied", 0) == 0
    assert len(fake.comments.replies_by_account()) == 1  # our own reply was not answered
    assert chat_calls(model_server) == calls


async def test_replies_in_a_thread_name_their_author_and_own_comments_are_ignored(
    harness_for: Any, model_server: FakeModelServer
) -> None:
    h: Harness = await harness_for()
    fake = h.fake
    post = fake.comments.add_post("Boats asleep.")
    top = fake.comments.add_comment(post, "Lovely boats", username="ann")
    fake.comments.add_comment(post, "which boat is yours?", username="bo", parent_id=top)
    own = fake.comments.add_comment(  # written from the account itself, e.g. in the app
        post, "Thanks all!", username=fake.username, user_id=fake.account_id
    )
    # A reply in a thread that does not mention the account: the small model decides.
    model_server.push(reply_xml("Thank you, Ann."), "RESPOND", reply_xml("The blue one, Bo."))
    stats = await h.poller().poll()
    assert stats.outcomes == {"replied": 2}
    assert not fake.comments.replies_by_account(own)
    texts = sorted(r.text for r in fake.comments.replies_by_account(top))
    assert texts == ["@bo The blue one, Bo.", "Thank you, Ann."]


async def test_keyword_and_mention_rules(harness_for: Any, model_server: FakeModelServer) -> None:
    h: Harness = await harness_for("    comment_keywords: [price, Where]\n")
    fake = h.fake
    post = fake.comments.add_post("For sale: a print.")
    asked = fake.comments.add_comment(post, "What's the PRICE of the print?")
    fake.comments.add_comment(post, "nice")
    fake.comments.add_comment(post, "priceless")  # not the whole word
    stats = await h.poller().poll()
    assert stats.outcomes == {"replied": 1, "skipped": 2}
    assert [r.parent_id for r in fake.comments.replies_by_account()] == [asked]
    skipped = await rows.list_replies(h.runtime.store, status="skipped")
    assert {s.reason for s in skipped} == {"no keyword (clients.instagram.comment_keywords)"}

    m: Harness = await harness_for("    comment_mentions_only: true\n")
    other = fake.comments.add_post("Second post.")
    handle = fake.username.upper()  # the account's handle, any case
    mentioned = fake.comments.add_comment(other, f"hey @{handle}, tips for a first sail?")
    fake.comments.add_comment(other, f"tips? {fake.username}")  # a name, no mention
    fake.comments.add_comment(other, f"ask @{fake.username}.fan instead")  # another account
    stats = await m.poller().poll()
    assert stats.outcomes.get("replied") == 1
    assert [r.parent_id for r in fake.comments.replies_by_account() if r.media_id == other] == [
        mentioned
    ]


async def test_max_replies_per_hour_defers_the_rest(
    harness_for: Any, model_server: FakeModelServer
) -> None:
    h: Harness = await harness_for("    max_replies_per_hour: 2\n")
    fake = h.fake
    post = fake.comments.add_post("Busy post.")
    ids = [fake.comments.add_comment(post, f"comment number {i}") for i in range(4)]
    poller = h.poller()
    stats = await poller.poll()
    assert stats.outcomes == {"replied": 2, "deferred": 2}
    assert len(fake.comments.replies_by_account()) == 2
    stats = await poller.poll()  # still within the hour: nothing more, nothing lost
    assert stats.outcomes == {"deferred": 2}
    waiting = await rows.get(h.runtime.store, ids[3])
    assert waiting is not None and waiting.status == "pending" and waiting.attempts == 0


async def test_a_reply_posted_before_a_crash_is_recorded_not_posted_again(
    harness_for: Any, model_server: FakeModelServer
) -> None:
    """The crash window, in process: the dead process claimed the comment, stored its
    reply text and posted it, and died before recording it."""
    h: Harness = await harness_for()
    fake = h.fake
    post = fake.comments.add_post("Quiet harbour.")
    comment = fake.comments.add_comment(post, "Is this Honfleur?")
    dead = "localhost-of-the-dead:999999:deadbeef"  # another host: only its lease protects it
    from datetime import UTC, datetime, timedelta

    claim = await rows.claim(
        h.runtime.store,
        comment_id=comment,
        account_id=fake.account_id,
        media_id=post,
        parent_id=None,
        character="Marina",
        owner=dead,
        now=datetime.now(UTC) - timedelta(hours=1),  # its lease ran out long ago
        lease=timedelta(minutes=15),
        owner_is_dead=lambda _owner: False,
    )
    assert claim.owned and not claim.existed
    assert await rows.save_text(h.runtime.store, comment, dead, "Yes, Honfleur!", datetime.now(UTC))
    replier_before = h.replier()
    posted = await replier_before.graph.request(
        "POST", f"{comment}/replies", {"message": "Yes, Honfleur!"}, what="the dead process"
    )
    calls = chat_calls(model_server)

    stats = await h.poller().poll()
    assert stats.outcomes == {"recovered": 1}
    assert [r.id for r in fake.comments.replies_by_account(comment)] == [posted["id"]]
    row = await rows.get(h.runtime.store, comment)
    assert row is not None and (row.status, row.reply_id) == ("replied", posted["id"])
    assert chat_calls(model_server) == calls  # no new turn either


async def test_the_client_loop_answers_webhook_comments_and_stops(
    harness_for: Any, model_server: FakeModelServer
) -> None:
    from carrier_cli.clients.instagram import comment_inbox

    h: Harness = await harness_for()
    fake = h.fake
    post = fake.comments.add_post("Sunset.")
    settings = load_settings().settings
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_comment_replies(h.runtime, CommentOptions.from_settings(settings), stop)
    )
    try:
        deadline = time.monotonic() + 10
        while fake.account_id not in comment_inbox.accounts():
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.01)
        comment = fake.comments.add_comment(post, "Gorgeous colours")
        # The same comment from a webhook and from the poll: one reply.
        assert (
            comment_inbox.deliver(
                fake.account_id, Comment(comment, post, "Gorgeous colours", "sam.sails", "6001")
            )
            == 1
        )
        while not fake.comments.replies_by_account(comment):
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # several more polls
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert len(fake.comments.replies_by_account(comment)) == 1
    assert fake.account_id not in comment_inbox.accounts()


async def test_comments_are_paged(harness_for: Any, model_server: FakeModelServer) -> None:
    from carrier_cli.clients.instagram import comments

    h: Harness = await harness_for()
    fake = h.fake
    post = fake.comments.add_post("Many comments.")
    tops = [fake.comments.add_comment(post, f"top {i}") for i in range(comments.PAGE_SIZE + 7)]
    for i in range(comments.PAGE_SIZE + 3):
        fake.comments.add_comment(post, f"reply {i}", parent_id=tops[0])
    found = await comments.media_comments(h.graph, post)
    assert len(found) == 2 * comments.PAGE_SIZE + 10
    assert len({c.id for c in found}) == len(found)
    paths = [p for _m, p in fake.requests]
    assert paths.count(f"/v25.0/{post}/comments") == 2
    assert paths.count(f"/v25.0/{tops[0]}/replies") == 1  # the first page came inline


async def test_a_failed_turn_is_retried_on_the_next_poll(
    harness_for: Any, model_server: FakeModelServer
) -> None:
    from tests.support.model_server import Reply

    h: Harness = await harness_for()
    fake = h.fake
    post = fake.comments.add_post("Fog.")
    comment = fake.comments.add_comment(post, "Spooky!")
    model_server.push(Reply(status=500), Reply(status=500))  # the call and its one retry
    poller = h.poller()
    first = await poller.poll()
    assert first.outcomes == {"retry": 1}
    row = await rows.get(h.runtime.store, comment)
    assert row is not None and row.attempts == 1 and "turn failed" in (row.reason or "")
    model_server.push(reply_xml("Fog is the harbour's blanket."))
    second = await poller.poll()
    assert second.outcomes == {"replied": 1}
    assert [r.text for r in fake.comments.replies_by_account(comment)] == [
        "Fog is the harbour's blanket."
    ]


async def test_a_deleted_comment_is_not_retried(
    harness_for: Any, model_server: FakeModelServer
) -> None:
    h: Harness = await harness_for()
    fake = h.fake
    post = fake.comments.add_post("Gone.")
    comment = fake.comments.add_comment(post, "soon deleted")
    fake.fail_next("post_reply", 100, 33, message="Unsupported post request. Object does not exist")
    stats = await h.poller().poll()
    assert stats.outcomes == {"failed": 1}
    row = await rows.get(h.runtime.store, comment)
    assert row is not None and row.status == "failed" and "gone" in (row.reason or "")
    assert (await h.poller().poll()).outcomes == {}


async def test_a_quiet_account_costs_one_call_per_poll(
    harness_for: Any, model_server: FakeModelServer
) -> None:
    """Posts whose comment count did not change are not read again (until the full scan
    every FULL_SCAN_EVERY polls): at the default 60 s, about 60 calls an hour."""
    from carrier_cli.clients.instagram.comment_replies import FULL_SCAN_EVERY

    h: Harness = await harness_for()
    fake = h.fake
    for i in range(3):
        post = fake.comments.add_post(f"Post {i}")
        fake.comments.add_comment(post, f"hello {i}")
    poller = h.poller()
    counts = []
    for _ in range(FULL_SCAN_EVERY + 1):
        before = len(fake.requests)
        await poller.poll()
        counts.append(len(fake.requests) - before)
    # 1 listing + 3 posts + 3 replies; then each post once more (our reply changed its
    # count); then the listing alone; the full scan reads the 3 posts again.
    assert counts == [7, 4] + [1] * (FULL_SCAN_EVERY - 2) + [4]
    assert len(fake.comments.replies_by_account()) == 3


async def test_on_postgresql_one_process_polls_the_others_stand_by(
    harness_for: Any, model_server: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    h: Harness = await harness_for()
    if h.runtime.store.engine.dialect.name != "postgresql":
        pytest.skip("leadership is PostgreSQL's (SQLite serves one host)")
    fake = h.fake
    post = fake.comments.add_post("Two pollers.")
    options = CommentOptions.from_settings(load_settings().settings)
    stop = asyncio.Event()
    caplog.set_level("INFO", logger="carrier_cli.cluster.leader")
    tasks = [asyncio.create_task(run_comment_replies(h.runtime, options, stop)) for _ in range(2)]
    try:
        deadline = time.monotonic() + 20
        while "standing by" not in caplog.text:
            assert time.monotonic() < deadline and not any(t.done() for t in tasks)
            await asyncio.sleep(0.02)
        before = len(fake.requests)

        def listings() -> list[str]:
            return [p for _m, p in fake.requests[before:] if p.endswith("/media")]

        await asyncio.sleep(0.5)  # 10 polls of one poller at 0.05 s, 20 of two
        assert len(listings()) <= 12, listings()  # one poller's share, not two
        while not listings():  # a busy machine may have let none through yet
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        comment = fake.comments.add_comment(post, "Who answers?")
        while not fake.comments.replies_by_account(comment):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert len(fake.comments.replies_by_account(comment)) == 1
