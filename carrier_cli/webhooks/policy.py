"""Which events become outbox rows, and the rows' bodies.

`OutboxPolicy` is set on a MemoryStore (`store.outbox`) by the webhook service when
webhooks are configured. The store then calls `rows_for_messages` inside the write
transaction that inserts memories, so a stored MESSAGE memory and its `message.created`
(and, for a reply, `reply.completed`) deliveries commit together or not at all. Events not
tied to a stored memory (agent.error, budget.reached, instagram.*) go through `enqueue`,
in their own transaction. The message data is `runtime.events.message_data`: webhooks,
the WebSocket and REST share one message shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from carrier_cli.memory import outbox
from carrier_cli.memory.rows import to_room
from carrier_cli.memory.schema import AGENTS, ROOMS
from carrier_cli.memory.types import MemoryKind
from carrier_cli.webhooks.settings import Webhook, url_hash

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from carrier_cli.memory.backend import MemoryBackend
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.memory.types import Memory

log = logging.getLogger("carrier.webhooks")


def body(event_type: str, event_id: str, created: datetime, data: dict[str, Any]) -> str:
    """The JSON a delivery POSTs (the `AgentEvent.envelope` shape), stored as sent."""
    envelope = {"id": event_id, "type": event_type, "created": created.isoformat(), "data": data}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=str)


class OutboxPolicy:
    """The configured webhooks' subscriptions, turned into rows."""

    def __init__(self, hooks: Sequence[Webhook]) -> None:
        self.hooks = list(hooks)
        # Set when rows were written by this process: the sender looks at once.
        self.wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def wants(self, event_type: str) -> list[Webhook]:
        return [h for h in self.hooks if event_type in h.events]

    def rows(
        self, event_type: str, event_id: str, payload: str, now: datetime
    ) -> list[dict[str, Any]]:
        return [
            outbox.new_row(
                webhook=h.key,
                url_hash=url_hash(h.url),
                event_type=event_type,
                event_id=event_id,
                payload=payload,
                now=now,
            )
            for h in self.wants(event_type)
        ]

    # ------------------------------------------------------------------ in the memory's transaction
    def rows_for_messages(
        self, backend: MemoryBackend, conn: Connection, memories: Sequence[Memory]
    ) -> None:
        """Called by the backend inside the transaction that inserted `memories` (the
        new ones only): their message.created / reply.completed rows."""
        from carrier_cli.runtime.events import message_data, room_ref

        created_hooks = bool(self.wants("message.created"))
        reply_hooks = bool(self.wants("reply.completed"))
        messages = [m for m in memories if MemoryKind(m.kind) is MemoryKind.MESSAGE and m.room_id]
        if not messages or not (created_hooks or reply_hooks):
            return
        room_ids = list({m.room_id for m in messages if m.room_id is not None})
        found = conn.execute(select(ROOMS).where(ROOMS.c.id.in_(room_ids)))
        rooms = {r.id: to_room(r) for r in found}
        agent_ids = list({m.agent_id for m in messages})
        agents = select(AGENTS.c.id, AGENTS.c.name).where(AGENTS.c.id.in_(agent_ids))
        names = {r.id: r.name for r in conn.execute(agents)}
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        for memory in messages:
            room = rooms.get(memory.room_id)  # type: ignore[arg-type]
            if room is None:
                continue
            agent = names.get(memory.agent_id, "")
            from_agent = memory.entity_id == memory.agent_id
            created = memory.created_at or now
            if created_hooks:
                data = message_data(memory, room, agent, from_agent=from_agent)
                payload = body("message.created", str(memory.id), created, data)
                rows += self.rows("message.created", str(memory.id), payload, now)
            # A reply (not an action's output) carries the decision that produced it.
            if reply_hooks and from_agent and "decision" in (memory.metadata or {}):
                content = memory.content
                data = {
                    "agent": agent,
                    "room": room_ref(room),
                    "in_reply_to": content.get("in_reply_to"),
                    "reply": {
                        "id": str(memory.id),
                        "text": content.get("text", ""),
                        "actions": list(content.get("actions") or []),
                        "thought": content.get("thought"),
                    },
                }
                payload = body("reply.completed", str(memory.id), created, data)
                rows += self.rows("reply.completed", str(memory.id), payload, now)
        outbox.insert_rows(backend, conn, rows)

    def written(self) -> None:
        """After the memory's transaction committed (on the event loop's thread)."""
        self.wake.set()

    # ------------------------------------------------------------------ events of their own
    async def enqueue(
        self,
        store: MemoryStore,
        event_type: str,
        data: dict[str, Any],
        *,
        event_id: str | None = None,
        created: datetime | None = None,
    ) -> int:
        """Rows for an event not tied to a stored memory, in their own transaction.
        A stable `event_id` (a post id, a budget period) makes a repeat enqueue nothing."""
        now = datetime.now(UTC)
        event_id = event_id or uuid.uuid4().hex
        payload = body(event_type, event_id, created or now, data)
        added = await outbox.enqueue(store, self.rows(event_type, event_id, payload, now))
        if added:
            self.wake.set()
        return added

    def enqueue_soon(
        self, store: MemoryStore, event_type: str, data: dict[str, Any], **kwargs: Any
    ) -> None:
        """From a synchronous callback (an event bus subscriber, a budget hook)."""
        if not self.wants(event_type):
            return
        task = asyncio.get_running_loop().create_task(
            self.enqueue(store, event_type, data, **kwargs)
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("Could not enqueue a webhook event: %s", task.exception())

    async def drain(self) -> None:
        """Wait for the enqueues still running (on stop)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def publish(
    store: MemoryStore,
    event_type: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
) -> int:
    """Enqueue an event for the webhooks that want it (Instagram's instagram.published /
    instagram.failed); nothing when no webhooks are configured. Returns the rows added."""
    policy = getattr(store, "outbox", None)
    if not isinstance(policy, OutboxPolicy):
        return 0
    return await policy.enqueue(store, event_type, data, event_id=event_id)
