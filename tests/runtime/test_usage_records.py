"""Every model call of a turn is recorded with what it was for (purpose, character,
room, client, turn) and summed per turn and session in `runtime.usage`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from carrier_cli.usage.records import CallRecord
from tests.runtime.conftest import dm, group, reply_xml


class ListSink:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    async def record_calls(self, records: Sequence[CallRecord]) -> None:
        self.records.extend(records)


def _script(messages):  # type: ignore[no-untyped-def]
    content = messages[-1].content
    if "RESPOND, IGNORE or STOP" in content:
        return "RESPOND"
    if "Extract lasting facts" in content:
        return "<facts><fact>Bob likes tea.</fact></facts>"
    return reply_xml("Tea is lovely.")


async def test_each_call_of_a_turn_carries_its_purpose_and_the_turn(
    sqlite_store, make_runtime, character
):
    every_turn = character.model_copy(update={"settings": {"fact_interval": 1}})
    runtime = await make_runtime(sqlite_store, _script, character_=every_turn)
    seen: list[CallRecord] = []
    runtime.model.observers.append(seen.append)
    result = await runtime.handle_message(group("anyone like tea?"))
    await runtime.wait_idle()
    assert result.decision == "RESPOND"
    assert [r.context.purpose for r in seen] == ["should_respond", "reply", "facts"]
    for record in seen:
        assert record.context.character == "Eliza"
        assert record.context.agent_id == runtime.agent_id
        assert record.context.client == "discord"
        assert record.context.turn_id == result.message_id
        assert record.context.room_id is not None
        assert record.usage.estimated  # the scripted model reports nothing
    totals = runtime.usage.turn_totals(result.message_id)
    assert totals.calls == 3 and totals.unpriced_calls == 3  # no price for "scripted"
    assert runtime.usage.totals().calls == 3
    assert totals.input_tokens == sum(r.usage.input_tokens or 0 for r in seen)


async def test_streamed_reply_and_post_are_recorded(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, [reply_xml("Streamed."), "A post about tea."])
    async for _ in runtime.stream_message(dm("hello")):
        pass
    post = await runtime.generate_post(topic="tea")
    assert post == "A post about tea."
    records = list(runtime.usage._turns.values())
    assert runtime.usage.totals().calls == 2
    assert sum(t.calls for t in records) == 1  # the post belongs to no turn
    by_model = runtime.usage.by_model()
    assert list(by_model) == [("scripted", "large-1")]


async def test_the_store_is_the_sink_and_aclose_flushes(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, [reply_xml("Hi.")])
    sink = ListSink()
    runtime.usage._write_calls = sink.record_calls  # the store's record_calls once merged
    await runtime.handle_message(dm("hi"))
    await runtime.aclose()
    assert [r.context.purpose for r in sink.records] == ["reply"]
    assert runtime.usage.observe not in runtime.model.observers  # the model may outlive it


async def test_turn_context_does_not_leak_to_the_stream_consumer(sqlite_store, make_runtime):
    from carrier_cli.usage.records import current_context

    runtime = await make_runtime(sqlite_store, [reply_xml("A longer streamed reply here.")])
    purposes = set()
    async for _ in runtime.stream_message(dm("hello")):
        purposes.add(current_context().purpose)
        await asyncio.sleep(0)
    assert purposes == {"small"}  # the anonymous default: nothing set between chunks


async def test_remote_embeddings_are_recorded_for_the_character(
    tmp_path, make_runtime, model_server
):
    from carrier_cli.llm.openai_embeddings import OpenAIEmbedder
    from carrier_cli.memory.store import MemoryStore

    embedder = OpenAIEmbedder(api_key="sk-test-embed", base_url=model_server.openai_base_url)
    store = await MemoryStore.open(f"sqlite:///{tmp_path / 'remote.db'}", embedder=embedder)
    try:
        runtime = await make_runtime(store, [reply_xml("Hi.")])
        before = runtime.usage.totals().calls  # the character's knowledge was embedded
        await runtime.handle_message(dm("hello there"))
        embedded = [r for r in model_server.requests("/v1/embeddings") if r.usage]
        assert embedded
        totals = runtime.usage.by_model()
        embedding = totals[("openai", "text-embedding-3-small")]
        assert embedding.calls == len(embedded)
        assert embedding.input_tokens == sum(r.usage["prompt_tokens"] for r in embedded)  # type: ignore[index]
        assert runtime.usage.totals().calls > before
        [turn] = runtime.usage._turns.values()
        assert turn.calls == 2  # the reply and its embedding (the message's came before)
        await runtime.aclose()
        assert runtime.usage.observe not in embedder.observers
    finally:
        await store.close()
        await embedder.aclose()
