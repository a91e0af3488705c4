"""The agent's memory: search (the same `MemoryStore.search` as `carrier memory search`,
with its scores), list (newest first, keyset cursor), add a fact or a document (admin),
delete one (admin).

Writes change what the agent knows about people, so they need an admin key, and after
each one the runtime's cache of facts is dropped (`forget_facts_everywhere`: in every
process sharing Redis, before the response): the next turn, on any server, reads the
store again instead of answering from a cache that still has (or lacks) the fact.
A document is ingested like the character's knowledge (`memory.knowledge.ingest_text`):
chunked into fragments that search and the reply prompt use; deleting it deletes them.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from carrier_cli.clients.api.auth import require, state_of
from carrier_cli.clients.api.errors import ApiError
from carrier_cli.clients.api.routes.message_models import PRINTABLE
from carrier_cli.clients.api.routes.messages import SOURCE
from carrier_cli.clients.api.routes.shapes import agent_memory, find_room
from carrier_cli.memory.knowledge import ingest_text
from carrier_cli.memory.store import content_hash
from carrier_cli.memory.transfer import memory_record
from carrier_cli.memory.types import Memory, MemoryKind, stable_id

router = APIRouter(prefix="/v1", tags=["memories"])

MAX_PAGE = 200
MAX_K = 100
MAX_FACT = 8_000
MAX_DOCUMENT = 500_000
KindName = Literal["message", "fact", "document", "fragment", "lore"]

MEMORY_EXAMPLE: dict[str, Any] = {
    "id": "3f2a1b0c-9d8e-5f7a-8b6c-5d4e3f2a1b0c",
    "kind": "fact",
    "text": "Ada prefers tea to coffee.",
    "content": {"text": "Ada prefers tea to coffee."},
    "room_id": None,
    "entity_id": None,
    "created": "2026-12-03T10:30:00.123456+00:00",
    "unique": True,
    "metadata": {"source": "api"},
}


class MemoryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [MEMORY_EXAMPLE]})

    id: str
    kind: str = Field(description="message, fact, document, fragment or lore.")
    text: str
    content: dict[str, Any] = Field(description="The stored JSON (text, and per kind more).")
    room_id: str | None = None
    entity_id: str | None = Field(None, description="Who it is from or about, if anyone.")
    created: str | None = None
    unique: bool = Field(description="False for a near-duplicate of an earlier memory.")
    metadata: dict[str, Any] = {}


class Hit(MemoryOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{"score": 0.8123, **MEMORY_EXAMPLE}]})

    score: float = Field(description="Cosine similarity to the query, -1 to 1 (best first).")


class SearchOut(BaseModel):
    hits: list[Hit]


class MemoryPage(BaseModel):
    memories: list[MemoryOut] = Field(description="Newest first.")
    next: str | None = Field(
        None, description="Pass as `cursor` for the next (older) page; null on the last."
    )


class MemoryIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "fact", "text": "Ada prefers tea to coffee."},
                {"kind": "document", "title": "Opening hours", "text": "We open at 9..."},
            ]
        },
    )

    kind: Literal["fact", "lore", "document", "knowledge"] = Field(
        "fact",
        description="fact or lore: one memory (up to 8,000 characters). document (or "
        "knowledge): a text the agent can consult, chunked into fragments (up to 500,000 "
        "characters); a document with the same title replaces the earlier one.",
    )
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT)
    title: str | None = Field(None, max_length=200, description="Documents: a title.")
    room: str | None = Field(
        None,
        max_length=200,
        description="Facts and lore: the room it belongs to (an API room key or room id).",
    )
    sender: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=PRINTABLE,
        description="Facts: the person it is about, as the `sender.id` of their messages; "
        "the agent's replies to them then list it among the facts about them.",
    )

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class Added(BaseModel):
    memory: MemoryOut
    fragments: int = Field(default=0, description="Documents: the fragments it was split into.")
    created: bool = Field(description="False when this exact text was already stored.")


class Deleted(BaseModel):
    deleted: int = Field(description="Memories deleted (a document counts its fragments).")


def memory_view(memory: Memory) -> MemoryOut:
    record = memory_record(memory, with_vectors=False)
    return MemoryOut(
        id=record["id"],
        kind=record["kind"],
        text=memory.text,
        content=record["content"],
        room_id=record["room_id"],
        entity_id=record["entity_id"],
        created=record["created_at"],
        unique=record["unique"],
        metadata=record["metadata"] or {},
    )


async def _room_id(runtime: Any, room: str | None) -> uuid.UUID | None:
    return None if room is None else (await find_room(runtime, room)).id


SenderQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        pattern=PRINTABLE,
        description="Only memories from or about this person: the `sender.id` of their API "
        "messages (as a fact's `sender` names them).",
    ),
]
EntityQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        description="Only memories from or about this entity id (a memory's `entity_id`: "
        "a person on any client, Discord's included).",
    ),
]


def _entity_id(sender: str | None, entity: str | None) -> uuid.UUID | None:
    if sender is not None and entity is not None:
        raise ApiError(
            422,
            "invalid_request",
            "Request field `entity`: give `sender` or `entity`, not both.",
            hint="`sender` is an API sender id; `entity` a memory's entity_id.",
        )
    if entity is not None:
        try:
            return uuid.UUID(entity)
        except ValueError:
            raise ApiError(
                422,
                "invalid_request",
                f"Request field `entity`: {entity[:60]!r} is not an entity id (a uuid).",
                hint="Pass a memory's `entity_id`, or the person's API id as `sender`.",
            ) from None
    return None if sender is None else stable_id(SOURCE, "entity", sender)


@router.get(
    "/agents/{agent}/memories/search",
    response_model=SearchOut,
    summary="Semantic search over the agent's memories, with scores",
    description="Scope: read. The same search as `carrier memory search`: the `k` memories "
    "closest in meaning to `q`, best first.",
    responses={404: {"description": "No such agent or room"}},
)
async def search_memories(
    agent: str,
    request: Request,
    _: Annotated[Any, Depends(require("read"))],
    q: Annotated[str, Query(min_length=1, max_length=2000, description="What to look for.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many hits.")] = 10,
    kind: Annotated[list[KindName] | None, Query(description="Only these kinds.")] = None,
    room: Annotated[str | None, Query(max_length=200, description="Only this room.")] = None,
    sender: SenderQuery = None,
    entity: EntityQuery = None,
) -> SearchOut:
    runtime = state_of(request).agents.get(agent)
    about = _entity_id(sender, entity)
    hits = await runtime.store.search(
        q,
        agent_id=runtime.agent_id,
        k=k,
        kinds=kind,
        room_id=await _room_id(runtime, room),
        entity_id=about,
    )
    return SearchOut(
        hits=[Hit(**memory_view(h.memory).model_dump(), score=round(h.score, 4)) for h in hits]
    )


@router.get(
    "/agents/{agent}/memories",
    response_model=MemoryPage,
    summary="The agent's memories, newest first",
    description="Scope: read. Filter by `kind` (repeatable), `room` and the person (`sender` "
    "or `entity`); pass `next` back as `cursor` for older memories.",
    responses={404: {"description": "No such agent or room"}},
)
async def list_memories(
    agent: str,
    request: Request,
    _: Annotated[Any, Depends(require("read"))],
    kind: Annotated[list[KindName] | None, Query(description="Only these kinds.")] = None,
    room: Annotated[str | None, Query(max_length=200, description="Only this room.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Memories per page.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next` of the previous page.")
    ] = None,
    sender: SenderQuery = None,
    entity: EntityQuery = None,
) -> MemoryPage:
    runtime = state_of(request).agents.get(agent)
    about = _entity_id(sender, entity)
    after = None
    if cursor is not None:
        after = await agent_memory(runtime, cursor, "cursor")
        if after is None:
            raise ApiError(
                422,
                "invalid_request",
                "Request field `cursor`: no memory of this agent has that id (deleted?).",
                hint="Pass the `next` value of the previous page, or start again without it.",
            )
    memories = await runtime.store.list(
        agent_id=runtime.agent_id,
        kinds=kind,
        room_id=await _room_id(runtime, room),
        entity_id=about,
        limit=limit + 1,
        after=after,
    )
    page = memories[:limit]
    return MemoryPage(
        memories=[memory_view(m) for m in page],
        next=str(page[-1].id) if len(memories) > limit and page else None,
    )


@router.post(
    "/agents/{agent}/memories",
    response_model=Added,
    status_code=201,
    summary="Add a fact, lore or a document",
    description="Scope: admin.",
    responses={404: {"description": "No such agent or room"}},
)
async def add_memory(
    agent: str,
    body: MemoryIn,
    request: Request,
    response: Response,
    _: Annotated[Any, Depends(require("admin"))],
) -> Added:
    runtime = state_of(request).agents.get(agent)
    store = runtime.store
    if body.kind in ("document", "knowledge"):
        if body.room is not None:
            raise ApiError(
                422,
                "invalid_request",
                "Request field `room`: documents belong to the agent, not to a room.",
                hint="Leave `room` out for documents, or add the text as a fact.",
            )
        if body.sender is not None:
            raise ApiError(
                422,
                "invalid_request",
                "Request field `sender`: documents are not about one person.",
                hint='Leave `sender` out for documents, or add the text as `"kind": "fact"`.',
            )
        text = body.text.strip()
        source = f"api:{body.title}" if body.title else f"api:{content_hash(text)[:16]}"
        report = await ingest_text(store, runtime.agent_id, text, source=source, title=body.title)
        document = await store.get(
            stable_id("knowledge", runtime.agent_id, content_hash(text)), with_vector=False
        )
        assert document is not None  # just stored, or stored before with this exact text
        await runtime.forget_facts_everywhere()
        if not report.documents_added:
            response.status_code = 200
        return Added(
            memory=memory_view(document),
            fragments=int(document.metadata.get("fragments", 0)),
            created=bool(report.documents_added),
        )
    if len(body.text) > MAX_FACT:
        raise ApiError(
            422,
            "invalid_request",
            f"Request field `text`: a {body.kind} holds at most {MAX_FACT:,} characters "
            f"(this one has {len(body.text):,}).",
            hint='Shorten it, or add it as `"kind": "document"` (chunked, up to 500,000).',
        )
    memory = Memory(
        agent_id=runtime.agent_id,
        content={"text": body.text},
        kind=MemoryKind(body.kind),
        room_id=await _room_id(runtime, body.room),
        entity_id=None if body.sender is None else stable_id(SOURCE, "entity", body.sender),
        metadata={"source": "api"},
    )
    stored = await store.add(memory)
    await runtime.forget_facts_everywhere()
    return Added(memory=memory_view(stored), created=True)


@router.delete(
    "/agents/{agent}/memories/{memory_id}",
    response_model=Deleted,
    summary="Delete one memory by its full id",
    description="Scope: admin. Deleting a document deletes its fragments too.",
    responses={404: {"description": "No such agent, or no such memory of it"}},
)
async def delete_memory(
    agent: str,
    memory_id: str,
    request: Request,
    _: Annotated[Any, Depends(require("admin"))],
) -> Deleted:
    runtime = state_of(request).agents.get(agent)
    memory = await agent_memory(runtime, memory_id, "memory_id")
    if memory is None:
        raise ApiError(
            404,
            "not_found",
            f"{runtime.character.name} has no memory {memory_id}.",
            hint="Ids are in GET .../memories and .../memories/search (the full `id`).",
        )
    ids = [memory.id]
    if memory.kind == MemoryKind.DOCUMENT:
        count = int(memory.metadata.get("fragments", 0) or 0)
        ids += [stable_id("fragment", memory.id, index) for index in range(count)]
    deleted = await runtime.store.delete(ids)
    await runtime.forget_facts_everywhere()
    return Deleted(deleted=deleted)
