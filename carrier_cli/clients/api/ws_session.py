"""One WebSocket connection to `/v1/ws`: authentication, then a reader and a writer.

Authentication (a key never goes in the URL):
- `Sec-WebSocket-Protocol: carrier.v1, KEY`: the server accepts the `carrier.v1`
  subprotocol (browsers cannot set headers on a WebSocket, but they can offer protocols);
- or, without a key there, a first frame `{"type": "auth", "key": KEY}` within
  AUTH_TIMEOUT seconds.
A key in the query string closes the connection with 1008 (policy) even if it is valid; a
missing, wrong or revoked key with 4401; then the server sends `authenticated`. Scopes: any
key may subscribe, `message` needs chat (or admin).

Client frames (ws_frames.py): `subscribe {agent, room, since?}`, `unsubscribe {agent,
room}`, `message {agent, room, text, sender?, client_id?}`, `ping`. Server frames: the
runtime's events (`message.created`, `reply.token`, `reply.completed`, `typing`,
`agent.error`) as their envelope (`id`, `type`, `created`, `data`) plus `agent`,
`agent_id`, `room` and, on the events of the connection's own message, its `client_id`;
and `authenticated`, `subscribed`, `unsubscribed`, `replayed`, `pong`, `error {code,
message, field?, hint?, client_id?}`. A bad frame gets an `error` frame; the connection
stays open.

The reader never waits for a turn: a `message` runs in a task (at most hub.MAX_TURNS per
connection), and its events reach every subscriber of the room through the hub, and the
sender even when it is not subscribed. Only the writer sends; it drains the connection's
bounded queue, so a client that stops reading fills it and is closed with 4008. Keep-alive:
uvicorn pings every 20 s (server.py) and the app answers `ping` frames with `pong`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from carrier_cli.auth.keys import KeyInfo, allows
from carrier_cli.clients.api.auth import _QUERY_NAMES, authenticate, client_address
from carrier_cli.clients.api.errors import ApiError, from_carrier_error
from carrier_cli.clients.api.hub import (
    MAX_SUBSCRIPTIONS,
    MAX_TURNS,
    Connection,
    Delivery,
    Hub,
    Replay,
    RoomKey,
)
from carrier_cli.clients.api.ws_frames import (
    AuthFrame,
    ClientFrame,
    FrameError,
    MessageFrame,
    PingFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    error_frame,
    parse,
)
from carrier_cli.clients.api.ws_rooms import (
    API_SOURCE,
    replay,
    resolve_room,
    since_message,
    subscribed_frame,
)
from carrier_cli.errors import CarrierError
from carrier_cli.runtime.events import room_ref
from carrier_cli.runtime.turn.ids import message_id
from carrier_cli.runtime.types import IncomingMessage

if TYPE_CHECKING:
    from fastapi import WebSocket

    from carrier_cli.clients.api.state import ApiState
    from carrier_cli.runtime.agent import AgentRuntime

log = logging.getLogger("carrier.api.ws")

PROTOCOL = "carrier.v1"
AUTH_TIMEOUT = 5.0  # seconds for the first `auth` frame
CLOSE_TIMEOUT = 10.0  # seconds to get a close frame out to a client that is not reading
CLOSE_UNAUTHORIZED = 4401
CLOSE_POLICY = 1008  # a key in the URL
CLOSE_SLOW_CONSUMER = 4008
CLOSE_TRY_LATER = 1013  # too many connections
CLOSE_INTERNAL = 1011
QUEUED_EVENTS_GRACE = 2.0  # seconds a queued turn's events may trail its result
FILES_WAIT = 2.0  # seconds a reply.completed waits for its files' bytes (--role api)


class Session:
    def __init__(self, websocket: WebSocket, state: ApiState, hub: Hub) -> None:
        self.ws = websocket
        self.state = state
        self.hub = hub
        self.key: KeyInfo | None = None
        self.conn: Connection | None = None
        self.turns: set[asyncio.Task[None]] = set()
        self._sent: dict[RoomKey, deque[str]] = {}  # recent message ids sent per room

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        offered = [str(p) for p in self.ws.scope.get("subprotocols") or []]
        protocol = PROTOCOL if PROTOCOL in offered else None
        await self.ws.accept(subprotocol=protocol)
        if any(name in self.ws.query_params for name in _QUERY_NAMES):
            await self._refuse(
                CLOSE_POLICY,
                "key_in_url",
                "API keys are not accepted in the URL.",
                f"Offer the subprotocols `{PROTOCOL}, KEY`, or send "
                '{"type": "auth", "key": KEY} as the first frame.',
            )
            return
        candidates = [p for p in offered if p != PROTOCOL] if protocol else []
        if not await self._authenticate(candidates[0] if candidates else None):
            return
        name = self.key.name if self.key is not None else "-"
        conn = self.hub.connect(name)
        if conn is None:
            await self._refuse(
                CLOSE_TRY_LATER,
                "too_many_connections",
                f"This server has {self.hub.max_connections} WebSocket connections open.",
                "Try again later.",
            )
            return
        self.conn = conn
        log.info("ws open key=%s", name)
        await self._send(
            {
                "type": "authenticated",
                "key_name": self.key.name if self.key is not None else None,
                "scope": self.key.scope if self.key is not None else "admin",
                "agents": [r.character.name for r in self.state.agents],
            }
        )
        code = await self._serve(conn)
        log.info("ws close key=%s code=%s dropped=%d", name, code, conn.dropped)
        await self._wait_turns()

    async def _serve(self, conn: Connection) -> int | None:
        reader = asyncio.create_task(self._read(), name="ws-read")
        writer = asyncio.create_task(self._write(conn), name="ws-write")
        overflow = asyncio.create_task(conn.overflowed.wait(), name="ws-overflow")
        try:
            done, _ = await asyncio.wait(
                {reader, writer, overflow}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (reader, writer, overflow):
                task.cancel()
            self.hub.disconnect(conn)
        if overflow in done:
            log.warning("ws key=%s: slow consumer, %d frames dropped", conn.key_name, conn.dropped)
            await self._close(CLOSE_SLOW_CONSUMER, "slow consumer")
            return CLOSE_SLOW_CONSUMER
        failed = next((t for t in done if not t.cancelled() and t.exception()), None)
        if failed is not None and failed is reader:
            exc = failed.exception()
            log.error("ws reader failed: %s", type(exc).__name__, exc_info=exc)
            await self._close(CLOSE_INTERNAL, "internal error")
            return CLOSE_INTERNAL
        return None

    async def _wait_turns(self) -> None:
        """Turns the client started finish after it left (their messages and replies are
        stored, a reconnect with `since` sees them); a server stop cancels them."""
        if not self.turns:
            return
        try:
            await asyncio.wait(set(self.turns))
        except asyncio.CancelledError:
            for task in self.turns:
                task.cancel()
            raise

    # -- authentication ----------------------------------------------------------------------
    async def _authenticate(self, offered_key: str | None) -> bool:
        if self.state.keys is None:  # --no-auth (loopback only)
            return True
        raw = offered_key
        if raw is None:
            try:
                message = await asyncio.wait_for(self.ws.receive(), AUTH_TIMEOUT)
            except TimeoutError:
                await self._refuse(
                    CLOSE_UNAUTHORIZED,
                    "auth_timeout",
                    f"No auth frame within {AUTH_TIMEOUT:g} seconds.",
                    _AUTH_HINT,
                )
                return False
            if message.get("type") == "websocket.disconnect":
                return False
            try:
                frame = parse(_text_of(message))
            except FrameError as exc:
                frame = None
                problem = exc.message
            else:
                problem = "The first frame must be an auth frame."
            if not isinstance(frame, AuthFrame):
                await self._refuse(CLOSE_UNAUTHORIZED, "unauthorized", problem, _AUTH_HINT)
                return False
            raw = frame.key
        try:
            # The REST check itself (with whatever gates it has against wrong-key floods).
            info = await authenticate(
                self.state,
                {"authorization": f"Bearer {raw}"},
                {},
                client_address(self.ws.scope),
            )
        except ApiError as exc:
            # 4000 + the HTTP status: 4401 for a wrong or revoked key, 4429 if refused.
            code = CLOSE_UNAUTHORIZED if exc.status == 401 else 4000 + exc.status
            await self._refuse(code, exc.code, exc.message, _AUTH_HINT)
            return False
        self.key = info
        return True

    def _allows(self, needed: str) -> bool:
        return self.key is None or allows(self.key.scope, needed)

    # -- reading -----------------------------------------------------------------------------
    async def _read(self) -> None:
        conn = self.conn
        assert conn is not None
        while True:
            message = await self.ws.receive()
            if message.get("type") == "websocket.disconnect":
                return
            try:
                await self._handle(parse(_text_of(message)))
            except FrameError as exc:
                conn.offer(exc.frame())

    async def _handle(self, frame: ClientFrame) -> None:
        conn = self.conn
        assert conn is not None
        if isinstance(frame, PingFrame):
            conn.offer({"type": "pong", "id": frame.id})
        elif isinstance(frame, AuthFrame):
            raise FrameError("already_authenticated", "This connection is authenticated.")
        elif isinstance(frame, SubscribeFrame):
            await self._subscribe(conn, frame)
        elif isinstance(frame, UnsubscribeFrame):
            runtime = self._runtime(frame.agent, None)
            room = await resolve_room(self.state.store, runtime, frame.room, create=True)
            self.hub.unsubscribe(conn, (runtime.agent_id, room.id))
            conn.offer(
                {"type": "unsubscribed", "agent": runtime.character.name, "room": room_ref(room)}
            )
        elif isinstance(frame, MessageFrame):
            await self._message(conn, frame)

    def _runtime(self, ref: str, client_id: str | None) -> AgentRuntime:
        runtime = self.state.agents.find(ref)
        if runtime is None:
            names = ", ".join(r.character.name for r in self.state.agents) or "none"
            raise FrameError(
                "not_found",
                f"Agent {ref!r} is not served here.",
                field="agent",
                client_id=client_id,
                hint=f"Use a served character's name or id ({names}).",
            )
        return runtime

    async def _subscribe(self, conn: Connection, frame: SubscribeFrame) -> None:
        if not self._allows("read"):
            raise FrameError(
                "forbidden", "This key may not read.", hint="Use a key with scope read."
            )
        runtime = self._runtime(frame.agent, None)
        store = self.state.store
        room = await resolve_room(store, runtime, frame.room, create=False)
        since = await since_message(store, room, frame.since) if frame.since else None
        # From here to the Replay no await: every event published after the subscription
        # is queued behind the replay, so nothing is lost or sent twice at the boundary.
        if not self.hub.subscribe(conn, runtime, room.id):
            raise FrameError(
                "too_many_subscriptions",
                f"A connection follows at most {MAX_SUBSCRIPTIONS} rooms.",
                field="room",
                hint="Unsubscribe from a room first, or open another connection.",
            )
        conn.offer(subscribed_frame(runtime, room, frame.since))
        if since is not None:

            async def run() -> tuple[list[dict[str, Any]], set[str]]:
                return await replay(store, runtime, room, since)

            conn.offer(Replay((runtime.agent_id, room.id), run))

    async def _message(self, conn: Connection, frame: MessageFrame) -> None:
        client_id = frame.client_id
        if not self._allows("chat"):
            assert self.key is not None
            raise FrameError(
                "forbidden",
                f"The key {self.key.name!r} has scope {self.key.scope!r}; sending needs chat.",
                client_id=client_id,
                hint="Use a key with scope chat or admin "
                "(`carrier api-keys create NAME --scope chat`).",
            )
        if len(self.turns) >= MAX_TURNS:
            raise FrameError(
                "busy",
                f"This connection has {MAX_TURNS} messages in flight.",
                client_id=client_id,
                hint="Wait for a reply.completed (or error) before sending more.",
            )
        self._rate_limit(client_id)
        runtime = self._runtime(frame.agent, client_id)
        try:
            room = await resolve_room(self.state.store, runtime, frame.room, create=True)
        except FrameError as exc:
            exc.client_id = client_id
            raise
        if room.source != API_SOURCE:
            raise FrameError(
                "invalid_room",
                f"Room {frame.room} is a {room.source} room; messages go to API rooms.",
                field="room",
                client_id=client_id,
                hint="Use an API room key such as r1 (subscribing to any room is fine).",
            )
        default_sender = self.key.name if self.key is not None else "api"
        sender_key = (frame.sender.id if frame.sender else None) or default_sender
        sender_name = (frame.sender.name if frame.sender else None) or sender_key
        incoming = IncomingMessage(
            text=frame.text,
            source=API_SOURCE,
            room_key=room.external_id,
            sender_key=sender_key,
            sender_name=sender_name,
            # Unique, so the message's and the reply's ids are known before the turn runs
            # (the hub routes the turn's events to this connection by them).
            message_key=f"ws-{uuid.uuid4().hex}",
            is_direct=True,
        )
        memory_id = str(message_id(incoming, runtime.agent_id))
        self.hub.watch_turn(conn, runtime, memory_id, client_id)
        task = asyncio.create_task(
            self._turn(conn, runtime, incoming, memory_id, client_id), name="ws-turn"
        )
        self.turns.add(task)
        task.add_done_callback(self.turns.discard)

    def _rate_limit(self, client_id: str | None) -> None:
        """A `message` counts against the key's rate limit like a REST request does."""
        limiter = self.state.extras.get("rate_limiter")
        if limiter is None:
            return
        try:
            limiter.check(self.key.name if self.key is not None else "-")
        except ApiError as exc:
            error = FrameError(exc.code, exc.message, client_id=client_id, hint=exc.hint)
            retry = exc.headers.get("Retry-After")
            if retry is not None:
                error.hint = f"{exc.hint or 'Slow down.'} Retry after {retry} s."
            raise error from None

    async def _turn(
        self,
        conn: Connection,
        runtime: AgentRuntime,
        incoming: IncomingMessage,
        memory_id: str,
        client_id: str | None,
    ) -> None:
        try:
            responded = False
            queue = self.state.extras.get("turn_queue")
            # --role api: a worker runs the turn; its events reach the hub over Redis.
            events = (
                queue.events(runtime.agent_id, incoming, stream=True, deltas=False)
                if queue is not None
                else runtime.stream_message(incoming)
            )
            try:
                async for event in events:
                    if event.kind == "done" and event.result is not None:
                        responded = event.result.responded
                        files = self.state.extras.get("files")
                        if files is not None and event.result.files:
                            # --role api: the bytes came from the worker in the result;
                            # (a local runtime's file sink stored them already)
                            await files.keep(event.result.files)
            finally:
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()
            if queue is not None and responded:
                # The worker's events come over pub/sub, its result over the queue: the
                # last events (the reply's message.created, reply.completed) may arrive
                # just after the result. Keep watching the turn a moment (bounded).
                await asyncio.sleep(QUEUED_EVENTS_GRACE)
            if not responded:
                conn.offer(
                    error_frame(
                        "no_reply",
                        "The agent chose not to reply to this message.",
                        client_id=client_id,
                    )
                )
        except CarrierError as exc:
            failure = from_carrier_error(exc)
            conn.offer(
                error_frame(failure.code, failure.message, hint=failure.hint, client_id=client_id)
            )
        except ApiError as exc:  # from the turn queue: no_worker, turn_timeout, a worker's
            conn.offer(error_frame(exc.code, exc.message, hint=exc.hint, client_id=client_id))
        except Exception as exc:
            log.error("ws turn failed: %s", type(exc).__name__, exc_info=exc)
            conn.offer(
                error_frame(
                    "internal",
                    "The server failed on this message.",
                    hint="It is logged on the server; try again.",
                    client_id=client_id,
                )
            )
        finally:
            self.hub.unwatch_turn(conn, memory_id)

    # -- writing -----------------------------------------------------------------------------
    async def _write(self, conn: Connection) -> None:
        """The only sender after `authenticated`: frames in queue order."""
        while True:
            item = await conn.queue.get()
            if isinstance(item, Replay):
                try:
                    frames, ids = await item.run()
                except CarrierError as exc:
                    failure = from_carrier_error(exc)
                    frames, ids = [error_frame(failure.code, failure.message)], set()
                conn.replayed.setdefault(item.room, set()).update(ids)
                sent = self._sent.get(item.room, ())
                count = 0
                for frame in frames:
                    if frame.get("replay"):
                        if frame.get("id") in sent:
                            continue  # this connection saw it live (its own turn, say)
                        count += 1
                    elif frame.get("type") == "replayed":
                        frame["count"] = count
                    await self._send(frame)
            elif isinstance(item, Delivery):
                if conn.is_duplicate(item):
                    continue
                event = item.event
                if event.type == "message.created" and event.room_id is not None:
                    room = (event.agent_id, event.room_id)
                    self._sent.setdefault(room, deque(maxlen=256)).append(event.id)
                elif event.type == "reply.completed":
                    await self._files_stored(event.data)
                await self._send(item.frame())
            else:
                await self._send(item)

    async def _files_stored(self, data: dict[str, Any]) -> None:
        """With --role api, a worker's reply.completed (Redis pub/sub) can come before its
        result (the inbox stream) that brings the files' bytes here: hold the frame until
        they are stored, so its `url`s answer at once; bounded by FILES_WAIT seconds (on
        a server that did not run the turn they never come, unless it shares the data dir)."""
        store = self.state.extras.get("files")
        wanted = [f.get("id") for f in (data.get("reply") or {}).get("files") or ()]
        if store is None or not wanted:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FILES_WAIT
        while not all(isinstance(i, str) and store.has(i) for i in wanted):
            if loop.time() >= deadline:
                return
            await asyncio.sleep(0.02)

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(frame, ensure_ascii=False, default=str))

    async def _refuse(self, code: int, error: str, message: str, hint: str) -> None:
        with contextlib.suppress(Exception):
            await self._send(error_frame(error, message, hint=hint))
        await self._close(code, message[:120])

    async def _close(self, code: int, reason: str) -> None:
        """Close, waiting at most CLOSE_TIMEOUT for the close frame to get out (a client
        that stopped reading may never take it)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code, reason), CLOSE_TIMEOUT)


_AUTH_HINT = (
    f"Offer the subprotocols `{PROTOCOL}, KEY`, or send "
    '{"type": "auth", "key": KEY} first; create a key with `carrier api-keys create NAME`.'
)


def _text_of(message: Any) -> str:
    """A frame's text (a binary frame must be UTF-8 JSON too)."""
    text = message.get("text")
    if isinstance(text, str):
        return text
    data = message.get("bytes") or b""
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("invalid_json", "A binary frame must be UTF-8 JSON.") from None
