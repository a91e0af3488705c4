"""The fact evaluator stores new facts with embeddings and skips those already known."""

from __future__ import annotations

from carrier_cli.memory.types import MemoryKind
from tests.runtime.conftest import dm, reply_xml


def _script(fact_replies: list[str]):
    prompts: list[str] = []

    def script(messages):
        content = messages[-1].content
        if "Extract lasting facts" in content:
            prompts.append(content)
            return fact_replies.pop(0)
        return reply_xml("Nice!")

    return script, prompts


async def test_fact_is_stored_then_known_fact_skipped(store, make_runtime, character):
    every_turn = character.model_copy(update={"settings": {"fact_interval": 1}})
    script, prompts = _script(
        [
            "<facts><fact>Bob lives in Lisbon.</fact></facts>",
            "<facts><fact>bob lives in Lisbon</fact><fact>Bob has a dog named Rex.</fact></facts>",
        ]
    )
    runtime = await make_runtime(store, script, character_=every_turn)
    await runtime.handle_message(dm("I moved to Lisbon last year"))
    await runtime.wait_idle()
    bob = await store.ensure_entity("terminal", "u1", "Bob")
    facts = await runtime.facts_about(bob.id)
    assert [f.text for f in facts] == ["Bob lives in Lisbon."]
    assert facts[0].kind == MemoryKind.FACT
    stored = await store.get(facts[0].id)
    assert stored is not None and stored.embedding is not None

    await runtime.handle_message(dm("My dog Rex loves the beach"))
    await runtime.wait_idle()
    facts = await runtime.facts_about(bob.id)
    assert [f.text for f in facts] == ["Bob lives in Lisbon.", "Bob has a dog named Rex."]
    assert "- Bob lives in Lisbon." in prompts[1]  # the prompt lists what is known

    # Facts about the sender reach the next reply prompt.
    await runtime.handle_message(dm("what do you remember about me?"))
    reply_prompt = [c for c in runtime.model.calls if "<actions>" in c.messages[-1].content][-1]
    assert "Facts about Bob" in reply_prompt.messages[-1].content
    assert "Bob has a dog named Rex." in reply_prompt.messages[-1].content


async def test_near_duplicate_fact_is_skipped_by_similarity(sqlite_store, make_runtime, character):
    every_turn = character.model_copy(update={"settings": {"fact_interval": 1}})
    script, _ = _script(
        [
            "<facts><fact>Bob lives in Lisbon.</fact></facts>",
            "<facts><fact>Bob is living in Lisbon.</fact></facts>",
        ]
    )
    runtime = await make_runtime(sqlite_store, script, character_=every_turn)
    await runtime.handle_message(dm("I study fish for a living"))
    await runtime.wait_idle()
    await runtime.handle_message(dm("mostly in the Tagus estuary"))
    await runtime.wait_idle()
    count = await sqlite_store.count(agent_id=runtime.agent_id, kinds=[MemoryKind.FACT])
    assert count == 1


async def test_evaluator_runs_every_few_messages(sqlite_store, make_runtime):
    script, prompts = _script(["<facts></facts>"] * 5)
    runtime = await make_runtime(sqlite_store, script)  # default interval: 8 messages
    for i in range(9):
        await runtime.handle_message(dm(f"message number {i}"))
    await runtime.wait_idle()
    assert len(prompts) == 1
