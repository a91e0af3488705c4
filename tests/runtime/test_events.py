"""runtime.events: what a turn publishes, in order, in-process (the WebSocket hub and the
webhooks build on it). The model is a ScriptedChatModel; the store is a real SQLite one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from carrier_cli.errors import RuntimeFailure
from carrier_cli.memory.store import MemoryStore
from carrier_cli.runtime.events import AgentEvent
from tests.runtime.conftest import Factory, dm, reply_xml


class Recorder:
    def __init__(self) -> None:
        self.events: list[AgentEvent] = []

    def __call__(self, event: AgentEvent) -> None:
        self.events.append(event)

    @property
    def kinds(self) -> list[str]:
        return [e.type for e in self.events]


def collapse(kinds: list[str]) -> list[str]:
    """reply.token runs as one entry, so orders read plainly."""
    out: list[str] = []
    for kind in kinds:
        if kind == "reply.token" and out and out[-1] == "reply.token*":
            continue
        out.append("reply.token*" if kind == "reply.token" else kind)
    return out


def states(events: list[AgentEvent]) -> list[str]:
    return [e.data["state"] for e in events if e.type == "typing"]


@pytest.mark.parametrize("message_key", [None, "m-1"])
async def test_streamed_turn_publishes_in_order_with_one_reply_id(
    sqlite_store: MemoryStore, make_runtime: Factory, message_key: str | None
) -> None:
    runtime = await make_runtime(sqlite_store, lambda m: reply_xml("Hello there, sailor."))
    seen = Recorder()
    runtime.events.subscribe(seen)
    result = None
    async for event in runtime.stream_message(dm("hi", message_key)):
        if event.kind == "done":
            result = event.result
    assert result is not None and result.reply_id is not None

    assert collapse(seen.kinds) == [
        "message.created",
        "typing",
        "reply.token*",
        "typing",
        "message.created",
        "reply.completed",
    ]
    assert states(seen.events) == ["start", "stop"]
    incoming, reply = (e for e in seen.events if e.type == "message.created")
    # message.created ids are the memories' ids (a WebSocket's `since` cursor).
    assert incoming.id == str(result.message_id)
    assert reply.id == str(result.reply_id)
    assert incoming.data["message"]["sender"]["agent"] is False
    assert reply.data["message"]["sender"]["agent"] is True
    assert reply.data["message"]["in_reply_to"] == incoming.id
    assert await sqlite_store.get(uuid.UUID(reply.id), with_vector=False) is not None
    # Every delta names the stored reply (without a platform message id too), and the
    # deltas are the reply's text.
    tokens = [e for e in seen.events if e.type == "reply.token"]
    assert {t.data["reply_id"] for t in tokens} == {str(result.reply_id)}
    assert all(t.data["in_reply_to"] == incoming.id for t in tokens)
    completed = seen.events[-1].data
    assert "".join(t.data["text"] for t in tokens) == completed["reply"]["text"]
    assert completed["reply"]["text"] == "Hello there, sailor." == result.text
    assert completed["reply"]["id"] == str(result.reply_id)
    room_ids = {e.room_id for e in seen.events}
    assert room_ids == {incoming.room_id} and incoming.room_id is not None
    assert all(e.agent == runtime.character.name for e in seen.events)
    envelope = seen.events[0].envelope()
    assert set(envelope) == {"id", "type", "created", "data"}


async def test_handle_message_publishes_the_same_without_tokens(
    sqlite_store: MemoryStore, make_runtime: Factory
) -> None:
    runtime = await make_runtime(sqlite_store, lambda m: reply_xml("Plain."))
    seen = Recorder()
    runtime.events.subscribe(seen)
    await runtime.handle_message(dm("hi", "m-2"))
    assert seen.kinds == [
        "message.created",
        "typing",
        "typing",
        "message.created",
        "reply.completed",
    ]


async def test_a_failing_subscriber_does_not_fail_the_turn(
    sqlite_store: MemoryStore, make_runtime: Factory
) -> None:
    runtime = await make_runtime(sqlite_store, lambda m: reply_xml("Still here."))

    def broken(event: AgentEvent) -> None:
        raise ValueError("subscriber bug")

    seen = Recorder()
    runtime.events.subscribe(broken)
    runtime.events.subscribe(seen)
    result = await runtime.handle_message(dm("hi", "m-3"))
    assert result.text == "Still here."
    assert seen.kinds[-1] == "reply.completed"  # the next subscriber still got everything


async def test_a_replayed_platform_message_publishes_nothing(
    sqlite_store: MemoryStore, make_runtime: Factory
) -> None:
    runtime = await make_runtime(sqlite_store, lambda m: reply_xml("Once."))
    first = await runtime.handle_message(dm("hi", "m-4", source="discord"))
    seen = Recorder()
    runtime.events.subscribe(seen)
    again = await runtime.handle_message(dm("hi", "m-4", source="discord"))
    assert again.replayed and again.text == first.text == "Once."
    assert seen.events == []


async def test_a_failed_turn_publishes_agent_error(
    sqlite_store: MemoryStore, make_runtime: Factory
) -> None:
    def outage(messages: list[Any]) -> str:
        raise RuntimeFailure("The model is down (test).")

    runtime = await make_runtime(sqlite_store, outage)
    seen = Recorder()
    runtime.events.subscribe(seen)
    with pytest.raises(RuntimeFailure):
        await runtime.handle_message(dm("hi", "m-5"))
    assert collapse(seen.kinds) == ["message.created", "typing", "typing", "agent.error"]
    error = seen.events[-1]
    assert error.data["message_id"] == seen.events[0].id
    assert "model is down" in error.data["error"]["message"]


async def test_unsubscribed_bus_is_inactive(
    sqlite_store: MemoryStore, make_runtime: Factory
) -> None:
    runtime = await make_runtime(sqlite_store, lambda m: reply_xml("x"))
    seen = Recorder()
    stop = runtime.events.subscribe(seen)
    assert runtime.events.active
    stop()
    assert not runtime.events.active
    await runtime.handle_message(dm("hi", "m-6"))
    assert seen.events == []
