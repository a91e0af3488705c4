"""Memory ids of a turn. A platform message id gives deterministic ids (the message, the
reply, each action's output), which is what lets a replayed message find its reply;
without one they are new time-ordered ids, as every memory's default (memory.ids)."""

from __future__ import annotations

import uuid

from carrier_cli.memory.ids import new_id
from carrier_cli.memory.types import stable_id
from carrier_cli.runtime.types import IncomingMessage


def message_id(message: IncomingMessage, agent_id: uuid.UUID) -> uuid.UUID:
    if message.message_key:
        return stable_id(message.source, "message", message.message_key, agent_id)
    return new_id()


def reply_id(
    message: IncomingMessage, agent_id: uuid.UUID, kind: str = "reply", *extra: object
) -> uuid.UUID:
    if message.message_key:
        return stable_id(message.source, kind, message.message_key, agent_id, *extra)
    return new_id()
