"""POST /v1/agents/{agent}/messages: send a message, get the agent's reply in the answer.

The turn is the runtime's (`AgentRuntime.handle_message` / `stream_message`); this module
only translates. The room is `IncomingMessage(source="api", room_key=room)`, so turns in
one room are serialised in arrival order by the runtime's room gates, whichever client
sends them.

Idempotency: an `Idempotency-Key` makes the message's memory id deterministic
(`message_key` = the API key's name + the Idempotency-Key), and the runtime's replay does
the rest: the same message stored before gets the reply stored for it, without a second
generation, even from another server process sharing the database, and two concurrent
requests with one key run one generation (the second waits in the room's gate, then
replays). The stored message is also the record of what was sent: a request whose room,
text, sender or attachments differ from it is refused with 422 `idempotency_mismatch`
(checked before the turn, and again after a replay, for two different bodies racing).
The record lasts as long as the message does, not 24 h: its id is fixed by the key, so
a reused key could only ever replay.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from carrier_cli.auth.keys import KeyInfo
from carrier_cli.clients.api import sse
from carrier_cli.clients.api.auth import require, state_of
from carrier_cli.clients.api.errors import ApiError, error_body, from_carrier_error
from carrier_cli.clients.api.routes.shapes import RoomRef
from carrier_cli.errors import CarrierError
from carrier_cli.memory.types import stable_id
from carrier_cli.runtime.turn.intake import arrival
from carrier_cli.runtime.types import IncomingMessage, TurnResult

log = logging.getLogger("carrier.api")
router = APIRouter(prefix="/v1", tags=["messages"])
INTERNAL = (
    "internal",
    "The server failed on this request.",
    "It is logged on the server; try again, and report it if it repeats.",
)

MAX_TEXT = 32_000
MAX_ROOM = 200
MAX_ATTACHMENTS = 10
SOURCE = "api"
# What the schema says of the text fields (the validators below are the last word: they
# also refuse blank values and the rest of what str.isprintable refuses).
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]+$"
NOT_BLANK = r"\S"


def _printable(value: Any, field: str) -> Any:
    """Run before the schema's pattern, so the error says what is wrong in words."""
    if not isinstance(value, str):
        return value  # the type check that follows names it
    if not value.strip():
        raise ValueError(f"{field} must not be blank")
    if not value.isprintable():
        raise ValueError(f"{field} must not contain control characters (newlines, tabs...)")
    return value


class Sender(BaseModel):
    """Who wrote the message; without it, the API key's name is the sender."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        min_length=1,
        max_length=200,
        pattern=PRINTABLE,
        description="Your application's id of the person (1-200 printable characters). "
        "The same id is the same person for the agent's memory of facts.",
        examples=["u1"],
    )
    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=PRINTABLE,
        description="How the agent should call them (1-100 printable characters).",
        examples=["Ada"],
    )

    @field_validator("id", "name", mode="before")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return _printable(value, "it")


class Attachment(BaseModel):
    """A reference to media, by URL: the agent sees its kind, name and URL, never bytes."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://[^\s]+$",
        description="An http(s) URL (no data: URLs; upload media elsewhere).",
        examples=["https://example.com/cat.jpg"],
    )
    kind: Literal["image", "video", "audio", "file", "link"] = "file"
    name: str | None = Field(None, max_length=200, pattern=PRINTABLE, examples=["cat.jpg"])

    @field_validator("name", mode="before")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return None if value is None else _printable(value, "it")


class MessageIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"room": "r1", "text": "Hello!", "sender": {"id": "u1", "name": "Ada"}},
                {"room": "r1", "text": "Tell me a story.", "stream": True},
            ]
        },
    )

    room: str = Field(
        min_length=1,
        max_length=MAX_ROOM,
        pattern=PRINTABLE,
        description="Your name for the conversation (1-200 printable characters). Messages "
        "to the same room share the agent's recent context and are answered in order.",
        examples=["r1"],
    )
    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT,
        pattern=NOT_BLANK,
        description=f"The message (1-{MAX_TEXT:,} characters; not blank).",
        examples=["Hello!"],
    )
    sender: Sender | None = Field(None, description="Default: the API key's name.")
    attachments: list[Attachment] = Field(
        default_factory=list, max_length=MAX_ATTACHMENTS, description="At most 10."
    )
    stream: bool = Field(
        False,
        description="Answer with Server-Sent Events (`token`..., `reply`, `done`); the same "
        "as sending `Accept: text/event-stream`.",
    )

    @field_validator("room", mode="before")
    @classmethod
    def _room(cls, value: Any) -> Any:
        return _printable(value, "room")

    @field_validator("text", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, str) and value and not value.strip():
            raise ValueError("text must not be blank")
        return value


