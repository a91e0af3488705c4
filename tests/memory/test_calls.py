"""Model call records in the memory database (`model_calls`), on SQLite and PostgreSQL:
stored once per id, listed newest first with filters, found by id prefix, summed, and
their prompts forgotten after the retention period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect

from carrier_cli.errors import InputError
from carrier_cli.memory.backends import make_engine
from carrier_cli.memory.migrate import alembic_config, schema_state, upgrade
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.urls import normalise_url
from carrier_cli.usage.records import CallContext, CallRecord, TokenUsage

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def make_call(
    *,
    minutes_ago: float = 0.0,
    character: str | None = "Eliza",
    purpose: str = "reply",
    client: str | None = "terminal",
    room_id: uuid.UUID | None = None,
    model: str = "gpt-4o-mini",
    tokens: tuple[int | None, int | None, int | None] = (100, 20, None),
    cost: float | None = 0.001,
    estimated: bool = False,
    call_id: uuid.UUID | None = None,
    **fields: Any,
) -> CallRecord:
    return CallRecord(
        provider="openai",
        model=model,
        context=CallContext(
            purpose=purpose,
            character=character,
            agent_id=uuid.uuid5(uuid.NAMESPACE_DNS, character or "none"),
            room_id=room_id,
            client=client,
            turn_id=uuid.uuid4(),
        ),
        usage=TokenUsage(*tokens, estimated=estimated),
        total_ms=250.0,
        first_token_ms=80.0,
        cost_usd=cost,
        created_at=NOW - timedelta(minutes=minutes_ago),
        id=call_id or uuid.uuid4(),
        **fields,
    )


async def test_record_list_and_get_round_trip(store: MemoryStore) -> None:
    room = uuid.uuid4()
    first = make_call(
        minutes_ago=5,
        room_id=room,
        attempt=1,
        outcome="retried",
        error_code="429",
        prompt="system: be nice\nuser: hi",
        output=None,
    )
    second = make_call(minutes_ago=1, room_id=room, attempt=2, output="hello!")
    await store.record_calls([first, second])
    await store.record_calls([first])  # a batch written again: still one row per attempt
    listed = await store.list_calls()
    assert [c.id for c in listed] == [second.id, first.id]  # newest first
    got = listed[1]
    assert got.context == first.context and got.created_at == first.created_at
    assert (got.attempt, got.outcome, got.error_code) == (1, "retried", "429")
    assert got.usage == TokenUsage(100, 20, None, estimated=False)
    assert got.first_token_ms == 80.0 and got.total_ms == 250.0 and got.cost_usd == 0.001
    assert got.prompt == "system: be nice\nuser: hi" and got.output is None
    assert (await store.get_call(str(second.id))) == listed[0]
    assert (await store.get_call(second.id.hex[:8])) == listed[0]
    assert await store.get_call(str(uuid.uuid4())) is None
    await store.record_calls([])


async def test_filters_and_limit(store: MemoryStore) -> None:
    room = uuid.uuid4()
    calls = [
        make_call(minutes_ago=60 * 48, character="Eliza"),
        make_call(minutes_ago=30, character="Eliza", purpose="should_respond", room_id=room),
        make_call(minutes_ago=20, character="Bob", client="discord", room_id=room),
        make_call(minutes_ago=10, character=None, purpose="embedding", client=None),
    ]
    await store.record_calls(calls)
    ids = lambda found: [c.id for c in found]  # noqa: E731
    assert ids(await store.list_calls(character="Eliza")) == [calls[1].id, calls[0].id]
    assert ids(await store.list_calls(room_id=room)) == [calls[2].id, calls[1].id]
    assert ids(await store.list_calls(client="discord")) == [calls[2].id]
    assert ids(await store.list_calls(purpose="embedding")) == [calls[3].id]
    assert len(await store.list_calls(since=NOW - timedelta(hours=1))) == 3
    assert ids(await store.list_calls(limit=2)) == [calls[3].id, calls[2].id]
    assert len(await store.list_calls(limit=None)) == 4


async def test_id_prefixes_like_git(store: MemoryStore) -> None:
    a = make_call(call_id=uuid.UUID("abcd1234-0000-4000-8000-000000000001"))
    b = make_call(call_id=uuid.UUID("abcd1299-0000-4000-8000-000000000002"))
    await store.record_calls([a, b])
    found = await store.get_call("abcd1234")
    assert found is not None and found.id == a.id
    found = await store.get_call("ABCD-1299")  # case and dashes as people copy them
    assert found is not None and found.id == b.id
    with pytest.raises(InputError, match="'abcd12'") as ambiguous:
        await store.get_call("abcd12")
    assert "Several model calls" in ambiguous.value.message
    assert await store.get_call("ffff") is None
    for bad in ("ab", "not-an-id"):
        with pytest.raises(InputError, match="not a model call id"):
            await store.get_call(bad)


async def test_usage_totals_by_each_group(store: MemoryStore) -> None:
    day1 = NOW - timedelta(days=1)
    await store.record_calls(
        [
            make_call(minutes_ago=24 * 60 + 5, tokens=(1000, 100, 800), cost=0.01),
            make_call(minutes_ago=24 * 60 + 1, tokens=(10, 5, None), cost=None, estimated=True),
            make_call(minutes_ago=3, character="Bob", model="claude", cost=0.5, client="discord"),
            make_call(minutes_ago=2, character=None, purpose="embedding", client=None, cost=None),
        ]
    )
    by_character = dict(await store.usage_totals(by="character"))
    assert list(by_character) == ["Bob", "Eliza", "(none)"]  # by cost, then tokens
    eliza = by_character["Eliza"]
    assert (eliza.calls, eliza.input_tokens, eliza.output_tokens, eliza.cached_tokens) == (
        2,
        1010,
        105,
        800,
    )
    assert eliza.cost_usd == pytest.approx(0.01)
    assert (eliza.unpriced_calls, eliza.estimated_calls) == (1, 1)
    assert by_character["(none)"].unpriced_calls == 1 and by_character["(none)"].cost_usd == 0
    by_model = dict(await store.usage_totals(by="model"))
    assert set(by_model) == {"openai:gpt-4o-mini", "openai:claude"}
    assert by_model["openai:gpt-4o-mini"].calls == 3
    assert [k for k, _ in await store.usage_totals(by="client")] == [
        "discord",
        "terminal",
        "(none)",
    ]
    assert {k: t.calls for k, t in await store.usage_totals(by="purpose")} == {
        "reply": 3,
        "embedding": 1,
    }
    days = await store.usage_totals(by="day")
    assert [(k, t.calls) for k, t in days] == [
        (day1.strftime("%Y-%m-%d"), 2),
        (NOW.strftime("%Y-%m-%d"), 2),
    ]
    recent = await store.usage_totals(by="day", since=NOW - timedelta(hours=1))
    assert [t.calls for _, t in recent] == [2]
    with pytest.raises(InputError):
        await store.usage_totals(by="week")  # type: ignore[arg-type]
    assert await store.usage_totals(by="day", since=NOW + timedelta(days=1)) == []


async def test_usage_days_of_one_character_or_model(store: MemoryStore) -> None:
    """The console's per-day chart of one character or one model (GET /v1/usage)."""
    await store.record_calls(
        [
            make_call(minutes_ago=24 * 60 + 5, cost=0.01),
            make_call(minutes_ago=3, character="Bob", model="claude", cost=0.5),
            make_call(minutes_ago=2, cost=0.02),
        ]
    )
    bob = await store.usage_totals(by="day", character="Bob")
    assert [(k, t.calls) for k, t in bob] == [(NOW.strftime("%Y-%m-%d"), 1)]
    mini = await store.usage_totals(by="day", model="openai:gpt-4o-mini")
    assert [t.calls for _, t in mini] == [1, 1]
    assert [t.calls for _, t in await store.usage_totals(by="day", model="claude")] == [1]
    assert await store.usage_totals(by="day", model="anthropic:claude") == []
    assert await store.usage_totals(by="character", character="nobody") == []


