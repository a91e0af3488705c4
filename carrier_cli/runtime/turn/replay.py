"""Replays: a platform message handled before gets its earlier result, not a second reply.

Results of this process are remembered (the last 2048); otherwise the stored reply and
action outputs are found by their deterministic ids (`ids.reply_id`).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

from carrier_cli.memory.types import Memory
from carrier_cli.runtime.turn.ids import reply_id
from carrier_cli.runtime.types import IncomingMessage, TurnResult

if TYPE_CHECKING:
    from carrier_cli.memory.store import MemoryStore

REMEMBERED = 2048


class Replays:
    def __init__(self) -> None:
        self._results: OrderedDict[uuid.UUID, TurnResult] = OrderedDict()

    def remember(self, result: TurnResult) -> None:
        self._results[result.message_id] = result
        while len(self._results) > REMEMBERED:
            self._results.popitem(last=False)

    async def lookup(
        self,
        store: MemoryStore,
        agent_id: uuid.UUID,
        message: IncomingMessage,
        memory: Memory,
    ) -> TurnResult | None:
        """The earlier result of a message seen before, if it was completed."""
        known = self._results.get(memory.id)
        if known is not None:
            return replace(known, replayed=True, timings={})
        stored = await stored_answer(store, agent_id, message)
        if stored is None:
            return None  # seen but never answered (interrupted): run the turn again
        reply, extra = stored
        content = reply.content
        return TurnResult(
            decision=reply.metadata.get("decision", "RESPOND"),
            message_id=memory.id,
            text=reply.text,
            reply_id=reply.id,
            actions=list(content.get("actions") or []),
            thought=content.get("thought"),
            extra_messages=extra,
            replayed=True,
        )


async def stored_answer(
    store: MemoryStore, agent_id: uuid.UUID, message: IncomingMessage
) -> tuple[Memory, list[str]] | None:
    """The reply stored for a platform message and the texts its actions stored after it
    (by their deterministic ids), or None when no reply was stored. Also what Discord's
    catch-up compares with the channel, to post what a kill cut off."""
    reply = await store.get(reply_id(message, agent_id))
    if reply is None:
        return None
    extra: list[str] = []
    for index in range(len(reply.content.get("actions") or [])):  # stored by position
        output = await store.get(reply_id(message, agent_id, "action", index))
        if output is not None:
            extra.append(output.text)
    return reply, extra
