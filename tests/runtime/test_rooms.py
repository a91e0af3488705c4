"""The runtime's per-room order with a client's hooks: the one ordering every client gets."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from carrier_cli.runtime.rooms import RoomGates, TurnHooks
from carrier_cli.runtime.types import TurnResult
from tests.runtime.conftest import dm, reply_xml


async def _stored() -> None:
    return None


async def test_a_queued_message_holds_no_slot_so_other_rooms_go_on() -> None:
    gates = RoomGates()
    limit = asyncio.Semaphore(2)
    release_a1 = asyncio.Event()
    done: list[str] = []

    async def turn(key: str, name: str, wait: asyncio.Event | None = None) -> None:
        async with gates.turn(key, _stored, TurnHooks(limit=limit)):
            if wait is not None:
                await wait.wait()
            done.append(name)

    a1 = asyncio.create_task(turn("a", "a1", release_a1))
    a2 = asyncio.create_task(turn("a", "a2"))  # behind a1 in its room: must not take a slot
    await asyncio.sleep(0.01)
    b1 = asyncio.create_task(turn("b", "b1"))
    await asyncio.wait_for(b1, 2)  # the second slot was free for room b
    assert done == ["b1"]
    release_a1.set()
    await asyncio.wait_for(asyncio.gather(a1, a2), 2)
    assert done == ["b1", "a1", "a2"]
    assert len(gates) == 0, "gates are dropped when unused"
    assert limit._value == 2, "every slot was given back"


async def test_on_start_runs_when_the_rooms_turn_comes_not_while_queued() -> None:
    gates = RoomGates()
    events: list[str] = []
    release = asyncio.Event()

    async def turn(name: str, wait: asyncio.Event | None = None) -> None:
        hooks = TurnHooks(on_start=lambda: events.append(f"start {name}"))
        async with gates.turn("room", _stored, hooks):
            if wait is not None:
                await wait.wait()
            events.append(f"end {name}")

    first = asyncio.create_task(turn("1", release))
    second = asyncio.create_task(turn("2"))
    await asyncio.sleep(0.02)
    assert events == ["start 1"]
    release.set()
    await asyncio.gather(first, second)
    assert events == ["start 1", "end 1", "start 2", "end 2"]


async def test_slot_is_released_before_delivery() -> None:
    limit = asyncio.Semaphore(1)
    seen: list[int] = []

    async def deliver(result: TurnResult) -> None:
        seen.append(limit._value)

    hooks = TurnHooks(limit=limit, deliver=deliver)
    async with RoomGates().turn("room", _stored, hooks):
        assert limit._value == 0
        await hooks.finish(TurnResult(decision="DIRECT", message_id=uuid.uuid4()))
    assert seen == [1] and limit._value == 1


async def test_replies_are_delivered_in_message_order_within_a_room(
    sqlite_store, make_runtime
) -> None:
    """The first reply's delivery is slow; the second turn waits for it, so what the client
    sends for one message goes out before anything for the room's next message."""
    runtime = await make_runtime(sqlite_store, lambda m: reply_xml("ok"))
    delivered: list[str] = []
    first_delivering = asyncio.Event()
    finish_first = asyncio.Event()

    async def deliver(result: TurnResult) -> None:
        if not delivered and not first_delivering.is_set():
            first_delivering.set()
            await finish_first.wait()
        delivered.append(str(result.message_id))

    first = asyncio.create_task(
        runtime.handle_message(dm("one", "m1"), hooks=TurnHooks(deliver=deliver))
    )
    await asyncio.wait_for(first_delivering.wait(), 10)
    second = asyncio.create_task(
        runtime.handle_message(dm("two", "m2"), hooks=TurnHooks(deliver=deliver))
    )
    await asyncio.sleep(0.1)
    assert len(runtime.model.calls) == 1, "the room's next turn waits for the delivery"
    finish_first.set()
    r1, r2 = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert delivered == [str(r1.message_id), str(r2.message_id)]


async def test_a_failing_delivery_is_raised_and_frees_the_room(sqlite_store, make_runtime) -> None:
    runtime = await make_runtime(sqlite_store, lambda m: reply_xml("ok"))

    async def deliver(result: TurnResult) -> None:
        raise ConnectionError("platform down")

    with pytest.raises(ConnectionError):
        await runtime.handle_message(dm("one", "f1"), hooks=TurnHooks(deliver=deliver))
    assert runtime.last_turn_log is not None and not runtime.last_turn_log.interrupted
    result = await asyncio.wait_for(runtime.handle_message(dm("two", "f2")), 10)
    assert result.text == "ok"


