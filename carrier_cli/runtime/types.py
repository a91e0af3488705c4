"""What clients hand to the runtime and what they get back.

Clients (terminal, Discord, HTTP) translate platform events into `IncomingMessage` and
render `TurnResult`; nothing platform-specific crosses this line.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Decision = Literal["DIRECT", "MENTIONED", "RESPOND", "IGNORE", "STOP"]


@dataclass
class IncomingMessage:
    text: str
    source: str  # "terminal" | "discord" | "api" | "instagram"
    room_key: str  # platform room id: channel id, DM channel id, terminal room name
    sender_key: str  # platform user id
    sender_name: str
    message_key: str | None = None  # platform message id -> deterministic memory id
    room_name: str | None = None
    is_direct: bool = False  # DM, terminal or API call: should-respond is skipped
    mentions_agent: bool = False  # mentioned, replied to, or named (decided by the client)
    sender_is_bot: bool = False
    attachments: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class TurnResult:
    decision: Decision
    message_id: uuid.UUID  # memory id of the incoming message
    text: str | None = None  # the reply, None when the agent did not respond
    reply_id: uuid.UUID | None = None
    actions: list[str] = field(default_factory=list)
    thought: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def responded(self) -> bool:
        return self.text is not None


@dataclass
class TurnEvent:
    """Streaming: `delta` events carry reply text as it arrives; the last event is `done`."""

    kind: Literal["delta", "done"]
    text: str = ""
    result: TurnResult | None = None
