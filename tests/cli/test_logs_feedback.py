"""`carrier logs show` shows the feedback people gave the reply of the call's turn (👍/👎
reactions on Discord, memory/feedback.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from carrier_cli.memory.feedback import Feedback, list_feedback, record_feedback, remove_feedback
from carrier_cli.memory.store import MemoryStore
from tests.cli.test_logs_usage import _ok, call


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli_db(request: pytest.FixtureRequest, carrier_home: Path) -> tuple[dict[str, str], str]:
    """(environment for `carrier`, the database URL it uses), as in test_logs_usage."""
    if request.param == "sqlite":
        return {}, f"sqlite:///{carrier_home / 'data' / 'carrier.db'}"
    factory: Callable[[], str] = request.getfixturevalue("pg_database_factory")
    url = factory()
    return {"DATABASE_URL": url}, url


@pytest.mark.slow
def test_logs_show_lists_the_feedback_on_the_turns_reply(
    cli_db: tuple[dict[str, str], str],
) -> None:
    env, url = cli_db
    turn_id, reply_id = uuid.uuid4(), uuid.uuid4()

    async def seed() -> str:
        async with await MemoryStore.open(url) as store:
            agent = await store.ensure_agent("Tester")
            room = await store.ensure_room(agent, "discord", "200000000000000001", "general")
            record = call(client="discord", room_id=room.id)
            record = replace(record, context=replace(record.context, turn_id=turn_id))
            await store.record_calls([record])
            for person, polarity, emoji in (("alice", "positive", "👍"), ("bob", "negative", "👎")):
                await record_feedback(
                    store,
                    agent,
                    Feedback(reply_id, turn_id, polarity, emoji, person),  # type: ignore[arg-type]
                    source="discord",
                    platform_message_id="555",
                    room_id=room.id,
                )
            # Reported twice: stored once (the id is derived from reply, person, reaction).
            await record_feedback(
                store,
                agent,
                Feedback(reply_id, turn_id, "positive", "👍", "alice"),
                source="discord",
                platform_message_id="555",
                room_id=room.id,
            )
            assert len(await list_feedback(store, turn_id=turn_id)) == 2
            return str(record.id)

    call_id = asyncio.run(seed())
    shown = _ok(["logs", "show", call_id[:8]], env)
    assert "1 positive, 1 negative" in shown and "👍 alice" in shown
    full = json.loads(_ok(["logs", "show", call_id, "--json"], env))
    assert sorted(f["person_key"] for f in full["feedback"]) == ["alice", "bob"]
    assert {f["reply_id"] for f in full["feedback"]} == {str(reply_id)}

    async def take_back() -> None:
        async with await MemoryStore.open(url) as store:
            agent = await store.ensure_agent("Tester")
            assert await remove_feedback(
                store,
                agent,
                source="discord",
                platform_message_id="555",
                person_key="bob",
                reaction="👎",
            )

    asyncio.run(take_back())
    assert "1 positive, 0 negative" in _ok(["logs", "show", call_id[:8]], env)
