"""A real AgentRuntime with the webhook policy attached (sender.attach, as the service
does): a turn's messages and reply become rows, a cap reached becomes one budget.reached
row, and detaching stops it all. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from sqlalchemy import select

from carrier_cli.character import Character
from carrier_cli.config import Settings
from carrier_cli.llm.scripted import ScriptedChatModel
from carrier_cli.memory.outbox import OUTBOX
from carrier_cli.memory.store import MemoryStore
from carrier_cli.runtime.agent import AgentRuntime
from carrier_cli.usage.caps import Budget, UsageIncrement, period_keys
from carrier_cli.webhooks.policy import OutboxPolicy
from carrier_cli.webhooks.sender import attach
from carrier_cli.webhooks.settings import Webhook
from tests.runtime.conftest import dm, reply_xml

HOOK = Webhook(
    name="rx",
    url="https://rx.example/h",
    events=["message.created", "reply.completed", "budget.reached"],
    secret="s",
)


async def _rows(store: MemoryStore) -> list[tuple[str, dict[str, object]]]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(OUTBOX).order_by(OUTBOX.c.created_at))).all()
    return [(r.event_type, json.loads(r.payload)) for r in rows]


async def test_a_turn_and_a_reached_cap_become_rows(store: MemoryStore) -> None:
    character = Character(
        name="Eliza",
        username="eliza",
        bio=["A listener."],
        budget=Budget(daily_tokens=10, action="warn"),
    )
    day, month = period_keys(datetime.now(UTC))
    scope = "character:Eliza"
    await store.add_usage(
        [UsageIncrement(scope, day, 50, 0.0), UsageIncrement(scope, month, 50, 0.0)]
    )
    model = ScriptedChatModel([reply_xml("Hello Bob."), reply_xml("Again."), reply_xml("Quiet.")])
    runtime = await AgentRuntime.create(
        character, Settings(), store=store, model=model, model_name="m"
    )
    runtime.rng = random.Random(7)
    policy = OutboxPolicy([HOOK])
    undo = attach([runtime], policy)
    try:
        result = await runtime.handle_message(dm("hi there", "m1"))
        await runtime.handle_message(dm("and again", "m2"))
        await policy.drain()
        rows = await _rows(store)
        kinds = [kind for kind, _ in rows]
        assert kinds.count("message.created") == 4 and kinds.count("reply.completed") == 2
        assert kinds.count("budget.reached") == 1  # once per cap and period
        budget = next(body for kind, body in rows if kind == "budget.reached")
        data = budget["data"]
        assert isinstance(data, dict)
        assert data["cap"] == "daily_tokens" and data["scope"] == scope and data["agent"] == "Eliza"
        reply = next(body for kind, body in rows if kind == "reply.completed")
        assert reply["id"] == str(result.reply_id)
        assert reply["data"]["reply"]["text"] == "Hello Bob."  # type: ignore[index]
    finally:
        for step in reversed(undo):
            step()
    assert store.outbox is None and runtime.budget.on_budget_reached == []
    before = len(await _rows(store))
    await runtime.handle_message(dm("unwatched", "m3"))
    assert len(await _rows(store)) == before
    await runtime.aclose()
