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
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse

from carrier_cli.auth.keys import KeyInfo
from carrier_cli.clients.api import sse
from carrier_cli.clients.api.auth import require, state_of
from carrier_cli.clients.api.errors import ApiError, error_body
from carrier_cli.clients.api.outages import database_outage
from carrier_cli.clients.api.routes.files import file_url
from carrier_cli.clients.api.routes.message_models import (
    SSE_EVENT_SCHEMA,
    EmbedOut,
    FileOut,
    MessageIn,
    MessageOut,
    ReplyOut,
)
from carrier_cli.clients.api.routes.shapes import RoomRef
from carrier_cli.clients.api.turn_errors import INTERNAL, turn_failure
from carrier_cli.errors import CarrierError
from carrier_cli.memory.types import stable_id
from carrier_cli.runtime.outgoing import describe_file, embed_json
from carrier_cli.runtime.turn.intake import arrival
from carrier_cli.runtime.types import IncomingMessage, TurnResult

log = logging.getLogger("carrier.api")
router = APIRouter(prefix="/v1", tags=["messages"])
SOURCE = "api"


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


async def keep_files(request_state: Any, result: TurnResult) -> None:
    """Store the result's file bytes for download before the answer names them. Already
    stored by this process's runtime (its file sink) unless a worker ran the turn; the
    store skips bytes it has."""
    store = request_state.extras.get("files")
    if store is not None and result.files:
        await store.keep(result.files)


def files_out(agent_id: Any, result: Any) -> list[FileOut]:
    return [
        FileOut(**describe_file(f), url=file_url(agent_id, f.file_id))
        for f in getattr(result, "files", None) or ()
    ]


def answer(result: TurnResult, room: RoomRef, agent_id: Any) -> MessageOut:
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
        files=files_out(agent_id, result),
        embeds=[EmbedOut.model_validate(embed_json(e)) for e in result.embeds],
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
        503: {
            "description": "The database is unavailable; with `carrier serve --role api`, "
            "also `no_worker` (no worker took the turn in time), `queue_full` or "
            "`queue_unavailable` (Redis)"
        },
        504: {
            "description": "`turn_timeout` (`--role api`): a worker took the turn but did not "
            "reply in time; a retry with the same Idempotency-Key returns the reply"
        },
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
    queue = state_of(request).extras.get("turn_queue")
    if queue is not None and message.message_key is None:
        # A queued turn may run twice (a worker died mid-turn): a deterministic memory id
        # makes the second run a replay of the first, never a second message.
        owner = key.name if key is not None else "-"
        message.message_key = f"{owner}\x1equeued\x1e{uuid.uuid4().hex}"
    if idempotency_key is not None:
        await check_same_body(runtime, message)
    room = room_of(runtime, body.room)
    if wants_stream(body, request):
        ping = float(state_of(request).options.sse_ping_seconds)

        def events() -> AsyncIterator[Any]:
            if queue is not None:
                return queue.events(runtime.agent_id, message, stream=True)  # type: ignore[no-any-return]
            return runtime.stream_message(message)

        return StreamingResponse(
            stream(
                runtime,
                message,
                room,
                ping,
                idempotent=idempotency_key is not None,
                events=events,
                files=state_of(request).extras.get("files"),
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        if queue is not None:
            result = await queue.handle(runtime.agent_id, message)
        else:
            result = await runtime.handle_message(message)
    except CarrierError as exc:
        raise turn_failure(exc) from None
    if result.replayed and idempotency_key is not None:
        await check_same_body(runtime, message)
    await keep_files(state_of(request), result)
    return answer(result, room, runtime.agent_id)


async def stream(
    runtime: Any,
    message: IncomingMessage,
    room: RoomRef,
    ping: float,
    *,
    idempotent: bool,
    events: Callable[[], AsyncIterator[Any]] | None = None,
    files: Any = None,
) -> AsyncIterator[bytes]:
    """The SSE body: token..., reply, done (or error). `events`: where the turn's events
    come from (default: this process's runtime; the turn queue's workers with --role api)."""
    from contextlib import aclosing

    def source() -> AsyncIterator[Any]:
        return events() if events is not None else runtime.stream_message(message)

    async def turn() -> AsyncIterator[Any]:
        async with aclosing(source()) as produced:  # type: ignore[type-var]
            async for event in produced:
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
                if files is not None and result.files:
                    await files.keep(result.files)
                reply = answer(result, room, runtime.agent_id).model_dump()
                yield sse.frame("reply", reply, next_id())
        yield sse.frame("done", {}, next_id())
    except ApiError as exc:
        yield sse.frame("error", error_body(exc.code, exc.message, exc.hint), next_id())
    except CarrierError as exc:
        failed = turn_failure(exc)
        yield sse.frame("error", error_body(failed.code, failed.message, failed.hint), next_id())
    except Exception as exc:  # the database down, or a bug (logged with its stack)
        outage = database_outage(exc)
        if outage is not None:
            log.warning("streamed turn: database unreachable: %s", exc)
            yield sse.frame(
                "error", error_body(outage.code, outage.message, outage.hint), next_id()
            )
        else:
            log.error("streamed turn failed: %s", type(exc).__name__, exc_info=exc)
            yield sse.frame("error", error_body(*INTERNAL), next_id())
