"""What a turn's model calls are for: the `CallContext` the providers put on their records.

The context is a context variable (usage/records.py). A stage that awaits the model sets
it around the await; a stage that streams sets it around each step of the model's stream
(`stepped`), never across a `yield` to the consumer, so the turn's context never leaks
into the code that reads the stream (the terminal, the Discord client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from carrier_cli.usage.records import CallContext, using

if TYPE_CHECKING:
    from carrier_cli.runtime.context import TurnContext
    from carrier_cli.runtime.turn.state import TurnDeps


def call_context(deps: TurnDeps, ctx: TurnContext, purpose: str) -> CallContext:
    """Character, agent, room, client and turn (the incoming memory's id) of a call."""
    return CallContext(
        purpose=purpose,
        character=deps.character.name,
        agent_id=deps.agent_id,
        room_id=ctx.room.id,
        client=ctx.message.source,
        turn_id=ctx.memory.id,
    )


async def stepped(context: CallContext, chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """`chunks` with `context` set while each chunk is being fetched; closes `chunks`."""
    try:
        while True:
            with using(context):
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            with using(context):
                await aclose()
