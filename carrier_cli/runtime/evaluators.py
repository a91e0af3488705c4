"""The built-in fact evaluator: every few messages in a room, ask the small model for new
facts about the people talking and store them as fact memories (with embeddings).

Known facts are skipped twice over: the prompt lists what is already known, and each
candidate is checked against stored facts (same normalised text, or cosine >= 0.92), so
"Alice lives in Lisbon." is not stored again as "alice lives in lisbon".
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING

from carrier_cli.memory.types import Memory, MemoryKind, stable_id
from carrier_cli.runtime import formatting
from carrier_cli.runtime.parsing import parse_facts
from carrier_cli.runtime.templates import render

if TYPE_CHECKING:
    from carrier_cli.runtime.context import TurnContext

log = logging.getLogger("carrier.runtime.facts")

SIMILAR_FACT = 0.92
_ABOUT = re.compile(r"^\s*\[?about[:=]\s*([^\]\n]+)\]?\s*", re.I)


def normalize_fact(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


class FactEvaluator:
    """ElizaOS's fact/reflection evaluator. Runs when the room's message count reaches a
    multiple of `every` (ElizaOS v1 uses about 32/4); `every` comes from the character's
    `settings.fact_interval` when set."""

    name = "FACTS"
    description = "Extract lasting facts about participants and store them as fact memories."

    def __init__(self, every: int = 8, recent: int = 16) -> None:
        self.every = every
        self.recent = recent

    def _interval(self, ctx: TurnContext) -> int:
        value = ctx.runtime.character.settings.get("fact_interval", self.every)
        try:
            return max(1, int(value))
        except (TypeError, ValueError):
            return self.every

    async def validate(self, ctx: TurnContext) -> bool:
        if not ctx.memory.text.strip():
            return False
        count = ctx.runtime.room_message_counts.get(ctx.room.id, 0)
        return count > 0 and count % self._interval(ctx) == 0

    async def handler(self, ctx: TurnContext) -> None:
        await self.extract(ctx)

    async def extract(self, ctx: TurnContext) -> list[Memory]:
        """Ask the model and store the new facts; returns what was stored."""
        runtime = ctx.runtime
        store = runtime.store
        recent = await store.recent(ctx.room.id, n=self.recent)
        people: dict[str, uuid.UUID] = {}
        for memory in recent:
            name = memory.content.get("name")
            if name and memory.entity_id is not None and memory.entity_id != runtime.agent_id:
                people[str(name).lower()] = memory.entity_id
        people.setdefault(ctx.message.sender_name.lower(), ctx.entity.id)
        known: list[Memory] = []
        for entity_id in set(people.values()):
            known.extend(await runtime.facts_about(entity_id))
        values = {
            "agentName": runtime.character.name,
            "senderName": ctx.message.sender_name,
            "recentMessages": formatting.format_conversation(recent, max_chars=8000),
            "knownFacts": "\n".join(f"- {m.text}" for m in known) or "(none yet)",
        }
        prompt = render(runtime.templates["fact_extraction"], values)
        raw = await runtime.complete_small(prompt, purpose="facts")
        candidates = parse_facts(raw)
        known_norm = {normalize_fact(m.text) for m in known}
        stored: list[Memory] = []
        for candidate in candidates[:10]:
            entity_id = ctx.entity.id
            about = _ABOUT.match(candidate)
            if about:
                entity_id = people.get(about.group(1).strip().lower(), entity_id)
                candidate = candidate[about.end() :].strip()
            else:
                for name, person in people.items():
                    if re.search(rf"\b{re.escape(name)}\b", candidate.lower()):
                        entity_id = person
                        break
            norm = normalize_fact(candidate)
            if not norm or norm in known_norm:
                continue
            similar = await store.search(
                candidate,
                agent_id=runtime.agent_id,
                k=1,
                threshold=SIMILAR_FACT,
                kinds=[MemoryKind.FACT],
            )
            if similar:
                log.debug("fact %r skipped: close to known %r", candidate, similar[0].memory.text)
                continue
            memory = Memory(
                agent_id=runtime.agent_id,
                content={
                    "text": candidate,
                    "source": ctx.message.source,
                    "from_message": str(ctx.memory.id),
                },
                kind=MemoryKind.FACT,
                room_id=ctx.room.id,
                entity_id=entity_id,
                id=stable_id("fact", runtime.agent_id, norm),
            )
            stored.append(await store.add(memory, embed=True, dedupe=False))
            runtime.forget_facts(entity_id)
            known_norm.add(norm)
        if stored:
            log.debug("stored %d new fact(s) from room %s", len(stored), ctx.room.id)
        return stored
