"""What actions, providers and evaluators see of a turn."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from carrier_cli.memory.types import Entity, Memory, Room
from carrier_cli.runtime.types import Decision, IncomingMessage

if TYPE_CHECKING:
    from carrier_cli.runtime.agent import AgentRuntime


@dataclass
class TurnContext:
    """One turn in progress. `state` holds the composed template values (filled before the
    prompt is rendered); `reply` is set once the agent's reply is stored."""

    runtime: AgentRuntime
    message: IncomingMessage
    memory: Memory  # the stored incoming message
    room: Room
    entity: Entity
    decision: Decision = "RESPOND"
    state: dict[str, str] = field(default_factory=dict)
    reply: Memory | None = None
    thought: str | None = None
    actions: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # extra messages produced by actions
    continued: bool = False  # CONTINUE already used this turn (it is capped at one)

    @property
    def agent_id(self) -> object:
        return self.runtime.agent_id
