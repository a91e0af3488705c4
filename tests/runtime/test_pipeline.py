"""One turn end to end on the real MemoryStore (SQLite and PostgreSQL), scripted model."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from carrier_cli.memory.types import MemoryKind, stable_id
from carrier_cli.runtime.types import TurnEvent
from tests.runtime.conftest import dm, group, reply_xml


async def test_full_turn_stores_message_and_reply(store, make_runtime):
    runtime = await make_runtime(store, [reply_xml("Hello Bob, tea?", thought="be warm")])
    result = await runtime.handle_message(dm("hi there, do you like genmaicha?", "m1"))

    assert result.decision == "DIRECT"
    assert result.text == "Hello Bob, tea?"
    assert result.thought == "be warm"
    assert result.actions == ["REPLY"]
    message = await store.get(result.message_id)
    assert message is not None
    assert message.id == stable_id("terminal", "message", "m1", runtime.agent_id)
    assert message.embedding is not None and len(message.embedding) == 256
    assert message.content["name"] == "Bob"
    reply = await store.get(result.reply_id)
    assert reply is not None and reply.text == "Hello Bob, tea?"
    assert reply.entity_id == runtime.agent_id
    assert reply.content["in_reply_to"] == str(message.id)
    recent = await store.recent(message.room_id)
    assert [m.text for m in recent] == ["hi there, do you like genmaicha?", "Hello Bob, tea?"]

    prompt = runtime.model.calls[0].messages[-1].content
    assert "Eliza is interested in" in prompt
    assert "Bob: hi there, do you like genmaicha?" in prompt
    assert "genmaicha" in prompt.split("<conversation>")[0]  # knowledge was retrieved
    assert "Keep it short." in prompt and "Ask one question back." in prompt
    assert "No emojis." not in prompt  # post style is not for chat
    assert "{{" not in prompt
    log = runtime.last_turn_log
    assert log is not None and log.calls[0].output == reply_xml(
        "Hello Bob, tea?", thought="be warm"
    )
    assert log.calls[0].prompt == prompt
    assert {"intake", "compose", "generate", "store_reply", "total", "overhead"} <= set(log.timings)


async def test_replayed_event_is_stored_once_and_not_answered_twice(store, make_runtime, character):
    runtime = await make_runtime(store, [reply_xml("First answer")])
    first = await runtime.handle_message(dm("hello", "discord-123"))
    again = await runtime.handle_message(dm("hello", "discord-123"))
    assert again.replayed and again.text == "First answer" and again.reply_id == first.reply_id
    assert len(runtime.model.calls) == 1
    room = (await store.get(first.message_id)).room_id
    assert len(await store.recent(room)) == 2

    # A restarted process (fresh runtime, same database) still recognises the replay.
    restarted = await make_runtime(store, [])
    third = await restarted.handle_message(dm("hello", "discord-123"))
    assert third.replayed and third.text == "First answer"
    assert restarted.model.calls == []
    assert len(await store.recent(room)) == 2


async def test_turns_in_one_room_run_in_arrival_order(store, make_runtime):
    seen: list[str] = []

    def reply(messages: list[Any]) -> str:
        convo = messages[-1].content.split("<conversation>")[1].split("</conversation>")[0]
        last = [ln for ln in convo.strip().splitlines() if "Bob:" in ln][-1]
        seen.append(last)
        return reply_xml("ack " + last.rsplit(" ", 1)[-1])

    runtime = await make_runtime(store, reply, latency=0.02)
    tasks = [
        asyncio.create_task(runtime.handle_message(dm(f"message {i}", f"k{i}"))) for i in range(5)
    ]
    results = await asyncio.gather(*tasks)
    assert [r.text for r in results] == [f"ack {i}" for i in range(5)]
    room = (await store.get(results[0].message_id)).room_id
    texts = [m.text for m in await store.recent(room)]
    # Each reply directly follows its message or the messages that arrived meanwhile.
    assert [t for t in texts if t.startswith("ack")] == [f"ack {i}" for i in range(5)]
    assert [t for t in texts if t.startswith("message")] == [f"message {i}" for i in range(5)]
    for i in range(1, 5):  # each later prompt saw the earlier reply
        prompt = runtime.model.calls[i].messages[-1].content
        assert f"Eliza: ack {i - 1}" in prompt


async def test_different_rooms_run_concurrently(store, make_runtime):
    in_flight = 0
    peak = 0
    overlapped = asyncio.Event()
    runtime = await make_runtime(store, lambda m: reply_xml("hi"))
    original = runtime.model.complete

    async def waiting_complete(messages, params):
        # Each call waits (up to 5 s) for another room's call to start: with rooms run one
        # after another no second call can begin, and the peak stays 1.
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight >= 2:
            overlapped.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(overlapped.wait(), 5)
        finally:
            in_flight -= 1
        return await original(messages, params)

    runtime.model.complete = waiting_complete  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(runtime.handle_message(dm("hello", room=f"room-{i}")) for i in range(4))
    )
    assert all(r.text == "hi" for r in results)
    assert peak > 1


async def test_newer_message_during_generation_is_seen_by_next_turn(store, make_runtime):
    release = asyncio.Event()
    prompts: list[str] = []

    runtime = await make_runtime(store, lambda m: reply_xml(f"reply {len(prompts)}"))
    original = runtime.model.complete

    async def complete(messages, params):
        prompts.append(messages[-1].content)
        if len(prompts) == 1:
            await release.wait()
        return await original(messages, params)

    runtime.model.complete = complete  # type: ignore[method-assign]
    first = asyncio.create_task(runtime.handle_message(dm("first question", "a")))
    while not prompts:
        await asyncio.sleep(0.01)
    second = asyncio.create_task(runtime.handle_message(dm("actually, second", "b")))
    for _ in range(1000):  # the second message is stored while the first reply is pending
        if await store.get(stable_id("terminal", "message", "b", runtime.agent_id)):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("second message was not stored while the first turn was generating")
    first_log = runtime.last_turn_log
    release.set()
    r1, r2 = await first, await second
    assert r1.text == "reply 1"  # the running turn finished and kept its reply
    assert r2.text == "reply 2"
    assert "first question" in prompts[1] and "reply 1" in prompts[1]
    assert "actually, second" in prompts[1]
    assert first_log is None
    assert runtime.turn_logs[0].newer_messages == 1


async def test_broken_markup_twice_falls_back_to_raw_text(store, make_runtime):
    garbage = ["<response>I think", "<response>the final raw answer</response>", "unasked"]
    runtime = await make_runtime(store, garbage)
    result = await runtime.handle_message(dm("what is the answer?"))
    assert len(runtime.model.calls) == 2
    assert result.text == "the final raw answer"
    assert runtime.last_turn_log.parse_failures == 2
    reply = await store.get(result.reply_id)
    assert reply.text == "the final raw answer"


async def test_a_reply_without_tags_is_the_reply_at_once(store, make_runtime):
    runtime = await make_runtime(store, ["I think the answer is 42", "unasked"])
    result = await runtime.handle_message(dm("what is the answer?"))
    assert len(runtime.model.calls) == 1
    assert result.text == "I think the answer is 42" and result.actions == ["REPLY"]
    assert runtime.last_turn_log.parse_failures == 0
    reply = await store.get(result.reply_id)
    assert reply.text == "I think the answer is 42"


async def test_one_bad_reply_is_retried(store, make_runtime):
    runtime = await make_runtime(store, ["<response>no structure", reply_xml("Second time lucky")])
    result = await runtime.handle_message(dm("hi"))
    assert result.text == "Second time lucky"
    assert len(runtime.model.calls) == 2


async def test_model_choosing_ignore_stores_no_reply(store, make_runtime):
    runtime = await make_runtime(
        store, ["<response><thought>no</thought><actions>IGNORE</actions></response>"]
    )
    result = await runtime.handle_message(dm("bye"))
    assert result.text is None and result.actions == ["IGNORE"] and result.reply_id is None
    room = (await store.get(result.message_id)).room_id
    assert [m.text for m in await store.recent(room)] == ["bye"]


async def test_streaming_yields_text_as_generated(store, make_runtime):
    runtime = await make_runtime(
        store, [reply_xml("Streaming &amp; chunked replies work fine.")], chunk_size=3
    )
    events: list[TurnEvent] = [e async for e in runtime.stream_message(dm("stream please"))]
    deltas = [e.text for e in events if e.kind == "delta"]
    assert len(deltas) > 3
    assert events[-1].kind == "done"
    result = events[-1].result
    assert result is not None
    assert "".join(deltas) == result.text == "Streaming & chunked replies work fine."
    assert runtime.model.calls[0].streamed


async def test_cancelled_turn_keeps_message_and_stores_no_reply(store, make_runtime):
    runtime = await make_runtime(store, lambda m: reply_xml("late reply"), latency=5)
    task = asyncio.create_task(runtime.handle_message(dm("are you there?", "c1")))
    while not runtime.model.calls:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    message_id = stable_id("terminal", "message", "c1", runtime.agent_id)
    message = await store.get(message_id)
    assert message is not None
    assert [m.text for m in await store.recent(message.room_id)] == ["are you there?"]
    assert runtime.turn_logs[-1].interrupted

    # The replayed event is answered now (it never was), without a second message memory.
    runtime.model.latency = 0
    result = await runtime.handle_message(dm("are you there?", "c1"))
    assert result.text == "late reply" and not result.replayed
    assert [m.text for m in await store.recent(message.room_id)] == ["are you there?", "late reply"]


async def test_template_override_and_missing_placeholder(store, make_runtime, character, caplog):
    custom = character.model_copy(
        update={
            "templates": {
                "messageHandlerTemplate": "CUSTOM for {{agentName}}: [{{noSuchValue}}] "
                "{{senderName}} <actions>REPLY</actions> Respond using this XML"
            },
        }
    )
    runtime = await make_runtime(store, [reply_xml("ok")], character_=custom)
    with caplog.at_level(logging.DEBUG, logger="carrier.runtime.templates"):
        await runtime.handle_message(dm("hi"))
    prompt = runtime.model.calls[0].messages[-1].content
    assert prompt == "CUSTOM for Eliza: [] Bob <actions>REPLY</actions> Respond using this XML"
    assert any("noSuchValue" in r.getMessage() for r in caplog.records)


async def test_continue_action_adds_one_follow_up(store, make_runtime):
    replies = [
        reply_xml("Part one.", actions="REPLY,CONTINUE"),
        reply_xml("Part two.", actions="CONTINUE"),
    ]
    runtime = await make_runtime(store, replies)
    result = await runtime.handle_message(dm("tell me a story", "s1"))
    assert result.text == "Part one."
    assert result.extra_messages == ["Part two."]
    assert len(runtime.model.calls) == 2  # the second CONTINUE is not followed
    restarted = await make_runtime(store, [])
    replay = await restarted.handle_message(dm("tell me a story", "s1"))
    assert replay.replayed and replay.text == "Part one."
    assert replay.extra_messages == ["Part two."]
    room = (await store.get(result.message_id)).room_id
    assert [m.text for m in await store.recent(room)] == [
        "tell me a story",
        "Part one.",
        "Part two.",
    ]


async def test_generate_post_uses_post_style(store, make_runtime):
    runtime = await make_runtime(store, [reply_xml("Salt air, slow tea.")])
    post = await runtime.generate_post(topic="morning tides", extra_instructions="Max 20 words.")
    assert post == "Salt air, slow tea."
    prompt = runtime.model.calls[0].messages[-1].content
    assert "morning tides" in prompt and "Max 20 words." in prompt
    assert "No emojis." in prompt and "Ask one question back." not in prompt
    assert "The sea keeps no secrets" in prompt


async def test_set_model_switches_large_model(store, make_runtime):
    runtime = await make_runtime(store, [reply_xml("a"), reply_xml("b")])
    await runtime.handle_message(dm("one"))
    runtime.set_model("bigger-model")
    await runtime.handle_message(dm("two"))
    assert [c.params.model for c in runtime.model.calls] == ["large-1", "bigger-model"]


async def test_character_knowledge_is_ingested_once(store, make_runtime, character, tmp_path):
    guide = tmp_path / "harbour.md"
    guide.write_text("# Harbour guide\n\nThe harbour master is called Ines.\n", encoding="utf-8")
    with_file = character.model_copy(update={"knowledge": [*character.knowledge, str(guide)]})
    runtime = await make_runtime(store, [reply_xml("Ines, I think.")], character_=with_file)
    fragments = await store.list(agent_id=runtime.agent_id, kinds=[MemoryKind.FRAGMENT])
    texts = " ".join(m.text for m in fragments)
    assert "genmaicha" in texts and "harbour master is called Ines" in texts
    assert await runtime.ingest_knowledge() == 0  # unchanged documents are not added again
    again = await store.list(agent_id=runtime.agent_id, kinds=[MemoryKind.FRAGMENT])
    assert len(again) == len(fragments)
    await runtime.handle_message(dm("who runs the harbour master office?"))
    knowledge = runtime.model.calls[0].messages[-1].content.split("<conversation>")[0]
    assert "harbour master is called Ines" in knowledge


async def test_group_message_uses_small_model_decision(store, make_runtime):
    def script(messages):
        content = messages[-1].content
        if "RESPOND, IGNORE or STOP" in content:
            return (
                "RESPOND"
                if "weather" in content.splitlines()[-10:][0] or "weather" in content
                else "IGNORE"
            )
        return reply_xml("Sunny.")

    runtime = await make_runtime(store, script)
    result = await runtime.handle_message(group("how is the weather?", "g1"))
    assert result.decision == "RESPOND" and result.text == "Sunny."
    assert runtime.model.calls[0].params.model == runtime.model_config.small
    assert len(runtime.model.calls) == 2


async def test_consumer_leaving_a_stream_early_frees_the_room(store, make_runtime):
    runtime = await make_runtime(
        store, [reply_xml("A long streamed answer " * 5), reply_xml("next")], chunk_size=4
    )
    stream = runtime.stream_message(dm("stream", "e1"))
    async with contextlib.aclosing(stream):
        async for event in stream:
            if event.kind == "delta":
                break
    assert runtime.turn_logs[-1].interrupted
    message = await store.get(stable_id("terminal", "message", "e1", runtime.agent_id))
    assert [m.text for m in await store.recent(message.room_id)] == ["stream"]
    result = await asyncio.wait_for(runtime.handle_message(dm("again", "e2")), 10)
    assert result.text == "next"


async def test_prompt_is_trimmed_to_the_context_window(sqlite_store, make_runtime):
    import dataclasses

    from carrier_cli.llm.tokens import estimate_tokens

    runtime = await make_runtime(sqlite_store, lambda m: reply_xml("好"))
    runtime.model_config = dataclasses.replace(
        runtime.model_config, context_window=3000, max_tokens=500
    )
    for i in range(12):  # CJK text: about one token per character
        await runtime.handle_message(dm(f"第{i}条消息 " + "海" * 300))
    await runtime.handle_message(dm("the newest message"))
    call = runtime.model.calls[-1]
    prompt = call.messages[-1].content
    total = estimate_tokens(call.messages[0].content) + estimate_tokens(prompt)
    assert total <= 3000 - 500
    assert "Bob: the newest message" in prompt
    assert "第0条消息" not in prompt  # the oldest lines went first


async def test_generate_post_gives_up_after_two_empty_answers(sqlite_store, make_runtime):
    from carrier_cli.errors import RuntimeFailure

    runtime = await make_runtime(sqlite_store, ["", "<response></response>", "unasked"])
    with pytest.raises(RuntimeFailure, match="no usable post text after 2 attempts"):
        await runtime.generate_post()
    assert len(runtime.model.calls) == 2


async def test_turn_log_renders_prompt_output_and_timings(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, ["<response>junk", reply_xml("fine")])
    await runtime.handle_message(dm("hello log"))
    text = runtime.last_turn_log.render()
    assert "decision=DIRECT parse_failures=1" in text
    assert "--- reply #1" in text and "--- reply #2" in text
    assert "[output]\n<response>junk" in text and "Bob: hello log" in text
    assert "timings (ms): " in text and "overhead=" in text


async def test_closing_the_stream_after_done_is_not_an_interruption(sqlite_store, make_runtime):
    runtime = await make_runtime(sqlite_store, [reply_xml("complete")])
    stream = runtime.stream_message(dm("hi"))
    async with contextlib.aclosing(stream):
        async for event in stream:
            if event.kind == "done":
                break
    assert not runtime.turn_logs[-1].interrupted