class ReplyOut(BaseModel):
    id: str = Field(description="The reply's memory id.")
    text: str
    actions: list[str] = Field(description="The actions the agent chose (e.g. REPLY).")
    thought: str | None = Field(None, description="The agent's stated reasoning, if any.")


class MessageOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "message_id": "9e8d7c6b-5a4f-5e3d-8c2b-1a0f9e8d7c6b",
                    "room": {
                        "id": "0b4e5b0e-2f5c-5d43-9a4e-6c1d9c1f2b7a",
                        "key": "r1",
                        "source": "api",
                        "name": None,
                    },
                    "reply": {
                        "id": "5a0c8f4e-3f0b-5a8e-8d0e-9a3f5e6b7c21",
                        "text": "Hello Ada! What can I do for you?",
                        "actions": ["REPLY"],
                        "thought": "A greeting; greet back.",
                    },
                    "extra_messages": [],
                    "decision": "DIRECT",
                    "replayed": False,
                    "timings": {"intake": 4.1, "model": 812.5, "total": 830.2},
                }
            ]
        }
    )

    message_id: str = Field(description="The stored incoming message's memory id.")
    room: RoomRef
    reply: ReplyOut | None = Field(
        description="The agent's reply; null when it chose not to answer (the room was "
        "told to stop, or the model answered with no text)."
    )
    extra_messages: list[str] = Field(
        description="Messages the agent's actions sent after the reply, in order."
    )
    decision: str = Field(description="DIRECT for API messages; STOP/IGNORE: no reply.")
    replayed: bool = Field(
        description="True when this is the stored answer to an earlier request with the "
        "same Idempotency-Key (no new generation)."
    )
    timings: dict[str, float] = Field(description="Milliseconds per stage of the turn.")


def sender_of(body: MessageIn, key: KeyInfo | None) -> tuple[str, str]:
    if body.sender is not None:
        return body.sender.id, body.sender.name
    name = key.name if key is not None else "local"
    return name, name


def incoming(body: MessageIn, key: KeyInfo | None, idempotency_key: str | None) -> IncomingMessage:
    sender_key, sender_name = sender_of(body, key)
    owner = key.name if key is not None else "-"
    return IncomingMessage(
        text=body.text,
        source=SOURCE,
        room_key=body.room,
        sender_key=sender_key,
        sender_name=sender_name,
        # Scoped by the API key's name: two applications' keys never collide.
        message_key=f"{owner}\x1f{idempotency_key}" if idempotency_key else None,
        is_direct=True,
        attachments=[a.model_dump(exclude_none=True) for a in body.attachments],
    )


def turn_failure(exc: CarrierError) -> ApiError:
    """A turn that failed: the database (503) or the model (502). A model provider
    refusing our key or model is this server's problem, not the caller's: 502, not the
    400 a CarrierError of bad input would get elsewhere."""
    mapped = from_carrier_error(exc)
    if mapped.status == 503:
        return mapped
    return ApiError(
        502,
        "upstream_failed",
        f"The agent's model failed: {exc.message}",
        hint=exc.hint
        or "Try again later; the message is stored, and a retry with the same "
        "Idempotency-Key answers it without storing it twice.",
    )


async def check_same_body(runtime: Any, message: IncomingMessage) -> None:
    """422 when the message stored under this Idempotency-Key differs from this one."""
    wanted = arrival(message, runtime.agent_id)
    stored = await runtime.store.get(wanted.memory_id, with_vector=False)
    if stored is None:
        return
    meta = stored.metadata or {}
    same = (
        stored.content == wanted.content
        and meta.get("room_key") == message.room_key
        and meta.get("sender_key") == message.sender_key
    )
    if not same:
        raise ApiError(
            422,
            "idempotency_mismatch",
            "This Idempotency-Key was already used for a different message (room, text, "
            "sender or attachments differ).",
            hint="Use a new Idempotency-Key for a new message; a retry must repeat the "
            "first request's body exactly.",
        )


def room_of(runtime: Any, room: str) -> RoomRef:
    # The id MemoryStore.find_room/ensure_room give an API room (no database read here).
    room_id = stable_id(SOURCE, "room", room, runtime.agent_id)
    return RoomRef(id=str(room_id), key=room, source=SOURCE, name=None)


def answer(result: TurnResult, room: RoomRef) -> MessageOut:
    reply = None
    if result.text is not None and result.reply_id is not None:
        reply = ReplyOut(
            id=str(result.reply_id),
            text=result.text,
            actions=list(result.actions),
            thought=result.thought,
        )
    return MessageOut(
        message_id=str(result.message_id),
        room=room,
        reply=reply,
        extra_messages=list(result.extra_messages),
        decision=result.decision,
        replayed=result.replayed,
        timings={k: round(v * 1000, 2) for k, v in result.timings.items()},
    )


