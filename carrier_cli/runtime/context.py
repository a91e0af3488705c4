"""What actions, providers and evaluators see of a turn, and the protocols they implement.

A plugin sees a turn through `TurnContext`; `ctx.runtime` is typed as `TurnServices`, the
few things plugins use (the agent's id, character, store, templates, the small model, the
fact helpers, the action lookup and CONTINUE), not the whole `AgentRuntime`. The object is
still the runtime, so existing plugins keep working; the narrow type is what Carrier
promises to keep stable, and it lets this module stand without importing the runtime.

The plugin protocols (Action, Provider, Evaluator) live here too because they and the
context refer to each other (an action takes a context, the services return an action);
`carrier_cli.runtime.plugins` re-exports them with the Plugin bundle and discovery.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from carrier_cli.memory.types import Entity, Memory, Room
from carrier_cli.runtime.outgoing import ActionOutput, Embed, OutgoingFile
from carrier_cli.runtime.types import Decision, IncomingMessage, TurnLog

if TYPE_CHECKING:
    from carrier_cli.character.model import Character
    from carrier_cli.memory.store import MemoryStore

# One line of an example conversation: {"name": "{{user1}}", "text": "...", "actions": [...]}
ActionExample = Mapping[str, Any]
ProviderResult = str | Mapping[str, str] | None


@runtime_checkable
class Action(Protocol):
    """Something the agent can do after deciding on a reply (ElizaOS `Action`).

    The model picks actions by name; `similes` are accepted alternatives. `validate` decides
    whether the action is offered this turn, `handler` runs it after the reply is stored and
    may return text, which the runtime stores and returns as an extra message, or an
    `ActionOutput` with text, files and embeds (runtime/outgoing.py).
    """

    name: str
    similes: Sequence[str]
    description: str
    examples: Sequence[Sequence[ActionExample]]

    async def validate(self, ctx: TurnContext) -> bool: ...

    async def handler(self, ctx: TurnContext) -> str | ActionOutput | None: ...


@runtime_checkable
class Provider(Protocol):
    """Contributes context to the prompt. A str goes under `{{providers}}` as a section
    headed by the provider name; a mapping adds named template values."""

    name: str

    async def get(self, ctx: TurnContext) -> ProviderResult: ...


@runtime_checkable
class Evaluator(Protocol):
    """Runs after a turn (in the background) when `validate` says so, e.g. fact extraction."""

    name: str
    description: str

    async def validate(self, ctx: TurnContext) -> bool: ...

    async def handler(self, ctx: TurnContext) -> None: ...


class TurnServices(Protocol):
    """The runtime as plugins see it (`ctx.runtime`). Read-only properties, so any object
    with these attributes fits; `AgentRuntime` is checked against it by mypy wherever it
    builds a TurnContext."""

    @property
    def agent_id(self) -> uuid.UUID: ...

    @property
    def character(self) -> Character: ...

    @property
    def store(self) -> MemoryStore: ...

    @property
    def rng(self) -> random.Random:
        """The runtime's random source (seeded in tests): use it instead of `random`."""
        ...

    @property
    def templates(self) -> Mapping[str, str]:
        """Prompt templates by Carrier name, the character's overrides applied."""
        ...

    @property
    def room_message_counts(self) -> Mapping[uuid.UUID, int]:
        """Messages stored per room by this runtime since it started."""
        ...

    async def complete_small(
        self, prompt: str, *, purpose: str, tlog: TurnLog | None = None, max_tokens: int = 512
    ) -> str:
        """One small-model call with the character's system prompt."""
        ...

    async def facts_about(self, entity_id: uuid.UUID) -> list[Memory]:
        """Facts the agent has stored about a person, oldest first."""
        ...

    def forget_facts(self, entity_id: uuid.UUID | None = None) -> None:
        """Drop cached facts (of one person, or all) after storing or deleting facts."""
        ...

    def find_action(self, name: str) -> Action | None:
        """The action a name or simile chosen by the model refers to, if any."""
        ...

    async def continue_turn(self, ctx: TurnContext) -> str | None:
        """One follow-up message after the reply (CONTINUE); at most one per turn."""
        ...


@dataclass
class TurnContext:
    """One turn in progress. `state` holds the composed template values (filled before the
    prompt is rendered); `reply` is set once the agent's reply is stored."""

    runtime: TurnServices
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
    # Files and embeds the turn answers with (runtime/outgoing.py); `file_offers` are the
    # files providers offered, sent only if the model chooses SEND_FILE.
    files: list[OutgoingFile] = field(default_factory=list)
    embeds: list[Embed] = field(default_factory=list)
    file_offers: list[OutgoingFile] = field(default_factory=list)
    # Set once every provider has run (SEND_FILE's validate waits for their offers).
    providers_done: asyncio.Event = field(default_factory=asyncio.Event)

    def send_file(self, file: OutgoingFile) -> None:
        """Answer with `file` (after the reply's text)."""
        self.files.append(file)

    def add_embed(self, embed: Embed) -> None:
        """Answer with `embed` (a structured card; text-only clients print it as text)."""
        self.embeds.append(embed)

    def offer_file(self, file: OutgoingFile) -> None:
        """From a provider: a file the agent may send; the model decides (SEND_FILE)."""
        self.file_offers.append(file)

    @property
    def agent_id(self) -> uuid.UUID:
        return self.runtime.agent_id