async def test_prune_clears_old_prompts_and_keeps_the_costs(store: MemoryStore) -> None:
    old = make_call(minutes_ago=60 * 24 * 40, prompt="old prompt", output="old output")
    old_bare = make_call(minutes_ago=60 * 24 * 40)
    new = make_call(minutes_ago=1, prompt="new prompt", output="new output")
    await store.record_calls([old, old_bare, new])
    assert await store.prune_calls(prompts_older_than=NOW - timedelta(days=30)) == 1
    assert await store.prune_calls(prompts_older_than=NOW - timedelta(days=30)) == 0
    kept = await store.get_call(str(old.id))
    assert kept is not None and kept.prompt is None and kept.output is None
    assert kept.cost_usd == 0.001 and kept.usage.input_tokens == 100
    fresh = await store.get_call(str(new.id))
    assert fresh is not None and fresh.prompt == "new prompt" and fresh.output == "new output"


async def _at_revision(url: str, revision: str) -> None:
    engine = make_engine(normalise_url(url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), revision))
    finally:
        await engine.dispose()


async def test_a_database_at_0102_is_told_to_upgrade_and_then_gets_the_table(
    db_url: str,
) -> None:
    await _at_revision(db_url, "0102_memory_segments")
    with pytest.raises(InputError, match="older schema") as behind:
        await MemoryStore.open(db_url)
    assert "carrier db upgrade" in (behind.value.hint or "")
    engine = make_engine(normalise_url(db_url))
    try:
        assert (await schema_state(engine)).status == "behind"
        await upgrade(engine)
        state = await schema_state(engine)
        assert state.status == "current"
        async with engine.connect() as conn:
            indexes = await conn.run_sync(
                lambda c: {i["name"] for i in inspect(c).get_indexes("model_calls")}
            )
        assert {
            "ix_model_calls_created_at",
            "ix_model_calls_character_created",
            "ix_model_calls_purpose",
        } <= indexes
    finally:
        await engine.dispose()
    async with await MemoryStore.open(db_url) as store:
        await store.record_calls([make_call()])
        assert len(await store.list_calls()) == 1


async def test_the_meter_applies_log_retention_days_to_the_store(store: MemoryStore) -> None:
    """A long-running bot forgets old prompts without anyone running a command: the
    usage writer prunes when it starts writing (and then once a day)."""
    from carrier_cli.usage.meter import UsageMeter

    now = datetime.now(UTC)
    old = make_call(prompt="what my user said 40 days ago", output="old reply")
    old.created_at = now - timedelta(days=40)
    await store.record_calls([old])
    meter = UsageMeter(store, log_prompts=True, retention_days=30)
    fresh = make_call(prompt="today", output="fresh reply")
    fresh.created_at = now
    meter.observe(fresh)
    await meter.aclose()
    kept_old = await store.get_call(str(old.id))
    kept_new = await store.get_call(str(fresh.id))
    assert kept_old is not None and kept_new is not None
    assert kept_old.prompt is None and kept_old.output is None  # the text is gone
    assert kept_old.usage.input_tokens == 100  # the token record stays
    assert kept_new.prompt == "today"