def wants_stream(body: MessageIn, request: Request) -> bool:
    return body.stream or "text/event-stream" in request.headers.get("accept", "").lower()


STREAM_DOC = (
    '`event: token` with `{"text": delta}` per reply delta, then `event: reply` with the '
    "same object as the JSON answer, then `event: done`; an `id:` line per event and a "
    "`: ping` comment every 15 s while the model is slow. A failure after the stream "
    "started is an `event: error` with the error object."
)


# One Server-Sent Event (OpenAPI 3.1: `schema` of an event stream describes each event).
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "description": "1, 2, 3... within the response."},
        "event": {"type": "string", "enum": ["token", "reply", "done", "error"]},
        "data": {
            "type": "string",
            "description": 'JSON: token {"text"}, reply (the JSON answer), done {}, error '
            '{"error": {"code", "message", "hint"}}.',
        },
    },
}


@router.post(
    "/agents/{agent}/messages",
    response_model=MessageOut,
    summary="Send a message; the reply comes in the answer (or streamed)",
    description="Scope: chat. The agent's reply is in the response (no polling). With "
    '`"stream": true` or `Accept: text/event-stream` the answer is Server-Sent Events: '
    + STREAM_DOC
    + " An `Idempotency-Key` header (1-200 visible ASCII characters) makes a retry return "
    "the first reply instead of generating another.",
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": SSE_EVENT_SCHEMA,
                    "example": 'id: 1\nevent: token\ndata: {"text":"Hel"}\n\n'
                    'id: 2\nevent: token\ndata: {"text":"lo!"}\n\n'
                    'id: 3\nevent: reply\ndata: {"message_id":"...","reply":{...}}\n\n'
                    "id: 4\nevent: done\ndata: {}\n\n",
                }
            }
        },
        404: {"description": "No such agent"},
        422: {"description": "A field is invalid, or `idempotency_mismatch`"},
        502: {"description": "The model failed (`upstream_failed`); the message is stored"},
        503: {"description": "The database is unavailable"},
    },
)
async def post_message(
    agent: str,
    body: MessageIn,
    request: Request,
    key: Annotated[KeyInfo | None, Depends(require("chat"))],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            pattern=r"^[!-~]+$",
            description="Makes a retry return the first reply (no second generation).",
        ),
    ] = None,
) -> Any:
    runtime = state_of(request).agents.get(agent)
    message = incoming(body, key, idempotency_key)
    if idempotency_key is not None:
        await check_same_body(runtime, message)
    room = room_of(runtime, body.room)
    if wants_stream(body, request):
        ping = float(state_of(request).options.sse_ping_seconds)
        return StreamingResponse(
            stream(runtime, message, room, ping, idempotent=idempotency_key is not None),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        result = await runtime.handle_message(message)
    except CarrierError as exc:
        raise turn_failure(exc) from None
    if result.replayed and idempotency_key is not None:
        await check_same_body(runtime, message)
    return answer(result, room)


async def stream(
    runtime: Any, message: IncomingMessage, room: RoomRef, ping: float, *, idempotent: bool
) -> AsyncIterator[bytes]:
    """The SSE body: token..., reply, done (or error)."""
    from contextlib import aclosing

    async def turn() -> AsyncIterator[Any]:
        async with aclosing(runtime.stream_message(message)) as events:
            async for event in events:
                yield event

    number = 0

    def next_id() -> int:
        nonlocal number
        number += 1
        return number

    try:
        async for item in sse.pinged(turn, ping):
            if isinstance(item, bytes):
                yield item
            elif item.kind == "delta":
                if item.text:
                    yield sse.frame("token", {"text": item.text}, next_id())
            elif item.result is not None:
                result = item.result
                if result.replayed:
                    if idempotent:
                        await check_same_body(runtime, message)
                    if result.text:  # no deltas on a replay: the whole text at once
                        yield sse.frame("token", {"text": result.text}, next_id())
                yield sse.frame("reply", answer(result, room).model_dump(), next_id())
        yield sse.frame("done", {}, next_id())
    except ApiError as exc:
        yield sse.frame("error", error_body(exc.code, exc.message, exc.hint), next_id())
    except CarrierError as exc:
        failed = turn_failure(exc)
        yield sse.frame("error", error_body(failed.code, failed.message, failed.hint), next_id())
    except Exception as exc:  # a bug: logged with its stack, never sent
        log.error("streamed turn failed: %s", type(exc).__name__, exc_info=exc)
        yield sse.frame("error", error_body(*INTERNAL), next_id())
