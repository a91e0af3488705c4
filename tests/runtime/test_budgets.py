"""Budgets in the runtime, with a ScriptedChatModel: refuse answers with the configured
message and makes no model call (should-respond and facts are skipped), small switches the
call to the small model, warn logs once; the meter on the model's observers counts what a
turn spent, so the next turn is refused."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from carrier_cli.character import Character
from carrier_cli.config import Settings
from carrier_cli.llm.base import ChatMessage, GenerationParams
from carrier_cli.llm.scripted import ScriptedChatModel
from carrier_cli.memory.store import MemoryStore
from carrier_cli.runtime.agent import AgentRuntime
from carrier_cli.usage.budget import BudgetEvent, BudgetRefused
from carrier_cli.usage.budget_meter import BudgetMeter
from carrier_cli.usage.caps import Budget, UsageIncrement, period_keys
from carrier_cli.usage.records import (
    CallObserver,
    CallRecord,
    TokenUsage,
    current_context,
    notify,
)
from tests.runtime.conftest import dm, group, reply_xml

REFUSAL = "Budget reached, see you tomorrow."


def with_budget(character: Character, **budget: Any) -> Character:
    return character.model_copy(
        update={
            "budget": Budget(**budget),
            "model": character.model.model_copy(update={"small": "small-1"}),
        }
    )


async def spend(store: MemoryStore, scope: str, tokens: int, cost: float = 0.0) -> None:
    day, month = period_keys(datetime.now(UTC))
    await store.add_usage(
        [UsageIncrement(scope, day, tokens, cost), UsageIncrement(scope, month, tokens, cost)]
    )


async def runtime_for(
    store: MemoryStore, character: Character, model: Any, settings: Settings | None = None
) -> AgentRuntime:
    runtime = await AgentRuntime.create(
        character, settings or Settings(), store=store, model=model, model_name="large-1"
    )
    runtime.rng = random.Random(7)
    return runtime


async def test_refuse_replies_with_the_message_and_calls_no_model(
    sqlite_store: MemoryStore, character: Character
) -> None:
    character = with_budget(character, daily_tokens=100, message=REFUSAL)
    await spend(sqlite_store, "character:Eliza", 100)  # at the cap: the next call is refused
    model = ScriptedChatModel([])  # any call would raise ScriptExhausted
    runtime = await runtime_for(sqlite_store, character, model)
    try:
        result = await runtime.handle_message(dm("hello?", "m1"))
        assert result.text == REFUSAL and result.reply_id is not None
        streamed = [e async for e in runtime.stream_message(dm("still there?", "m2"))]
        assert [e.text for e in streamed if e.kind == "delta"] == [REFUSAL]
        assert streamed[-1].result is not None and streamed[-1].result.text == REFUSAL
        # a room message nobody addressed: should-respond is skipped, the room hears nothing
        quiet = await runtime.handle_message(group("anyone around?", "m3", room="group"))
        assert quiet.decision == "IGNORE" and quiet.text is None
        with pytest.raises(BudgetRefused, match="budget is reached"):
            await runtime.complete_small("extract facts", purpose="facts")
        with pytest.raises(BudgetRefused):
            await runtime.generate_post(topic="tea")
        await runtime.wait_idle()
        assert model.calls == []
        stored = await sqlite_store.get(result.reply_id)
        assert stored is not None and stored.text == REFUSAL  # a replay sends the same
    finally:
        await runtime.aclose()


async def test_below_the_cap_the_call_is_made(
    sqlite_store: MemoryStore, character: Character
) -> None:
    character = with_budget(character, daily_tokens=100, message=REFUSAL)
    await spend(sqlite_store, "character:Eliza", 99)
    model = ScriptedChatModel([reply_xml("Hello!")])
    runtime = await runtime_for(sqlite_store, character, model)
    try:
        assert (await runtime.handle_message(dm("hello?", "m1"))).text == "Hello!"
        assert [c.params.model for c in model.calls] == ["large-1"]
    finally:
        await runtime.aclose()


async def test_global_budget_from_settings_refuses_too(
    sqlite_store: MemoryStore, character: Character
) -> None:
    await spend(sqlite_store, "global", 0, cost=2.0)  # spent by any character
    model = ScriptedChatModel([])
    settings = Settings(budget={"daily_cost_usd": 2.0, "message": "Everyone is out."})
    runtime = await runtime_for(sqlite_store, character, model, settings)
    try:
        assert (await runtime.handle_message(dm("hi", "m1"))).text == "Everyone is out."
        assert model.calls == []
    finally:
        await runtime.aclose()


async def test_small_switches_the_reply_to_the_small_model(
    sqlite_store: MemoryStore, character: Character
) -> None:
    character = with_budget(character, monthly_tokens=10, action="small")
    await spend(sqlite_store, "character:Eliza", 10)
    model = ScriptedChatModel([reply_xml("Cheaper hello.")])
    runtime = await runtime_for(sqlite_store, character, model)
    try:
        result = await runtime.handle_message(dm("hello?", "m1"))
        assert result.text == "Cheaper hello."
        assert [c.params.model for c in model.calls] == ["small-1"]
    finally:
        await runtime.aclose()


async def test_warn_makes_the_calls_and_logs_once(
    sqlite_store: MemoryStore, character: Character, caplog: pytest.LogCaptureFixture
) -> None:
    character = with_budget(character, daily_tokens=10, action="warn")
    await spend(sqlite_store, "character:Eliza", 50)
    model = ScriptedChatModel([reply_xml("One."), reply_xml("Two.")])
    runtime = await runtime_for(sqlite_store, character, model)
    events: list[BudgetEvent] = []
    runtime.budget.on_budget_reached.append(events.append)
    try:
        with caplog.at_level(logging.WARNING, logger="carrier.usage.budget"):
            assert (await runtime.handle_message(dm("a", "m1"))).text == "One."
            assert (await runtime.handle_message(dm("b", "m2"))).text == "Two."
        assert [c.params.model for c in model.calls] == ["large-1", "large-1"]
        warnings = [r for r in caplog.records if "budget reached" in r.getMessage()]
        assert len(warnings) == 1 and "character:Eliza daily_tokens" in warnings[0].getMessage()
        assert [(e.scope, e.cap, e.action) for e in events] == [
            ("character:Eliza", "daily_tokens", "warn")
        ]
    finally:
        await runtime.aclose()


class ReportingModel:
    """A model that emits one CallRecord per call, the way the providers do
    (usage/records.py: `observers`, `notify`), reporting `tokens` each time."""

    name = "reporting"

    def __init__(self, replies: list[str], tokens: int) -> None:
        self.replies = list(replies)
        self.observers: list[CallObserver] = []
        self.tokens = tokens
        self.calls: list[GenerationParams] = []

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        self.calls.append(params)
        usage = TokenUsage(self.tokens // 2, self.tokens - self.tokens // 2)
        notify(self.observers, CallRecord(self.name, params.model, current_context(), usage=usage))
        return self.replies.pop(0)

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        yield await self.complete(messages, params)

    async def aclose(self) -> None:
        pass


def budget_meters(model: ReportingModel) -> list[CallObserver]:
    return [o for o in model.observers if isinstance(o, BudgetMeter)]


async def test_what_a_turn_spent_is_counted_and_the_next_turn_refused(
    sqlite_store: MemoryStore, character: Character
) -> None:
    character = with_budget(character, daily_tokens=30, message=REFUSAL)
    model = ReportingModel([reply_xml("First and last.")], tokens=40)
    runtime = await runtime_for(sqlite_store, character, model)
    try:
        assert runtime.budget.active and len(budget_meters(model)) == 1
        assert (await runtime.handle_message(dm("one", "m1"))).text == "First and last."
        # counted at once in this process, before the meter's flush
        assert (await runtime.handle_message(dm("two", "m2"))).text == REFUSAL
        assert len(model.calls) == 1
    finally:
        await runtime.aclose()
    assert budget_meters(model) == []  # the meter leaves the model it does not own
    day, month = period_keys(datetime.now(UTC))
    for scope in ("character:Eliza", "global"):
        assert await sqlite_store.usage_spent(scope, day) == (40, 0.0, 1)
        assert await sqlite_store.usage_spent(scope, month) == (40, 0.0, 1)


async def test_without_a_budget_nothing_is_metered(
    sqlite_store: MemoryStore, character: Character
) -> None:
    model = ReportingModel([reply_xml("Hi.")], tokens=40)
    runtime = await runtime_for(sqlite_store, character, model)
    try:
        assert not runtime.budget.active and budget_meters(model) == []
        assert (await runtime.handle_message(dm("one", "m1"))).text == "Hi."
    finally:
        await runtime.aclose()
