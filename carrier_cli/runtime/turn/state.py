"""What the stages share: `TurnDeps` (the runtime as the stages see it) and `TurnState`
(one turn in progress, filled stage by stage)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from carrier_cli.memory.types import Entity, Memory, Room
from carrier_cli.runtime.parsing import ParsedReply
from carrier_cli.runtime.types import Decision, TurnLog

if TYPE_CHECKING:
    from carrier_cli.character.model import Character
    from carrier_cli.llm.base import ChatMessage, ChatModel
    from carrier_cli.llm.factory import ModelConfig
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.runtime.character_state import CharacterState
    from carrier_cli.runtime.context import TurnContext
    from carrier_cli.runtime.plugins import Action, Evaluator, Provider
    from carrier_cli.usage.budget import BudgetGate


class TurnDeps(Protocol):
    """What the stages read of the runtime (`AgentRuntime` is one). Read at the time of
    use, never copied: `/model` swaps `model_config`, tests set `rng` and `plugin_timeout`
    on a live runtime, and the next turn must see it."""

    @property
    def character(self) -> Character: ...
    @property
    def store(self) -> MemoryStore: ...
    @property
    def model(self) -> ChatModel: ...
    @property
    def model_config(self) -> ModelConfig: ...
    @property
    def agent_id(self) -> uuid.UUID: ...
    @property
    def templates(self) -> dict[str, str]: ...
    @property
    def character_state(self) -> CharacterState: ...
    @property
    def rng(self) -> random.Random: ...
    @property
    def actions(self) -> list[Action]: ...
    @property
    def providers(self) -> list[Provider]: ...
    @property
    def evaluators(self) -> list[Evaluator]: ...
    @property
    def recent_count(self) -> int: ...
    @property
    def knowledge_k(self) -> int: ...
    @property
    def knowledge_threshold(self) -> float: ...
    @property
    def sender_fact_limit(self) -> int: ...
    @property
    def fact_cache_ttl(self) -> float: ...
    @property
    def plugin_timeout(self) -> float: ...
    @property
    def evaluator_timeout(self) -> float: ...
    @property
    def budget(self) -> BudgetGate: ...

    def find_action(self, name: str) -> Action | None: ...

    def publish_stored(self, memory: Memory, room: Room) -> None: ...


@dataclass
class Intake:
    """The stored incoming message and where it belongs (the intake stage's output)."""

    room: Room
    entity: Entity
    memory: Memory
    seen_before: bool


@dataclass
class TurnState:
    """One turn in progress. Each stage reads what the earlier ones left here."""

    ctx: TurnContext
    tlog: TurnLog
    stream: bool
    started: float  # perf_counter() at arrival, before waiting for the room
    # Recent messages, read by decide when the small model had to be asked (compose
    # reuses them instead of reading them again); None when the rules decided.
    recent: list[Memory] | None = None
    offered: list[Action] = field(default_factory=list)  # actions whose validate() passed
    messages: list[ChatMessage] = field(default_factory=list)  # the reply prompt
    parsed: ParsedReply = field(default_factory=lambda: ParsedReply(text=None, ok=False))
    model_seconds: float = 0.0  # time spent waiting for the model, all calls of the turn
    # The reply's memory id, fixed once per turn: streamed `reply.token` events and the
    # stored reply must name the same id, and without a platform message id `ids.reply_id`
    # is random on every call. None: act.store_reply computes it (callers building a
    # TurnState by hand).
    reply_id: uuid.UUID | None = None
    # Gives the client's slot back (TurnHooks.release) once no model call is left in the
    # turn; None: the slot is kept to the end (no hooks, or a remote embedder, for which
    # storing the reply is a model call).
    release_slot: Callable[[], None] | None = None

    @property
    def timings(self) -> dict[str, float]:
        return self.tlog.timings

    @property
    def decision(self) -> Decision:
        return self.ctx.decision
