"""Forgetting a person: what the agent stored about one platform user, deleted on request.

Discord's `/forget` calls it, but nothing here knows Discord: a person is the entity the
runtime derives from (platform, platform user id) (`stable_id(platform, "entity", id)`, as
`MemoryStore.ensure_entity` does), so any client, the API or a script can use it.

- scope "facts": the fact memories about the person (what the FACTS evaluator extracted).
- scope "all": those and every message the person sent, in every room of this agent.

The agent's own replies stay (they are the agent's messages, not the person's); the entity
row stays too (rooms list their participants). Deletion goes through `MemoryStore.delete`,
so both backends (SQLite, PostgreSQL) drop the rows with their vectors in the same way.
Ids are collected in pages of `PAGE` and deleted in the same batches, so a person with
100,000 messages costs 200 round trips of bounded size, never one unbounded statement.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from carrier_cli.memory.types import MemoryKind, stable_id

if TYPE_CHECKING:
    from carrier_cli.memory.store import MemoryStore

Scope = Literal["facts", "all"]
SCOPES: tuple[Scope, ...] = ("facts", "all")
PAGE = 500  # ids listed and deleted per round trip


@dataclass(frozen=True)
class Forgotten:
    """What `forget_person` deleted."""

    entity_id: uuid.UUID
    facts: int
    messages: int

    @property
    def total(self) -> int:
        return self.facts + self.messages


def person_entity_id(platform: str, external_id: str) -> uuid.UUID:
    """The entity id the runtime stores a platform user's memories under."""
    return stable_id(platform, "entity", external_id)


async def count_about(
    store: MemoryStore, agent_id: uuid.UUID, entity_id: uuid.UUID, kind: MemoryKind
) -> int:
    """How many memories of `kind` the agent holds under the person (shown before asking
    for confirmation). Counted in pages: the store's count() has no entity filter."""
    total, after = 0, None
    while True:
        page = await store.list(
            agent_id=agent_id, kinds=[kind], entity_id=entity_id, limit=PAGE, after=after
        )
        total += len(page)
        if len(page) < PAGE:
            return total
        after = page[-1]


async def _delete_kind(
    store: MemoryStore, agent_id: uuid.UUID, entity_id: uuid.UUID, kind: MemoryKind
) -> int:
    deleted = 0
    while True:
        # Always the first page: what was deleted is gone, so the next page moves up.
        page = await store.list(agent_id=agent_id, kinds=[kind], entity_id=entity_id, limit=PAGE)
        if not page:
            return deleted
        removed = await store.delete([memory.id for memory in page])
        deleted += removed
        if removed == 0:  # nothing deletable left (e.g. deleted concurrently): stop
            return deleted


async def forget_person(
    store: MemoryStore,
    agent_id: uuid.UUID,
    *,
    platform: str,
    external_id: str,
    scope: Scope = "facts",
) -> Forgotten:
    """Delete what `agent_id` stored about the user `external_id` of `platform`.

    Callers holding a fact cache (the runtime) must drop the person's cached facts after
    this (`AgentRuntime.forget_facts_everywhere(entity_id)`), or the next turn may still
    see them for up to the cache's TTL."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    entity_id = person_entity_id(platform, external_id)
    facts = await _delete_kind(store, agent_id, entity_id, MemoryKind.FACT)
    messages = 0
    if scope == "all":
        messages = await _delete_kind(store, agent_id, entity_id, MemoryKind.MESSAGE)
    return Forgotten(entity_id=entity_id, facts=facts, messages=messages)
