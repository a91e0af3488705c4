"""A fake Discord (REST + gateway) on 127.0.0.1 that the real discord.py accepts.

Tests point Carrier at it through CARRIER_DISCORD_API_BASE / CARRIER_DISCORD_GATEWAY_URL and
then play the part of Discord users: `dispatch_message()` pushes a MESSAGE_CREATE down the
gateway, `sent_messages()` shows what the bot posted. It behaves like the real service where
discord.py cares: exact `application/json` content type, 401 on a bad token, 400 (code 50035)
on an over-long message, 429 with Retry-After, X-RateLimit-* and Via headers and a JSON body,
HELLO/heartbeat/IDENTIFY/READY with resume_gateway_url, RESUME replaying missed events,
close codes 4000 (resumable), 4004 (bad token), 4010 (invalid shard), 4011 (sharding
required) and 4014 (privileged intents), and message
nonces: a POST with `enforce_nonce: true` whose nonce the same author already used in the
same channel within NONCE_WINDOW seconds gets the FIRST message back (200, same id) instead of
creating another; without enforce_nonce a repeated nonce creates a duplicate, as on Discord.
`fail_after_create_next(n)` makes the next n message POSTs create the message and then answer
500 (the case where discord.py's retry of a 5xx would post a reply twice without a nonce).

Shards, as Discord routes them: each IDENTIFY's `shard: [id, count]` is checked (4010 when
the id is outside 0..count-1, 4011 below `required_shards`), a session is told only of the
guilds its shard owns ((guild_id >> 22) % count), a guild's events go only to the session of
the shard owning it and DMs only to shard 0's; GET /gateway/bot answers `recommended_shards`
and `max_concurrency`. `guild_on_shard(shard, count)` makes a guild id that lands on a shard.
An IDENTIFY without `shard` is shard [0, 1], which owns everything (the unsharded bot).

Three ways to use it:
- in-process: the `fake_discord` fixture (one server per test) or `FakeDiscordServer()` with
  `start_in_thread()`; its own event loop runs in a thread, so sync tests can drive a
  subprocess and poll with plain calls.
- as a subprocess (the benchmark): `python -m tests.support.fake_discord --port 0` prints its
  base URL; the admin endpoints under /_admin/ do what the methods do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from aiohttp import BodyPartReader, WSMsgType, web

from tests.support.fake_discord_channels import ChannelsAndReactions

JSON = "application/json"
DISCORD_EPOCH_MS = 1420070400000
APP_FLAG_MESSAGE_CONTENT = 1 << 18
APP_FLAG_MESSAGE_CONTENT_LIMITED = 1 << 19

NONCE_WINDOW = 300.0  # seconds: Discord checks nonce uniqueness over "the past few minutes"

_snowflake_counter = itertools.count(1)


def snowflake() -> str:
    """A Discord-shaped id: milliseconds since the Discord epoch in the top bits."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (next(_snowflake_counter) & 0x3FFFFF))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def user_payload(
    user_id: str, username: str, *, bot: bool = False, global_name: str | None = None
) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": username,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
        "flags": 0,
        "mfa_enabled": False,
        "verified": True,
    }


@dataclass
class Bot:
    token: str
    user: dict[str, Any]
    app_id: str

    @property
    def id(self) -> str:
        return str(self.user["id"])


def shard_of(guild_id: str | int | None, count: int) -> int:
    """Discord's routing: a guild's shard; DMs (no guild) are shard 0's."""
    return 0 if guild_id is None else (int(guild_id) >> 22) % count


def guild_on_shard(shard: int, count: int, index: int = 0) -> str:
    """A guild id (Discord-shaped, distinct per index) owned by `shard` of `count`."""
    base = 1_000_000 + index
    return str(((base * count + shard) << 22) | 1)


@dataclass
class Session:
    session_id: str
    token: str
    shard: tuple[int, int] = (0, 1)  # (id, count) from IDENTIFY
    seq: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None


@dataclass
class SentMessage:
    id: str
    channel_id: str
    content: str
    reply_to: str | None
    at: float
    author_id: str = ""
    nonce: str | None = None
    files: list[UploadedFile] = field(default_factory=list)  # multipart uploads, in order
    embeds: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class UploadedFile:
    """A file the bot sent (`files[n]` of a multipart message POST)."""

    filename: str
    data: bytes = field(repr=False)
    content_type: str | None = None
    description: str | None = None


