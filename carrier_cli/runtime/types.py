"""What clients hand to the runtime and what they get back.

Clients (terminal, Discord, HTTP) translate platform events into `IncomingMessage` and
render `TurnResult`; nothing platform-specific crosses this line.

Who decides what about answering: the client knows its platform, so it says *how* the agent
was addressed (`IncomingMessage.addressed`) and what its own rules ask for (`ignore`,
`respond_only_when_addressed`, filled from e.g. `clients.discord`). The runtime knows the
conversation, so it turns that verdict into a `Decision` (runtime/should_respond.py) and asks
the small model only when nothing was said to the agent and the client's rules allow
chatter. A client that does not compute addressing (a library caller building messages by
hand) leaves `addressed` unset: the runtime then reads `is_direct` / `mentions_agent` and
looks for the character's name in the text itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from carrier_cli.runtime.outgoing import Embed, OutgoingFile

Decision = Literal["DIRECT", "MENTIONED", "RESPOND", "IGNORE", "STOP"]


class Addressing(StrEnum):
    """How a message reached the agent, as the client saw it (platform-neutral).

    DIRECT is answered as a one-to-one conversation; MENTION, REPLY and NAME are answered
    as addressed to the agent; NONE leaves the decision to the client's policy and, failing
    that, the small model.
    """

    DIRECT = "direct"  # a one-to-one conversation: a DM, the terminal, an API call
    MENTION = "mention"  # the platform's own mention of the agent (@agent)
    REPLY = "reply"  # a reply to one of the agent's messages
    NAME = "name"  # the character's name or username as a word in the text
    NONE = "none"  # the client looked, and none of the above holds


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
    sender_is_bot: bool = False  # a fact for plugins and logs; the client's rules act on it
    attachments: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # The client's verdict (see the module docstring). `addressed` None: the client did not
    # look, the runtime reads `is_direct`/`mentions_agent` and matches the name in `text`;
    # set, it wins over both (clients that set it keep the two booleans consistent with it).
    addressed: Addressing | None = None
    # The client's rules: answer only when addressed (never ask the small model) ...
    respond_only_when_addressed: bool = False
    # ... and: remember this message, never answer it (e.g. a bot the client ignores).
    ignore: bool = False


@dataclass
class TurnResult:
    decision: Decision
    message_id: uuid.UUID  # memory id of the incoming message
    text: str | None = None  # the reply, None when the agent did not respond
    reply_id: uuid.UUID | None = None
    actions: list[str] = field(default_factory=list)
    thought: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # Messages produced by actions after the reply (e.g. CONTINUE or a plugin action);
    # clients send them after `text`, in order.
    extra_messages: list[str] = field(default_factory=list)
    replayed: bool = False  # the message was handled before; `text` is the stored reply
    # Files and embeds to send after the text (runtime/outgoing.py); clients that cannot
    # send them degrade (the terminal prints names). Not kept for replays: the bytes are
    # never stored, so a replayed result has none.
    files: list[OutgoingFile] = field(default_factory=list)
    embeds: list[Embed] = field(default_factory=list)

    @property
    def responded(self) -> bool:
        return self.text is not None


@dataclass
class TurnEvent:
    """Streaming: `delta` events carry reply text as it arrives; the last event is `done`."""

    kind: Literal["delta", "done"]
    text: str = ""
    result: TurnResult | None = None


@dataclass
class PromptRecord:
    """One model call of a turn, for /debug and --debug."""

    purpose: str  # "should_respond" | "reply" | "continue" | "facts" | "post"
    model: str
    prompt: str  # the rendered user prompt (the system prompt is in `system`)
    system: str = ""
    output: str | None = None  # raw model output; None if the call failed
    seconds: float = 0.0
    attempt: int = 1
    error: str | None = None


@dataclass
class TurnLog:
    """What happened in one turn: the prompts, the raw outputs and where the time went."""

    message_id: uuid.UUID
    room_id: uuid.UUID
    started_at: datetime
    decision: Decision | None = None
    calls: list[PromptRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    parse_failures: int = 0
    newer_messages: int = 0  # messages that arrived in the room while this turn ran
    interrupted: bool = False

    def render(self) -> str:
        """A plain-text dump for `/debug` and debug logging."""
        lines = [
            f"turn {self.message_id} room {self.room_id} at {self.started_at:%H:%M:%S}: "
            f"decision={self.decision} parse_failures={self.parse_failures} "
            f"newer_messages={self.newer_messages}",
            "timings (ms): " + ", ".join(f"{k}={v * 1000:.1f}" for k, v in self.timings.items()),
        ]
        for call in self.calls:
            lines.append(
                f"--- {call.purpose} #{call.attempt} model={call.model} "
                f"{call.seconds * 1000:.0f} ms" + (f" error={call.error}" if call.error else "")
            )
            if call.system:
                lines.append("[system]\n" + call.system)
            lines.append("[prompt]\n" + call.prompt)
            lines.append("[output]\n" + (call.output if call.output is not None else "(none)"))
        return "\n".join(lines)
