"""Compose: read what the reply prompt is made of, concurrently, and build it.

Recent messages, relevant knowledge, facts about the sender, the plugin providers and the
actions' validate() run at once; a slow or failing provider or validate is left out of
the turn (after `plugin_timeout`) rather than failing it. The prompt itself is built by
`prompts.reply`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from carrier_cli.cache import Cache, LocalCache
from carrier_cli.memory.types import Memory, MemoryKind
from carrier_cli.runtime import prompts
from carrier_cli.runtime.builtin_actions import always_valid
from carrier_cli.runtime.turn.state import TurnDeps, TurnState

if TYPE_CHECKING:
    from carrier_cli.runtime.context import TurnContext
    from carrier_cli.runtime.plugins import Action, Provider

log = logging.getLogger("carrier.runtime")

# Whole documents are left out: their fragments carry the same text in prompt-sized pieces.
KNOWLEDGE_KINDS = [MemoryKind.FRAGMENT, MemoryKind.LORE, MemoryKind.FACT]
FACT_CACHE_LIMIT = 10_000  # people; past it the least recently used are forgotten


async def compose(deps: TurnDeps, turn: TurnState, facts: FactCache) -> None:
    """Fill `ctx.state`, `turn.offered` (the actions whose validate passed) and
    `turn.messages` (the reply prompt)."""
    ctx = turn.ctx
    message = ctx.message
    # What is already known (recent messages read by decide, cached facts, no text to
    # search, the markers' validate) is not run as a task: asyncio.gather makes a Task of
    # every awaitable, and those were ~10 tasks per turn. Everything else runs at once.
    pending: list[Awaitable[Any]] = []

    def later(work: Awaitable[Any]) -> int:
        pending.append(work)
        return len(pending) - 1

    recent_at = (
        later(deps.store.recent(ctx.room.id, n=deps.recent_count)) if turn.recent is None else -1
    )
    knowledge_at = (
        later(
            deps.store.search(
                ctx.memory.embedding or message.text,
                agent_id=deps.agent_id,
                k=deps.knowledge_k,
                threshold=deps.knowledge_threshold,
                kinds=KNOWLEDGE_KINDS,
            )
        )
        if message.text.strip()
        else -1
    )
    held_facts = facts.peek(ctx.entity.id)
    facts_at = later(facts.get(deps, ctx.entity.id)) if held_facts is None else -1
    providers_at = later(_providers(deps, ctx))
    validated = [-1 if always_valid(a) else later(_validate(deps, a, ctx)) for a in deps.actions]
    results = await asyncio.gather(*pending)
    recent_memories: list[Memory] = results[recent_at] if recent_at >= 0 else turn.recent or []
    hits = results[knowledge_at] if knowledge_at >= 0 else []
    sender_facts: list[Memory] = results[facts_at] if facts_at >= 0 else held_facts or []
    provided = results[providers_at]
    recent_memories = turn_view(recent_memories, ctx.memory, deps.agent_id)
    turn.offered = [
        a for a, at in zip(deps.actions, validated, strict=True) if at < 0 or results[at]
    ]
    turn.messages = prompts.reply(
        deps,
        ctx,
        offered=turn.offered,
        recent=recent_memories,
        hits=hits,
        facts=sender_facts,
        provided=provided,
    )


async def read_recent(deps: TurnDeps, ctx: TurnContext) -> list[Memory]:
    """The room's recent messages as this turn sees them (`turn_view`)."""
    recent = await deps.store.recent(ctx.room.id, n=deps.recent_count)
    return turn_view(recent, ctx.memory, deps.agent_id)


def turn_view(recent: list[Memory], own: Memory, agent_id: uuid.UUID) -> list[Memory]:
    """Messages from others that arrived after this turn's message belong to later
    turns (which answer them); leaving them out here avoids answering them twice."""
    cutoff = own.created_at
    if cutoff is None:
        return recent
    return [
        m
        for m in recent
        if m.entity_id == agent_id or m.created_at is None or m.created_at <= cutoff
    ]


class FactCache:
    """Latest facts about each person, behind the `carrier_cli.cache.Cache` interface: an
    in-process LRU by default, `cluster.cache.RedisCache` with `redis_url` (so a fact
    stored through one process is seen by the others' next turn). Facts change only when
    an evaluator or the API stores one (which calls `forget`), so most turns skip the
    query; the TTL bounds how long facts written around the cache (`carrier memory` in
    another process without Redis) stay unseen."""

    def __init__(self, cache: Cache[uuid.UUID, list[Memory]] | None = None) -> None:
        # `is None`, not `or`: an empty cache has len() 0 and is falsy.
        self.cache: Cache[uuid.UUID, list[Memory]] = (
            LocalCache(capacity=FACT_CACHE_LIMIT) if cache is None else cache
        )

    def peek(self, entity_id: uuid.UUID) -> list[Memory] | None:
        """The facts held for this person now, None when they must be loaded (`get`)."""
        return self.cache.peek(entity_id)

    async def get(self, deps: TurnDeps, entity_id: uuid.UUID) -> list[Memory]:
        held = self.cache.peek(entity_id)  # most turns: a dict lookup, as before
        if held is not None:
            return held

        async def load() -> list[Memory]:
            return await deps.store.list(
                agent_id=deps.agent_id,
                kinds=[MemoryKind.FACT],
                entity_id=entity_id,
                limit=deps.sender_fact_limit,
            )

        return await self.cache.get_or_load(entity_id, load, deps.fact_cache_ttl)

    def forget(self, entity_id: uuid.UUID | None = None) -> None:
        """Drop one person's facts (None: everyone's) here now, elsewhere soon."""
        self.cache.forget(entity_id)

    async def forget_everywhere(self, entity_id: uuid.UUID | None = None) -> None:
        """Like `forget`, returning once every process has been told."""
        if entity_id is None:
            await self.cache.invalidate()
        else:
            await self.cache.delete(entity_id)

    async def aclose(self) -> None:
        await self.cache.aclose()


async def _providers(deps: TurnDeps, ctx: TurnContext) -> list[object]:
    """Every provider's result, in order; then `ctx.providers_done` (SEND_FILE waits)."""
    try:
        return list(await asyncio.gather(*(_run_provider(deps, p, ctx) for p in deps.providers)))
    finally:
        ctx.providers_done.set()


async def _run_provider(deps: TurnDeps, provider: Provider, ctx: TurnContext) -> object:
    timeout = deps.plugin_timeout
    try:
        async with asyncio.timeout(timeout):
            return await provider.get(ctx)
    except TimeoutError:
        log.warning(
            "provider %s took over %.0f s; left out of this turn",
            provider.name,
            timeout,
        )
    except Exception as exc:
        log.warning("provider %s failed and is left out of this turn: %s", provider.name, exc)
    return None


async def _validate(deps: TurnDeps, action: Action, ctx: TurnContext) -> bool:
    timeout = deps.plugin_timeout
    try:
        async with asyncio.timeout(timeout):
            return bool(await action.validate(ctx))
    except TimeoutError:
        log.warning(
            "action %s validate() took over %.0f s; not offered",
            action.name,
            timeout,
        )
    except Exception as exc:
        log.warning("action %s validate() failed; not offered: %s", action.name, exc)
    return False
