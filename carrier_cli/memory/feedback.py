"""Feedback on the agent's replies: a person's 👍/👎 (or another configured reaction).

One memory of kind `feedback` per (reply, person, reaction), linked to the reply's memory
id and to its turn (the incoming message's memory id, which model-call records carry as
`turn_id`), in the reply's room. Its id is derived from those parts, so the same reaction
reported twice is stored once and taking the reaction back deletes exactly that memory.
Evaluators read it with `list_feedback`; `carrier logs show` shows a turn's feedback.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from carrier_cli.memory.types import Memory, MemoryKind, stable_id

if TYPE_CHECKING:
    from carrier_cli.memory.store import MemoryStore

Polarity = Literal["positive", "negative"]
LIST_LIMIT = 500  # feedback memories read for one room or turn


@dataclass(frozen=True)
class Feedback:
    reply_id: uuid.UUID  # the reply's memory id
    turn_id: uuid.UUID | None  # the incoming message it answered
    polarity: Polarity
    reaction: str  # the emoji (or its name)
    person_key: str  # the platform user id of who reacted
    person_name: str | None = None

    @property
    def value(self) -> int:
        return 1 if self.polarity == "positive" else -1


def feedback_id(
    agent_id: uuid.UUID, source: str, platform_message_id: str, person_key: str, reaction: str
) -> uuid.UUID:
    return stable_id(source, "feedback", platform_message_id, person_key, reaction, agent_id)


async def record_feedback(
    store: MemoryStore,
    agent_id: uuid.UUID,
    feedback: Feedback,
    *,
    source: str,
    platform_message_id: str,
    room_id: uuid.UUID | None,
) -> Memory:
    who = feedback.person_name or feedback.person_key
    memory = Memory(
        agent_id=agent_id,
        kind=MemoryKind.FEEDBACK,
        room_id=room_id,
        id=feedback_id(
            agent_id, source, platform_message_id, feedback.person_key, feedback.reaction
        ),
        content={
            "text": f"{feedback.reaction} ({feedback.polarity}) from {who} on reply "
            f"{feedback.reply_id}",
            "source": source,
            "feedback": feedback.polarity,
            "value": feedback.value,
            "reaction": feedback.reaction,
            "reply_id": str(feedback.reply_id),
            "turn_id": str(feedback.turn_id) if feedback.turn_id else None,
            "person_key": feedback.person_key,
        },
        metadata={"platform_message_id": platform_message_id},
    )
    return await store.add(memory, embed=False, dedupe=True)


async def remove_feedback(
    store: MemoryStore,
    agent_id: uuid.UUID,
    *,
    source: str,
    platform_message_id: str,
    person_key: str,
    reaction: str,
) -> bool:
    """Delete the feedback the person gave with that reaction; False if there was none."""
    ids = [feedback_id(agent_id, source, platform_message_id, person_key, reaction)]
    return bool(await store.delete(ids))


async def list_feedback(
    store: MemoryStore,
    *,
    agent_id: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
    turn_id: uuid.UUID | None = None,
    reply_id: uuid.UUID | None = None,
) -> list[Memory]:
    """Feedback memories (newest first, at most LIST_LIMIT), optionally of one turn/reply."""
    rows = await store.list(
        agent_id=agent_id, room_id=room_id, kinds=[MemoryKind.FEEDBACK], limit=LIST_LIMIT
    )
    if turn_id is not None:
        rows = [m for m in rows if m.content.get("turn_id") == str(turn_id)]
    if reply_id is not None:
        rows = [m for m in rows if m.content.get("reply_id") == str(reply_id)]
    return rows
