"""A real AgentRuntime (SQLite store, local embeddings, scripted model) with metrics on:
turns by decision, turn latency, memory searches, the usage queue gauge, and the model
calls its models report through `observers`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import pytest

from carrier_cli import metrics
from carrier_cli.character import Character
from carrier_cli.config import Settings
from carrier_cli.llm.scripted import ScriptedChatModel
from carrier_cli.memory.store import MemoryStore
from carrier_cli.metrics.collectors import CarrierMetrics
from carrier_cli.runtime.agent import AgentRuntime
from carrier_cli.usage.records import CallContext, CallRecord, notify
from tests.metrics.scrape import families, label_sets, value
from tests.runtime.conftest import Factory, dm, is_reply_prompt, reply_xml


def script(messages: list[Any]) -> str:
    if is_reply_prompt(messages):
        return reply_xml("Aye.")
    if "Extract lasting facts" in messages[-1].content:
        return "<facts></facts>"
    return "IGNORE"  # should-respond: group chatter is ignored


@pytest.fixture
def on() -> Iterator[CarrierMetrics]:
    made = metrics.enable()
    try:
        yield made
    finally:
        metrics.disable()


@pytest.fixture
async def runtime(
    on: CarrierMetrics, sqlite_store: MemoryStore, make_runtime: Factory
) -> AsyncIterator[AgentRuntime]:
    made = await make_runtime(sqlite_store, script)
    yield made
    await made.wait_idle()


async def test_turns_are_counted_by_decision_and_client(
    runtime: AgentRuntime, on: CarrierMetrics
) -> None:
    await runtime.handle_message(dm("hello there", "m1"))
    await runtime.handle_message(dm("hello there", "m1"))  # the platform re-delivered it
    group = dm("just chatting", "m2", room="group", source="discord", is_direct=False)
    assert (await runtime.handle_message(group)).decision == "IGNORE"
    parsed = families(on.exposition())
    turns = "carrier_turns_total"
    assert value(parsed, turns, character="Eliza", client="terminal", decision="direct") == 1
    assert value(parsed, turns, character="Eliza", client="terminal", decision="replayed") == 1
    assert value(parsed, turns, character="Eliza", client="discord", decision="ignore") == 1
    count = "carrier_turn_duration_seconds_count"
    assert value(parsed, count, character="Eliza", client="terminal") == 2
    assert value(parsed, count, character="Eliza", client="discord") == 1
    # The reply turn searched knowledge; the SQLite store timed its part of it.
    assert value(parsed, "carrier_memory_search_duration_seconds_count", backend="sqlite") >= 1


async def test_streamed_turn_closed_after_done_counts_once(
    runtime: AgentRuntime, on: CarrierMetrics
) -> None:
    async with aclosing(runtime.stream_message(dm("stream it", "s1"))) as events:
        async for event in events:
            if event.kind == "done":
                break
    parsed = families(on.exposition())
    assert value(parsed, "carrier_turns_total", decision="direct") == 1


async def test_failed_and_cancelled_turns(
    on: CarrierMetrics, sqlite_store: MemoryStore, make_runtime: Factory
) -> None:
    def broken(messages: list[Any]) -> str:
        raise RuntimeError("model down")

    failing = await make_runtime(sqlite_store, broken)
    with pytest.raises(RuntimeError):
        await failing.handle_message(dm("will fail", "f1"))

    slow = await make_runtime(sqlite_store, script, latency=5.0)
    task = asyncio.create_task(slow.handle_message(dm("too slow", "c1", room="slow")))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    parsed = families(on.exposition())
    assert value(parsed, "carrier_turns_total", decision="error") == 1
    assert value(parsed, "carrier_turns_total", decision="cancelled") == 1


async def test_usage_queue_gauge_reads_the_meter(runtime: AgentRuntime, on: CarrierMetrics) -> None:
    class Meter:  # what the gauge reads of ucore's UsageMeter: records not written yet
        pending = 3

    meter = getattr(runtime, "usage", None)  # ucore's UsageMeter, once merged
    if meter is not None:
        depth = value(families(on.exposition()), "carrier_usage_queue_depth", character="Eliza")
        assert depth == meter.pending
    runtime.usage = Meter()  # type: ignore[attr-defined]
    parsed = families(on.exposition())
    assert value(parsed, "carrier_usage_queue_depth", character="Eliza") == 3
    if meter is None:
        del runtime.usage  # type: ignore[attr-defined]
    else:
        runtime.usage = meter  # aclose closes the real one
    await runtime.aclose()
    assert label_sets(families(on.exposition()), "carrier_usage_queue_depth") == []


async def test_metrics_off_attaches_nothing(
    sqlite_store: MemoryStore, make_runtime: Factory
) -> None:
    assert metrics.active() is None
    plain = await make_runtime(sqlite_store, script)
    assert plain.metrics is None
    assert sqlite_store.search_observers == []
    observers = getattr(plain.model, "observers", [])  # ucore's meter observes, not metrics
    assert not [o for o in observers if isinstance(getattr(o, "__self__", None), CarrierMetrics)]
    await plain.handle_message(dm("quiet", "q1"))


async def test_observer_attached_to_the_model_and_detached_on_close(
    on: CarrierMetrics, sqlite_store: MemoryStore, character: Character
) -> None:
    """Any model carrying `observers` (every ChatModel, once ucore is in) gets the metrics'
    observer once, also when two runtimes share it, and loses it when they close."""
    model = ScriptedChatModel(script)
    if not hasattr(model, "observers"):  # before ucore: give it the agreed attribute
        model.observers = []  # type: ignore[attr-defined]
    observers = model.observers  # type: ignore[attr-defined]
    first = await AgentRuntime.create(character, Settings(), store=sqlite_store, model=model)
    second = await AgentRuntime.create(character, Settings(), store=sqlite_store, model=model)
    assert observers.count(on.observe_call) == 1
    assert len(sqlite_store.search_observers) == 1
    notify(observers, CallRecord("scripted", "large-1", CallContext("reply", "Eliza")))
    assert value(families(on.exposition()), "carrier_model_calls_total", purpose="reply") == 1
    await first.aclose()
    await second.aclose()
    assert on.observe_call not in observers


async def test_a_reply_turn_moves_the_model_metrics(
    runtime: AgentRuntime, on: CarrierMetrics
) -> None:
    """Needs ucore: the scripted model emitting one CallRecord per call, inside the
    runtime's `calling(purpose=..., character=...)`."""
    await runtime.handle_message(dm("what tea do you like?", "t1"))
    parsed = families(on.exposition())
    calls = "carrier_model_calls_total"
    where = {"character": "Eliza", "provider": "scripted", "model": "large-1"}
    assert value(parsed, calls, **where, purpose="reply", outcome="ok") == 1
    duration = "carrier_model_call_duration_seconds_count"
    assert value(parsed, duration, provider="scripted", model="large-1", purpose="reply") == 1