class FakeDiscordServer(ChannelsAndReactions):  # threads, reactions, presence: mixin
    def __init__(
        self,
        *,
        token: str = "fake-bot-token-0123456789",
        bot_name: str = "Carrier",
        guilds: dict[str, list[str]] | None = None,
        app_flags: int = APP_FLAG_MESSAGE_CONTENT_LIMITED,
        heartbeat_interval_ms: int = 41250,
        rest_delay: float = 0.0,
        recommended_shards: int = 1,
        max_concurrency: int = 1,
        required_shards: int = 1,
    ) -> None:
        self.bots: dict[str, Bot] = {}  # token -> bot; several bots may share the guilds
        self.token = token  # the first bot's, used by env()
        self.bot_id = self.add_bot(token, bot_name)
        self.bot_user = self.bots[token].user
        self.app_id = self.bots[token].app_id
        self.app_flags = app_flags
        # guild id -> text channel ids; a default guild with one channel.
        self.guilds = guilds or {"100000000000000001": ["200000000000000001"]}
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.rest_delay = rest_delay
        self.refuse_intents = False  # close 4014 after IDENTIFY
        self._rate_limits = 0  # next N message POSTs answer 429 ...
        self._rate_limit_after = 0  # ... once this many more have gone through
        self._retry_after = 0.25
        self._fail_after_create = 0  # next N message POSTs: create the message, answer 500
        self.delay_after_create = 0.0  # seconds between creating a message and answering
        self._stopping = asyncio.Event()  # set by stop(): held answers end at once
        self.server_errors: list[tuple[str, float]] = []  # (message id, time) answered 500
        # (author id, channel id, nonce) -> (the message created first, time.monotonic())
        self._nonces: dict[tuple[str, str, str], tuple[dict[str, Any], float]] = {}
        self.nonce_hits = 0  # POSTs answered with an earlier message (enforce_nonce)
        self.messages: dict[str, dict[str, Any]] = {}  # id -> payload (GET .../messages/{id})
        self.sessions: dict[str, Session] = {}
        self.live: dict[tuple[str, int], Session] = {}  # (token, shard id) -> its session
        self.recommended_shards = recommended_shards  # GET /gateway/bot `shards`
        self.max_concurrency = max_concurrency  # GET /gateway/bot session_start_limit
        self.required_shards = required_shards  # an IDENTIFY with fewer: close 4011
        self.shard_identifies: list[tuple[int, int]] = []  # (id, count) of accepted IDENTIFYs
        self.routed: dict[str, list[tuple[int, int]]] = {}  # message id -> shards it went to
        self.sent: list[SentMessage] = []
        self.typing: list[tuple[str, float]] = []
        self.requests: list[tuple[str, str, float]] = []  # (method, path, time)
        self.rate_limited: list[tuple[str, float]] = []
        self.dispatched: dict[str, float] = {}  # message id -> time.monotonic() when sent
        self.identifies = 0
        self.resumes = 0
        self.base_url = ""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._dm_channels: dict[str, str] = {}
        # Slash commands and buttons (INTERACTION_CREATE, callbacks, follow-ups, command
        # sync) live in their own module: tests/support/fake_interactions.py.
        from tests.support.fake_interactions import FakeInteractions

        self.interactions = FakeInteractions(self)
        # The CDN (attachments section): attachment id -> (filename, bytes, content type).
        self.cdn_files: dict[str, tuple[str, bytes, str | None]] = {}
        self.cdn_requests: list[str] = []  # paths fetched from the CDN, in order
        self.cdn_delay = 0.0  # seconds before the CDN answers (a slow download)
        self._init_channels()  # threads, reactions, presence (fake_discord_channels.py)

    def add_bot(self, token: str, name: str) -> str:
        """Another bot (its own token and user) in the same guilds; returns its user id."""
        bot_id = snowflake()
        user = user_payload(bot_id, name.lower(), bot=True, global_name=name)
        self.bots[token] = Bot(token, user, snowflake())
        return bot_id

    @property
    def tokens(self) -> set[str]:
        return set(self.bots)

    # -- addresses -------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/gateway"

    def env(self, token: str | None = None) -> dict[str, str]:
        """Environment that points a `carrier run` subprocess at this server."""
        return {
            "CARRIER_DISCORD_API_BASE": self.api_base,
            "CARRIER_DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_API_TOKEN": token or self.token,
        }

    @property
    def guild_id(self) -> str:
        return next(iter(self.guilds))

    @property
    def channel_id(self) -> str:
        return self.guilds[self.guild_id][0]

    # -- app -------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        api = "/api/v{version}"
        app.router.add_get(api + "/users/@me", self._users_me)
        app.router.add_get(api + "/oauth2/applications/@me", self._application)
        app.router.add_get(api + "/gateway", self._gateway_info)
        app.router.add_get(api + "/gateway/bot", self._gateway_info)
        app.router.add_post(api + "/channels/{channel_id}/messages", self._create_message)
        app.router.add_get(api + "/channels/{channel_id}/messages", self._channel_history)
        app.router.add_get(api + "/channels/{channel_id}/messages/{message_id}", self._get_message)
        app.router.add_post(api + "/channels/{channel_id}/typing", self._typing)
        app.router.add_get(api + "/channels/{channel_id}", self._get_channel)
        app.router.add_post(api + "/users/@me/channels", self._open_dm)
        self.interactions.add_routes(app, api)
        self._add_channel_routes(app)  # threads, reactions (fake_discord_channels.py)
        app.router.add_get("/gateway", self._gateway)
        self._add_media_routes(app)
        app.router.add_get("/resume", self._gateway)
        app.router.add_post("/_admin/messages", self._admin_message)
        app.router.add_get("/_admin/sent", self._admin_sent)
        app.router.add_get("/_admin/state", self._admin_state)
        app.router.add_post("/_admin/close", self._admin_close)
        app.router.add_post("/_admin/ratelimit", self._admin_ratelimit)
        app.router.add_post("/_admin/fail_after_create", self._admin_fail_after_create)
        app.router.add_post("/_admin/reset", self._admin_reset)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._loop = asyncio.get_running_loop()
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sock = server.sockets[0]  # type: ignore[attr-defined]
        self.base_url = f"http://{host}:{sock.getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        for session in self.sessions.values():
            if session.ws is not None and not session.ws.closed:
                await session.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    def start_in_thread(self) -> str:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-discord", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Discord server did not start")
        return self.base_url

    def stop_thread(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _call(self, coro_fn: Callable[[], Any]) -> Any:
        """Run a coroutine on the server's loop from another thread (sync test code)."""
        assert self._loop is not None
        if self._thread is None:
            raise RuntimeError("use the async methods when the server runs in your loop")
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(10)

    # -- helpers ---------------------------------------------------------------------------
    def _json(
        self, data: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        hdrs = {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": "fake-bucket",
        }
        hdrs.update(headers or {})
        # Not web.json_response: its Content-Type carries "; charset=utf-8", and discord.py
        # only parses a body whose Content-Type is exactly application/json.
        return web.Response(
            body=json.dumps(data).encode(), status=status, headers={**hdrs, "Content-Type": JSON}
        )

    def _bot(self, request: web.Request) -> Bot | None:
        auth = request.headers.get("Authorization", "")
        return self.bots.get(auth[4:]) if auth.startswith("Bot ") else None

    def _authorised(self, request: web.Request) -> bool:
        return self._bot(request) is not None

    def _unauthorised(self) -> web.Response:
        return self._json({"message": "401: Unauthorized", "code": 0}, status=401)

    def _record(self, request: web.Request) -> None:
        with self._lock:
            self.requests.append((request.method, request.path, time.monotonic()))

    async def _delay(self) -> None:
        if self.rest_delay:
            await asyncio.sleep(self.rest_delay)

    # -- REST ------------------------------------------------------------------------------
    async def _users_me(self, request: web.Request) -> web.Response:
        self._record(request)
        bot = self._bot(request)
        if bot is None:
            return self._unauthorised()
        return self._json(bot.user)

    async def _application(self, request: web.Request) -> web.Response:
        self._record(request)
        bot = self._bot(request)
        if bot is None:
            return self._unauthorised()
        owner = user_payload("300000000000000001", "owner")
        return self._json(
            {
                "id": bot.app_id,
                "name": bot.user["global_name"],
                "description": "",
                "icon": None,
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": owner,
                "summary": "",
                "verify_key": "0" * 64,
                "team": None,
                "flags": self.app_flags,
                "bot": bot.user,
            }
        )

    async def _gateway_info(self, request: web.Request) -> web.Response:
        self._record(request)
        return self._json(
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": self.max_concurrency,
                },
            }
        )

    async def _get_channel(self, request: web.Request) -> web.Response:
        """GET /channels/{id}: a guild text channel (with its guild_id) or a DM channel."""
        self._record(request)
        if not self._authorised(request):
            return self._unauthorised()
        channel_id = request.match_info["channel_id"]
        thread = self.thread_channel(channel_id)
        if thread is not None:
            return self._json(thread)
        guild_id = self._guild_of(channel_id)
        if guild_id is not None:
            index = self.guilds[guild_id].index(channel_id)
            return self._json(
                {
                    "id": channel_id,
                    "type": 0,
                    "guild_id": guild_id,
                    "name": f"channel-{index}",
                    "position": index,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                }
            )
        recipient = next((u for u, c in self._dm_channels.items() if c == channel_id), None)
        if recipient is None:
            return self._json({"message": "Unknown Channel", "code": 10003}, status=404)
        return self._json(
            {
                "id": channel_id,
                "type": 1,
                "last_message_id": None,
                "recipients": [user_payload(recipient, f"user{recipient[-4:]}")],
            }
        )

    async def _typing(self, request: web.Request) -> web.Response:
        self._record(request)
        if not self._authorised(request):
            return self._unauthorised()
        with self._lock:
            self.typing.append((request.match_info["channel_id"], time.monotonic()))
        return web.Response(status=204)

    async def _open_dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        recipient = str(body["recipient_id"])
        channel_id = self._dm_channels.setdefault(recipient, snowflake())
        return self._json(
            {
                "id": channel_id,
                "type": 1,
                "last_message_id": None,
                "recipients": [user_payload(recipient, f"user{recipient[-4:]}")],
            }
        )

    async def _create_message(self, request: web.Request) -> web.Response:
        self._record(request)
        await self._delay()
        if not self._authorised(request):
            return self._unauthorised()
        channel_id = request.match_info["channel_id"]
        body, files, problem = await self._read_message_body(request)  # JSON or multipart
        if problem is not None:
            return problem
        if self._rate_limits > 0 and self._rate_limit_after > 0:
            self._rate_limit_after -= 1
        elif self._rate_limits > 0:
            self._rate_limits -= 1
            with self._lock:
                self.rate_limited.append((channel_id, time.monotonic()))
            retry = self._retry_after
            return self._json(
                {
                    "message": "You are being rate limited.",
                    "retry_after": retry,
                    "global": False,
                    "code": 20028,
                },
                status=429,
                headers={
                    "Retry-After": str(max(1, round(retry))),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{retry:.3f}",
                    "X-RateLimit-Scope": "user",
                    "Via": "1.1 google",
                },
            )
        content = body.get("content") or ""
        if not content.strip() and not body.get("embeds") and not files:
            return self._json({"message": "Cannot send an empty message", "code": 50006}, 400)
        if len(content) > 2000:
            return self._json(
                {
                    "message": "Invalid Form Body",
                    "code": 50035,
                    "errors": {
                        "content": {
                            "_errors": [
                                {
                                    "code": "BASE_TYPE_MAX_LENGTH",
                                    "message": "Must be 2000 or fewer in length.",
                                }
                            ]
                        }
                    },
                },
                400,
            )
        ref = body.get("message_reference") or {}
        author = self._bot(request)
        assert author is not None
        nonce = body.get("nonce")
        key = (author.id, channel_id, str(nonce)) if nonce is not None else None
        if key is not None and body.get("enforce_nonce"):
            with self._lock:
                earlier = self._nonces.get(key)
                fresh = earlier is not None and time.monotonic() - earlier[1] < NONCE_WINDOW
                if fresh:
                    self.nonce_hits += 1
            if earlier is not None and fresh:
                return self._json(earlier[0])  # the first message, not a second one
        message = self._message_payload(
            channel_id,
            content,
            author.user,
            guild_id=self._guild_of(channel_id),
            reply_to=str(ref["message_id"]) if ref.get("message_id") else None,
            attachments=[self._store_upload(channel_id, f) for f in files],
        )
        message["embeds"] = list(body.get("embeds") or [])
        with self._lock:
            self.sent.append(
                SentMessage(
                    message["id"],
                    channel_id,
                    content,
                    message.get("message_reference", {}).get("message_id"),
                    time.monotonic(),
                    author.id,
                    str(nonce) if nonce is not None else None,
                    files=files,
                    embeds=message["embeds"],
                )
            )
            self.messages[message["id"]] = message
            if key is not None and key not in self._nonces:
                self._nonces[key] = (message, time.monotonic())
        # Real Discord echoes the bot's own message back over the gateway.
        await self._dispatch("MESSAGE_CREATE", message)
        if self.delay_after_create:  # a client killed now never hears of the message
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay_after_create)
        if self._fail_after_create > 0:
            self._fail_after_create -= 1
            with self._lock:
                self.server_errors.append((message["id"], time.monotonic()))
            return self._json({"message": "500: Internal Server Error", "code": 0}, status=500)
        return self._json(message)

    async def _channel_history(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages: newest first (also with `after`, as Discord does),
        `limit` 1..100, `after` / `before` message ids."""
        self._record(request)
        if not self._authorised(request):
            return self._unauthorised()
        channel_id = request.match_info["channel_id"]
        after = int(request.query.get("after", 0))
        before = int(request.query.get("before", 1 << 64))
        limit = max(1, min(100, int(request.query.get("limit", 50))))
        found = [
            m
            for m in self.messages.values()
            if m["channel_id"] == channel_id and after < int(m["id"]) < before
        ]
        found.sort(key=lambda m: int(m["id"]))
        # With `after`: the ones right after it; otherwise the latest ones.
        found = found[:limit] if "after" in request.query else found[-limit:]
        return self._json(list(reversed(found)))

    async def _get_message(self, request: web.Request) -> web.Response:
        self._record(request)
        if not self._authorised(request):
            return self._unauthorised()
        message = self.messages.get(request.match_info["message_id"])
        if message is None or message["channel_id"] != request.match_info["channel_id"]:
            return self._json({"message": "Unknown Message", "code": 10008}, status=404)
        return self._json(message)

    def _guild_of(self, channel_id: str) -> str | None:
        for guild_id, channels in self.guilds.items():
            if channel_id in channels:
                return guild_id
        return self.thread_guild(channel_id)  # a thread: its channel's guild

    def _message_payload(
        self,
        channel_id: str,
        content: str,
        author: dict[str, Any],
        *,
        guild_id: str | None,
        reply_to: str | None = None,
        mentions: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        referenced: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": snowflake(),
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions or [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        if guild_id is not None:
            message["guild_id"] = guild_id
            message["member"] = {
                "roles": [],
                "joined_at": _now_iso(),
                "deaf": False,
                "mute": False,
                "nick": None,
                "flags": 0,
            }
        if reply_to is not None:
            message["type"] = 19
            message["message_reference"] = {
                "message_id": reply_to,
                "channel_id": channel_id,
                "guild_id": guild_id,
                "type": 0,
            }
            if referenced is not None:
                message["referenced_message"] = referenced
        return message

    # -- attachments: the CDN and file uploads ---------------------------------------------
    # Discord serves attachments from cdn.discordapp.com (and resized through
    # media.discordapp.net) without authentication, under signed URLs
    # /attachments/{channel}/{attachment}/{filename}?ex=..&is=..&hm=..; an unknown or expired
    # one answers 404 "This content is no longer available.". Here both hosts are this
    # server (the bot allows the configured API base's host), media under /media/.
    # Messages with files are multipart/form-data: `payload_json` plus `files[n]` parts,
    # the form discord.py sends for discord.File; over UPLOAD_LIMIT in all answers 413
    # (code 40005), as Discord does for a server without boosts.
    UPLOAD_LIMIT = 10 * 1024 * 1024

    def _add_media_routes(self, app: web.Application) -> None:
        path = "/attachments/{channel_id}/{attachment_id}/{filename}"
        app.router.add_get(path, self._cdn)
        app.router.add_get("/media" + path, self._cdn)

    def add_attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        channel_id: str | None = None,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> dict[str, Any]:
        """Put a file on the CDN; returns the attachment object a MESSAGE_CREATE carries
        (Discord's shape). Images get width and height (read by Pillow unless given);
        `size` may claim another size than the bytes (a lying server)."""
        attachment_id = snowflake()
        channel = channel_id or self.channel_id
        self.cdn_files[attachment_id] = (filename, data, content_type)
        payload: dict[str, Any] = {
            "id": attachment_id,
            "filename": filename,
            "size": len(data) if size is None else size,
            "url": f"{self.base_url}/attachments/{channel}/{attachment_id}/{filename}"
            "?ex=6a1b2c3d&is=6a19dabd&hm=fake",
            "proxy_url": f"{self.base_url}/media/attachments/{channel}/{attachment_id}/"
            f"{filename}?ex=6a1b2c3d&is=6a19dabd&hm=fake",
        }
        if content_type:
            payload["content_type"] = content_type
        if content_type and content_type.startswith("image/"):
            if width is None or height is None:
                import io

                from PIL import Image

                try:
                    with Image.open(io.BytesIO(data)) as image:
                        width, height = image.size
                except OSError:  # not an image after all: Discord leaves the size out
                    return payload
            payload["width"], payload["height"] = width, height
        return payload

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.cdn_requests.append(request.path)
        if self.cdn_delay:
            await asyncio.sleep(self.cdn_delay)
        stored = self.cdn_files.get(request.match_info["attachment_id"])
        if stored is None or stored[0] != request.match_info["filename"]:
            return web.Response(status=404, text="This content is no longer available.")
        _, data, content_type = stored
        return web.Response(body=data, content_type=content_type or "application/octet-stream")

    async def _read_message_body(
        self, request: web.Request
    ) -> tuple[dict[str, Any], list[UploadedFile], web.Response | None]:
        """A message POST's JSON and files; the error Discord answers for a bad body."""
        empty = self._json({"message": "Cannot send an empty message", "code": 50006}, 400)
        if request.content_type == JSON:
            return await request.json(), [], None
        if request.content_type != "multipart/form-data":
            return {}, [], empty
        body: dict[str, Any] = {}
        files: list[UploadedFile] = []
        total = 0
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            data = await part.read()
            total += len(data)
            if total > self.UPLOAD_LIMIT:
                too_big = {"message": "Request entity too large", "code": 40005}
                return {}, [], self._json(too_big, 413)
            if part.name == "payload_json":
                body = json.loads(data)
            elif part.name and part.name.startswith("files["):
                files.append(
                    UploadedFile(part.filename or "file", data, part.headers.get("Content-Type"))
                )
        described = {str(a.get("id")): a.get("description") for a in body.get("attachments") or []}
        for index, upload in enumerate(files):
            upload.description = described.get(str(index))
        return body, files, None

    def _store_upload(self, channel_id: str, upload: UploadedFile) -> dict[str, Any]:
        """A sent file becomes an attachment on the CDN, as Discord hosts what bots send."""
        attachment = self.add_attachment(
            upload.filename, upload.data, upload.content_type, channel_id=channel_id
        )
        if upload.description:
            attachment["description"] = upload.description
        return attachment

    # -- gateway ---------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        await ws.send_str(
            json.dumps(
                {
                    "op": 10,
                    "s": None,
                    "t": None,
                    "d": {
                        "heartbeat_interval": self.heartbeat_interval_ms,
                        "_trace": ["fake-gateway"],
                    },
                }
            )
        )
        session: Session | None = None
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            op, data = payload.get("op"), payload.get("d")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11, "s": None, "t": None, "d": None}))
            elif op == 2:
                session = await self._identify(ws, data)
                if session is not None:  # an accepted IDENTIFY's presence is the bot's
                    self.record_presence((data or {}).get("presence"))
            elif op == 3:
                self.record_presence(data)  # PRESENCE_UPDATE
            elif op == 6:
                session = await self._resume(ws, data)
        if session is not None and session.ws is ws:
            session.ws = None
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> Session | None:
        self.identifies += 1
        if data.get("token") not in self.tokens:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        if self.refuse_intents:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return None
        shard = self._check_shard(data.get("shard"))
        if isinstance(shard, int):
            reasons = {4010: b"Invalid shard.", 4011: b"Sharding required."}
            await ws.close(code=shard, message=reasons[shard])
            return None
        bot = self.bots[str(data["token"])]
        session = Session(session_id=uuid.uuid4().hex, token=bot.token, shard=shard, ws=ws)
        self.sessions[session.session_id] = session
        self.live[(bot.token, shard[0])] = session
        with self._lock:
            self.shard_identifies.append(shard)
        owned = {gid: chans for gid, chans in self.guilds.items() if self._owns(session, gid)}
        resume_url = self.base_url.replace("http://", "ws://") + "/resume"
        await self._send_dispatch(
            session,
            "READY",
            {
                "v": 10,
                "user": bot.user,
                "session_id": session.session_id,
                "resume_gateway_url": resume_url,
                "session_type": "normal",
                "guilds": [{"id": gid, "unavailable": True} for gid in owned],
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "application": {"id": bot.app_id, "flags": self.app_flags},
                "shard": list(shard),
                "_trace": ["fake-gateway"],
            },
        )
        for guild_id, channels in owned.items():
            await self._send_dispatch(
                session, "GUILD_CREATE", self._guild_payload(guild_id, channels)
            )
        return session

    def _check_shard(self, value: Any) -> tuple[int, int] | int:
        """IDENTIFY's shard pair, or the close code Discord answers a bad one with."""
        if value is None:
            shard = (0, 1)
        elif (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            shard = (value[0], value[1])
        else:
            return 4010
        if shard[1] < 1 or not 0 <= shard[0] < shard[1]:
            return 4010
        if shard[1] < self.required_shards:
            return 4011
        return shard

    @staticmethod
    def _owns(session: Session, guild_id: str | None) -> bool:
        shard_id, count = session.shard
        return shard_of(guild_id, count) == shard_id

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> Session | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != session.token:
            await ws.send_str(json.dumps({"op": 9, "s": None, "t": None, "d": False}))
            return None
        self.resumes += 1
        session.ws = ws
        self.live[(session.token, session.shard[0])] = session
        since = int(data.get("seq") or 0)
        for event in [e for e in session.history if e["s"] > since]:
            await ws.send_str(json.dumps(event))
        session.seq += 1
        await ws.send_str(
            json.dumps(
                {"op": 0, "s": session.seq, "t": "RESUMED", "d": {"_trace": ["fake-gateway"]}}
            )
        )
        return session

    def _guild_payload(self, guild_id: str, channels: list[str]) -> dict[str, Any]:
        return {
            "id": guild_id,
            "name": f"Guild {guild_id[-4:]}",
            "icon": None,
            "owner_id": "300000000000000001",
            "region": "us-west",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [
                {
                    "id": guild_id,
                    "name": "@everyone",
                    "permissions": "2248473465835073",
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                },
                *self.interactions.roles.get(guild_id, []),
            ],
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "joined_at": _now_iso(),
            "large": False,
            "unavailable": False,
            "member_count": 2,
            "voice_states": [],
            "members": [],
            "presences": [],
            "channels": [
                {
                    "id": cid,
                    "type": 0,
                    "name": f"channel-{i}",
                    "position": i,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                    "topic": None,
                    "last_message_id": None,
                    "rate_limit_per_user": 0,
                }
                for i, cid in enumerate(channels)
            ],
            "threads": self.guild_threads(guild_id),  # active threads, as Discord sends
            "stage_instances": [],
            "guild_scheduled_events": [],
            "stickers": [],
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }

    async def _send_dispatch(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": 0, "s": session.seq, "t": event, "d": data}
        session.history.append(frame)
        if session.ws is not None and not session.ws.closed:
            try:
                await session.ws.send_str(json.dumps(frame))
            except ConnectionError:
                session.ws = None  # replayed on RESUME

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Every connected bot sees every message, as bots in the same guild do, on the one
        shard that owns the message's guild (DMs: shard 0)."""
        guild_id = data.get("guild_id")
        for session in list(self.live.values()):
            if self._owns(session, guild_id):
                if "id" in data:
                    with self._lock:
                        self.routed.setdefault(str(data["id"]), []).append(session.shard)
                await self._send_dispatch(session, event, data)

    # -- what tests call (async, on the server's loop) ---------------------------------------
    async def adispatch_message(
        self,
        content: str,
        *,
        channel_id: str | None = None,
        dm: bool = False,
        author_id: str = "400000000000000001",
        author_name: str = "alice",
        author_is_bot: bool = False,
        mention_bot: bool = False,
        reply_to: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        message_type: int | None = None,
        embeds: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        author = user_payload(
            author_id, author_name, bot=author_is_bot, global_name=author_name.title()
        )
        if dm:
            channel = channel_id or self._dm_channels.setdefault(author_id, snowflake())
            guild_id = None
        else:
            channel = channel_id or self.channel_id
            guild_id = self._guild_of(channel)
        # Real Discord lists every user mentioned in the content (<@id> or <@!id>).
        mentions = [
            bot.user
            for bot in self.bots.values()
            if f"<@{bot.id}>" in content
            or f"<@!{bot.id}>" in content
            or (mention_bot and bot.id == self.bot_id)
        ]
        referenced = None
        if reply_to is not None:
            original = next((m for m in self.sent if m.id == reply_to), None)
            if original is not None:
                by = next(b.user for b in self.bots.values() if b.id == original.author_id)
                referenced = self._message_payload(
                    original.channel_id, original.content, by, guild_id=guild_id
                )
                referenced["id"] = original.id
        message = self._message_payload(
            channel,
            content,
            author,
            guild_id=guild_id,
            reply_to=reply_to,
            mentions=mentions,
            attachments=attachments,
            referenced=referenced,
        )
        if message_type is not None:
            message["type"] = message_type  # e.g. 7: a member joined
        if embeds:
            message["embeds"] = embeds  # e.g. a link Discord unfurled into an image embed
        with self._lock:
            self.dispatched[message["id"]] = time.monotonic()
            self.messages[message["id"]] = message
        await self._dispatch("MESSAGE_CREATE", message)
        return message

    async def aclose_gateway(self, code: int = 4000) -> None:
        for session in list(self.live.values()):
            if session.ws is not None:
                ws, session.ws = session.ws, None
                await ws.close(code=code, message=b"fake-gateway closing")

    # -- what sync tests call ------------------------------------------------------------------
    def dispatch_message(self, content: str, **kwargs: Any) -> dict[str, Any]:
        return self._call(lambda: self.adispatch_message(content, **kwargs))  # type: ignore[no-any-return]

    def redeliver(self, message: dict[str, Any]) -> None:
        """The same MESSAGE_CREATE again, as Discord may deliver an event twice."""
        self._call(lambda: self._dispatch("MESSAGE_CREATE", message))

    def close_gateway(self, code: int = 4000) -> None:
        self._call(lambda: self.aclose_gateway(code))

    def rate_limit_next(self, count: int = 1, retry_after: float = 0.25, after: int = 0) -> None:
        """The next `count` message POSTs answer 429, once `after` more have gone through
        (e.g. `after=1`: the reply's first chunk passes, the message after it is limited)."""
        self._rate_limits, self._retry_after = count, retry_after
        self._rate_limit_after = after

    def fail_after_create_next(self, count: int = 1) -> None:
        """The next `count` message POSTs create the message (it is in the channel and on
        the gateway) and then answer 500, as Discord does when it fails after the write."""
        self._fail_after_create = count

    @property
    def connected(self) -> bool:
        return any(session.ws is not None for session in self.live.values())

    def sent_messages(self, channel_id: str | None = None) -> list[SentMessage]:
        with self._lock:
            return [m for m in self.sent if channel_id is None or m.channel_id == channel_id]

    def sent_after(self, message_id: str) -> list[SentMessage]:
        """The bot's messages that answer `message_id` (first chunk replies, the rest follow)."""
        with self._lock:
            sent = list(self.sent)
        for i, m in enumerate(sent):
            if m.reply_to == message_id:
                out = [m]
                out.extend(
                    n for n in sent[i + 1 :] if n.channel_id == m.channel_id and n.reply_to is None
                )
                return out
        return []

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def wait_reply(self, message: dict[str, Any], timeout: float = 15.0) -> SentMessage:
        return self.wait_for(  # type: ignore[no-any-return]
            lambda: next((m for m in self.sent_messages() if m.reply_to == message["id"]), None),
            timeout,
            f"a reply to {message['content'][:40]!r}",
        )

    # -- admin HTTP (subprocess use) -----------------------------------------------------------
    async def _admin_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        batch = body if isinstance(body, list) else [body]
        out = []
        for item in batch:
            item = dict(item)
            content = item.pop("content")
            out.append(await self.adispatch_message(content, **item))
        return self._json(out if isinstance(body, list) else out[0])

    async def _admin_sent(self, request: web.Request) -> web.Response:
        with self._lock:
            sent = [m.__dict__ for m in self.sent]
            dispatched = dict(self.dispatched)
        return self._json({"sent": sent, "dispatched": dispatched})

    async def _admin_state(self, request: web.Request) -> web.Response:
        return self._json(
            {
                "connected": self.connected,
                "identifies": self.identifies,
                "resumes": self.resumes,
                "typing": len(self.typing),
                "sent": len(self.sent),
                "bot_id": self.bot_id,
                "guilds": self.guilds,
                "shard_identifies": self.shard_identifies,
            }
        )

    async def _admin_close(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.aclose_gateway(int(body.get("code", 4000)))
        return self._json({"ok": True})

    async def _admin_ratelimit(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.rate_limit_next(int(body.get("count", 1)), float(body.get("retry_after", 0.25)))
        return self._json({"ok": True})

    async def _admin_fail_after_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail_after_create_next(int(body.get("count", 1)))
        return self._json({"ok": True})

    async def _admin_reset(self, request: web.Request) -> web.Response:
        with self._lock:
            self.sent.clear()
            self.typing.clear()
        return self._json({"ok": True})


@contextlib.contextmanager
def running_fake_discord(
    guilds: dict[str, list[str]] | None = None,
) -> Iterator[FakeDiscordServer]:
    """A fake Discord in a background thread (its own loop, a free port), stopped afterwards;
    `guilds`: guild id -> text channel ids (default: one guild with one channel)."""
    server = FakeDiscordServer(guilds=guilds)
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


def fake_discord_fixture(
    guilds: dict[str, list[str]] | None = None,
    scope: Literal["function", "module"] = "module",
) -> Callable[[], Iterator[FakeDiscordServer]]:
    """A fake Discord (sync API, for tests driving `carrier` subprocesses) as a fixture of
    the module that assigns it, e.g. `discord = fake_discord_fixture({GUILD: CHANNELS})`: one
    for the module's tests (a bot process serves them all) or, with scope "function", one per
    test. Each module (and each xdist worker) gets its own server on its own free port."""

    @pytest.fixture(scope=scope)
    def fixture() -> Iterator[FakeDiscordServer]:
        with running_fake_discord(guilds) as server:
            yield server

    return fixture


# A fresh fake Discord per test, with the default guild.
fake_discord = fake_discord_fixture(scope="function")


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Discord REST + gateway for tests/bench.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="fake-bot-token-0123456789")
    parser.add_argument("--channels", type=int, default=1, help="text channels in the guild")
    parser.add_argument("--shards", type=int, default=1, help="GET /gateway/bot's `shards`")
    args = parser.parse_args()
    guild = "100000000000000001"
    channels = [str(200000000000000001 + i) for i in range(args.channels)]
    server = FakeDiscordServer(
        token=args.token, guilds={guild: channels}, recommended_shards=args.shards
    )

    async def serve() -> None:
        url = await server.start(args.host, args.port)
        print(url, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