async def test_storing_counts_against_the_bound_too() -> None:
    """Storing embeds the message (a model call with a remote embedder): it holds a slot,
    as the Discord bot's bound always covered it; a turn that can start at once keeps it."""
    gates = RoomGates()
    limit = asyncio.Semaphore(1)
    release = asyncio.Event()
    stored: list[str] = []

    async def turn(key: str, name: str, wait: asyncio.Event | None = None) -> None:
        async def intake() -> None:
            stored.append(name)

        async with gates.turn(key, intake, TurnHooks(limit=limit)):
            assert limit._value == 0, "the slot taken for storing is kept for the turn"
            if wait is not None:
                await wait.wait()

    a = asyncio.create_task(turn("a", "a", release))
    await asyncio.sleep(0.01)
    b = asyncio.create_task(turn("b", "b"))
    await asyncio.sleep(0.05)
    assert stored == ["a"], "no slot free: room b's message waits to be stored"
    release.set()
    await asyncio.wait_for(asyncio.gather(a, b), 2)
    assert stored == ["a", "b"] and limit._value == 1


async def test_storing_without_a_model_call_holds_no_slot() -> None:
    """intake_is_model_call=False (the local embedder): a message is stored while every
    slot is taken, and waits for one only for its turn."""
    gates = RoomGates()
    limit = asyncio.Semaphore(1)
    stored: list[str] = []

    async def intake() -> None:
        stored.append("a")

    async def turn() -> None:
        async with gates.turn("a", intake, TurnHooks(limit=limit), intake_is_model_call=False):
            assert limit._value == 0, "the turn holds the slot"

    await limit.acquire()  # another room's turn holds the only slot
    task = asyncio.create_task(turn())
    await asyncio.sleep(0.05)
    assert stored == ["a"], "stored without a slot"
    assert not task.done(), "the turn waits for the slot"
    limit.release()
    await asyncio.wait_for(task, 2)
    assert limit._value == 1


class _RemoteLike:
    """The local model behind an embedder that does not say it runs in this process, as a
    remote embedder does not."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.model_id = inner.model_id  # type: ignore[attr-defined]
        self.dimension = inner.dimension  # type: ignore[attr-defined]

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self.inner.embed(texts)  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("remote", [False, True])
async def test_the_runtime_takes_a_slot_for_storing_only_with_a_remote_embedder(
    sqlite_store, make_runtime, remote: bool
) -> None:
    """The local embedder (in_process) stores a message with every slot taken; with a
    remote one, storing is a model call and waits for a slot (commit 2966938)."""
    assert getattr(sqlite_store.embedder, "in_process", False), "the default is local"
    if remote:
        sqlite_store.embedder = _RemoteLike(sqlite_store.embedder)
    runtime = await make_runtime(sqlite_store, lambda m: reply_xml("ok"))
    limit = asyncio.Semaphore(1)
    await limit.acquire()  # another room's turn holds the only slot
    task = asyncio.create_task(
        runtime.handle_message(dm("hello", "s1"), hooks=TurnHooks(limit=limit))
    )
    for _ in range(100):
        await asyncio.sleep(0.01)
        if runtime.room_message_counts:
            break
    assert bool(runtime.room_message_counts) is not remote
    assert not runtime.model.calls, "the turn itself waits for the slot"
    limit.release()
    result = await asyncio.wait_for(task, 10)
    assert result.text == "ok" and runtime.room_message_counts


@pytest.mark.parametrize(
    ("remote", "actions", "free_while_storing"),
    [
        (False, "REPLY", True),  # nothing after the model call is one: the slot goes back
        (True, "REPLY", False),  # storing the reply is a remote embedding: a model call
        (False, "REPLY,CONTINUE", False),  # CONTINUE asks the model once more
    ],
)
async def test_the_slot_goes_back_before_the_reply_is_stored_when_no_model_call_follows(
    sqlite_store, make_runtime, monkeypatch, remote: bool, actions: str, free_while_storing: bool
) -> None:
    """The slot bounds model calls (`discord_max_concurrent_turns`): held through the
    local embedding and write of the reply, it stretched every hold of the Discord burst
    by ~3.7 ms of ~64. A model call still to come (a remote embedder, CONTINUE) keeps it."""
    if remote:
        sqlite_store.embedder = _RemoteLike(sqlite_store.embedder)
    limit = asyncio.Semaphore(1)
    free_at_model_calls: list[int] = []

    def replies(messages: list[object]) -> str:
        free_at_model_calls.append(limit._value)
        return reply_xml("ok", actions=actions) if len(free_at_model_calls) == 1 else "more"

    runtime = await make_runtime(sqlite_store, replies)
    free_at_reply_store: list[int] = []
    add = sqlite_store.add

    async def recording_add(memory, **kwargs):  # type: ignore[no-untyped-def]
        if memory.content.get("in_reply_to") and memory.content.get("text") == "ok":
            free_at_reply_store.append(limit._value)
        return await add(memory, **kwargs)

    monkeypatch.setattr(sqlite_store, "add", recording_add)
    result = await asyncio.wait_for(
        runtime.handle_message(dm("hello", "r1"), hooks=TurnHooks(limit=limit)), 10
    )
    assert result.text == "ok"
    assert free_at_reply_store == [1 if free_while_storing else 0]
    assert free_at_model_calls[0] == 0, "the reply's model call holds the slot"
    if "CONTINUE" in actions:
        assert free_at_model_calls[1:] == [0], "so does the follow-up's"
    assert limit._value == 1, "given back in the end"
