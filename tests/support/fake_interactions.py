"""The interactions part of the fake Discord (slash commands, buttons), as Discord speaks it.

`FakeDiscordServer` owns one `FakeInteractions` (`server.interactions`) and mounts its
routes; tests play a Discord user running a command: `adispatch_command("ask", {"text":
"hi"})` pushes an INTERACTION_CREATE (type 2, APPLICATION_COMMAND) down the gateway of the
shard owning the guild, with the member's computed `permissions` and role ids, and
`adispatch_component(record, custom_id)` one of type 3 (MESSAGE_COMPONENT) for a button on
a message the bot sent. What the bot answers is in the `InteractionRecord`.

Behaviour that matters, as on Discord:
- POST /interactions/{id}/{token}/callback once, within ACK_DEADLINE (3 s) of the event;
  later, or an unknown id/token: 404 {"code": 10062, "message": "Unknown interaction"};
  a second callback: 400 {"code": 40060}. `?with_response=1` answers 200 with an
  interaction callback response object, otherwise 204. Types 4 (message), 5 (deferred:
  a "thinking" message with the LOADING flag), 6 (deferred update), 7 (update the
  component's message).
- Follow-ups, POST /webhooks/{application_id}/{token} (no bot token: the interaction token
  authorises): the first one after a type-5 defer edits the thinking message instead of
  creating one, keeping the defer's ephemeral flag; an unknown token: 404 code 10015
  (Unknown Webhook); past TOKEN_TTL (15 min): 401 code 50027 (Invalid Webhook Token);
  content over 2000 characters: 400 code 50035. PATCH/GET/DELETE .../messages/@original
  and PATCH .../messages/{id} edit, read and delete responses.
- Command sync, PUT /applications/{id}/commands and /applications/{id}/guilds/{gid}/commands
  (bot token), replace the set and answer it with ids; a guild the bot is not in: 403
  code 50001 (Missing Access). Every call is recorded in `sync_calls`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.support.fake_discord import FakeDiscordServer

ACK_DEADLINE = 3.0  # seconds Discord waits for the initial response
TOKEN_TTL = 15 * 60.0  # seconds an interaction token accepts follow-ups
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
ALL_PERMISSIONS = (1 << 50) - 1
MANAGE_GUILD = 1 << 5
MEMBER_PERMISSIONS = 0x0000_0000_0006_4C40  # view, send, read history, embed, attach, react


@dataclass
class InteractionRecord:
    """One interaction and everything the bot answered to it."""

    id: str
    token: str
    type: int  # 2: application command, 3: message component
    name: str  # the command, or the button's custom_id
    channel_id: str
    guild_id: str | None
    user: dict[str, Any]
    created: float  # time.monotonic()
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # bodies, in order
    callback_times: list[float] = field(default_factory=list)
    original: dict[str, Any] | None = None  # the response message (or the thinking one)
    followups: list[dict[str, Any]] = field(default_factory=list)  # created, in order
    edits: list[dict[str, Any]] = field(default_factory=list)  # PATCH bodies
    refused: list[tuple[str, int, int]] = field(default_factory=list)  # (route, status, code)
    deferred: bool = False  # answered with type 5; the next follow-up edits `original`
    source_message: dict[str, Any] | None = None  # a component's message

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The response messages the user sees, in order (the original first)."""
        return ([self.original] if self.original else []) + self.followups

    @property
    def texts(self) -> list[str]:
        return [str(m.get("content") or "") for m in self.messages]

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    def button_ids(self) -> list[str]:
        """custom_ids of the buttons on the response messages."""
        return [
            str(item["custom_id"])
            for message in self.messages
            for row in message.get("components", [])
            for item in row.get("components", [])
            if "custom_id" in item
        ]

    def message_with(self, custom_id: str) -> dict[str, Any]:
        for message in self.messages:
            for row in message.get("components", []):
                if any(item.get("custom_id") == custom_id for item in row.get("components", [])):
                    return message
        raise AssertionError(f"no response message has a component {custom_id!r}")


def _error(server: FakeDiscordServer, status: int, code: int, message: str) -> web.Response:
    return server._json({"message": message, "code": code}, status=status)


class FakeInteractions:
    def __init__(self, server: FakeDiscordServer) -> None:
        self.server = server
        self.records: dict[str, InteractionRecord] = {}  # interaction id -> record
        self._by_token: dict[str, InteractionRecord] = {}
        self.ack_deadline = ACK_DEADLINE
        self.token_ttl = TOKEN_TTL
        # (application id, guild id or None) -> the synced commands, with their ids.
        self.commands: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        self.sync_calls: list[tuple[str, str | None, list[str]]] = []  # (app, guild, names)
        self.roles: dict[str, list[dict[str, Any]]] = {}  # guild id -> extra roles
        # Guilds the bot joined without the applications.commands scope: their command
        # sync answers 403 code 50001, as Discord does.
        self.without_commands_scope: set[str] = set()
        # The next follow-ups answer these (status, code, message), e.g. (403, 50013,
        # "Missing Permissions"): a channel whose overwrites deny the app.
        self.refuse_followups: list[tuple[int, int, str]] = []

    def add_routes(self, app: web.Application, api: str) -> None:
        router = app.router
        router.add_post(api + "/interactions/{id}/{token}/callback", self._callback)
        hook = api + "/webhooks/{app_id}/{token}"
        router.add_post(hook, self._followup)
        router.add_get(hook + "/messages/{message_id}", self._get_response)
        router.add_patch(hook + "/messages/{message_id}", self._edit_response)
        router.add_delete(hook + "/messages/{message_id}", self._delete_response)
        router.add_put(api + "/applications/{app_id}/commands", self._sync)
        router.add_get(api + "/applications/{app_id}/commands", self._list_commands)
        router.add_put(api + "/applications/{app_id}/guilds/{guild_id}/commands", self._sync)
        router.add_get(
            api + "/applications/{app_id}/guilds/{guild_id}/commands", self._list_commands
        )

    # -- roles in the guild (GUILD_CREATE lists them) ----------------------------------------
    def add_role(self, name: str, *, guild_id: str | None = None, permissions: int = 0) -> str:
        """A role in the guild (sent in GUILD_CREATE: add it before the bot connects)."""
        from tests.support.fake_discord import snowflake

        guild = guild_id or self.server.guild_id
        role_id = snowflake()
        roles = self.roles.setdefault(guild, [])
        roles.append(
            {
                "id": role_id,
                "name": name,
                "permissions": str(permissions),
                "position": len(roles) + 1,
                "color": 0,
                "hoist": False,
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }
        )
        return role_id

    # -- what tests call -------------------------------------------------------------------
    async def adispatch_command(
        self,
        name: str,
        options: dict[str, str | int | bool] | None = None,
        *,
        channel_id: str | None = None,
        dm: bool = False,
        user_id: str = "400000000000000001",
        user_name: str = "alice",
        permissions: int = MEMBER_PERMISSIONS,
        roles: list[str] | None = None,
    ) -> InteractionRecord:
        """A user runs /name with `options`. The command's id and `guild_id` are those of
        the synced command when there is one (a guild command wins), else a fresh id: a
        command the bot never synced, as a stale client may still offer."""
        guild_id = None if dm else self.server._guild_of(channel_id or self.server.channel_id)
        synced = self._find_command(name, guild_id)
        data: dict[str, Any] = {
            "id": synced["id"] if synced else _snowflake(),
            "name": name,
            "type": 1,
            "options": [
                {"name": key, "type": _option_type(value), "value": value}
                for key, value in (options or {}).items()
            ],
        }
        if synced and synced.get("guild_id"):
            data["guild_id"] = synced["guild_id"]
        return await self._dispatch(
            2, name, data, channel_id, dm, user_id, user_name, permissions, roles, None
        )

    async def adispatch_component(
        self,
        record: InteractionRecord,
        custom_id: str,
        *,
        user_id: str | None = None,
        user_name: str | None = None,
        permissions: int = MEMBER_PERMISSIONS,
        message: dict[str, Any] | None = None,
    ) -> InteractionRecord:
        """A user presses the button `custom_id` on a response message of `record` (by
        default the user who ran the command); `message`: as the user's client still shows
        it (a copy taken earlier, e.g. before the bot restarted or removed the buttons)."""
        message = message or record.message_with(custom_id)
        data = {"custom_id": custom_id, "component_type": 2}
        user = record.user
        return await self._dispatch(
            3,
            custom_id,
            data,
            record.channel_id,
            record.guild_id is None,
            user_id or str(user["id"]),
            user_name or str(user["username"]),
            permissions,
            None,
            message,
        )

    def expire(self, record: InteractionRecord) -> None:
        """Make the token as old as Discord's limit (callbacks and follow-ups refused)."""
        record.created -= self.token_ttl + 1

    async def wait_for(self, predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    # -- building the event ----------------------------------------------------------------
    def _find_command(self, name: str, guild_id: str | None) -> dict[str, Any] | None:
        app = self.server.app_id
        for scope in ((app, guild_id), (app, None)) if guild_id else ((app, None),):
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return command
        return None

    async def _dispatch(
        self,
        kind: int,
        name: str,
        data: dict[str, Any],
        channel_id: str | None,
        dm: bool,
        user_id: str,
        user_name: str,
        permissions: int,
        roles: list[str] | None,
        message: dict[str, Any] | None,
    ) -> InteractionRecord:
        from tests.support.fake_discord import user_payload

        server = self.server
        user = user_payload(user_id, user_name, global_name=user_name.title())
        if dm:
            channel = channel_id or server._dm_channels.setdefault(user_id, _snowflake())
            guild_id = None
        else:
            channel = channel_id or server.channel_id
            guild_id = server._guild_of(channel)
        record = InteractionRecord(
            id=_snowflake(),
            token=f"aW50ZXJhY3Rpb24.{uuid.uuid4().hex}{uuid.uuid4().hex}",
            type=kind,
            name=name,
            channel_id=channel,
            guild_id=guild_id,
            user=user,
            created=time.monotonic(),
            source_message=message,
        )
        payload: dict[str, Any] = {
            "id": record.id,
            "application_id": server.app_id,
            "type": kind,
            "data": data,
            "channel_id": channel,
            "token": record.token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "app_permissions": str(ALL_PERMISSIONS),
        }
        if guild_id is not None:
            payload.update(
                guild_id=guild_id,
                guild={"id": guild_id, "locale": "en-US", "features": []},
                guild_locale="en-US",
                context=0,
                authorizing_integration_owners={"0": guild_id},
                channel={
                    "id": channel,
                    "type": 0,
                    "guild_id": guild_id,
                    "name": f"channel-{server.guilds[guild_id].index(channel)}",
                    "position": 0,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                    "permissions": str(permissions),
                },
                member={
                    "user": user,
                    "roles": list(roles or []),
                    "permissions": str(permissions),
                    "joined_at": "2024-01-01T00:00:00+00:00",
                    "deaf": False,
                    "mute": False,
                    "nick": None,
                    "avatar": None,
                    "flags": 0,
                    "pending": False,
                    "premium_since": None,
                    "communication_disabled_until": None,
                },
            )
        else:
            payload.update(
                user=user,
                context=1,
                authorizing_integration_owners={"1": user_id},
                channel={"id": channel, "type": 1, "recipients": [user], "flags": 0},
            )
        if message is not None:
            payload["message"] = message
        self.records[record.id] = record
        self._by_token[record.token] = record
        await server._dispatch("INTERACTION_CREATE", payload)
        return record

    # -- the bot's answers ---------------------------------------------------------------------
    def _response_message(
        self, record: InteractionRecord, body: dict[str, Any], *, flags: int, kind: int
    ) -> dict[str, Any]:
        server = self.server
        bot = next(b for b in server.bots.values() if b.app_id == server.app_id)
        message = server._message_payload(
            record.channel_id, str(body.get("content") or ""), bot.user, guild_id=record.guild_id
        )
        message.update(
            type=kind,  # 20: the response to a slash command; 0: a follow-up
            flags=flags,
            webhook_id=server.app_id,
            application_id=server.app_id,
            embeds=body.get("embeds") or [],
            components=body.get("components") or [],
            interaction_metadata={
                "id": record.id,
                "type": record.type,
                "name": record.name,
                "user": record.user,
                "authorizing_integration_owners": {"0": record.guild_id or "0"},
            },
        )
        message.pop("member", None)
        return message

    async def _callback(self, request: web.Request) -> web.Response:
        server = self.server
        server._record(request)
        record = self.records.get(request.match_info["id"])
        late = record is not None and time.monotonic() - record.created > self.ack_deadline
        if record is None or record.token != request.match_info["token"] or late:
            if record is not None:
                record.refused.append(("callback", 404, 10062))
            return _error(server, 404, 10062, "Unknown interaction")
        if record.callbacks:
            record.refused.append(("callback", 400, 40060))
            return _error(server, 400, 40060, "Interaction has already been acknowledged.")
        body = await request.json()
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        record.callbacks.append(body)
        record.callback_times.append(time.monotonic())
        message: dict[str, Any] | None = None
        if kind == 4:
            if len(str(data.get("content") or "")) > 2000:
                return _too_long(server)
            message = record.original = self._response_message(record, data, flags=flags, kind=20)
        elif kind == 5:
            record.deferred = True
            message = record.original = self._response_message(
                record, {}, flags=(flags & FLAG_EPHEMERAL) | FLAG_LOADING, kind=20
            )
        elif kind == 7 and record.source_message is not None:
            message = record.source_message
            message.update({k: v for k, v in data.items() if k in ("content", "components")})
            record.edits.append(data)
        elif kind != 6:
            record.callbacks.pop()
            return _error(server, 400, 50035, "Invalid Form Body")
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        answer: dict[str, Any] = {
            "interaction": {
                "id": record.id,
                "type": record.type,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & FLAG_EPHEMERAL),
            }
        }
        if message is not None:
            answer["resource"] = {"type": kind, "message": message}
        return server._json(answer)

    def _by_hook(self, request: web.Request, route: str) -> InteractionRecord | web.Response:
        """The interaction of a webhook route's token, or Discord's refusal."""
        record = self._by_token.get(request.match_info["token"])
        if record is None or request.match_info["app_id"] != self.server.app_id:
            return _error(self.server, 404, 10015, "Unknown Webhook")
        if time.monotonic() - record.created > self.token_ttl:
            record.refused.append((route, 401, 50027))
            return _error(self.server, 401, 50027, "Invalid Webhook Token")
        return record

    async def _followup(self, request: web.Request) -> web.Response:
        self.server._record(request)
        record = self._by_hook(request, "followup")
        if isinstance(record, web.Response):
            return record
        if not record.callbacks:
            record.refused.append(("followup", 404, 10015))
            return _error(self.server, 404, 10015, "Unknown Webhook")
        if self.refuse_followups:
            status, code, text = self.refuse_followups.pop(0)
            record.refused.append(("followup", status, code))
            return _error(self.server, status, code, text)
        body = await request.json()
        if len(str(body.get("content") or "")) > 2000:
            return _too_long(self.server)
        flags = int(body.get("flags") or 0)
        if record.deferred and record.original is not None:
            # The first follow-up after a deferred response replaces the thinking message,
            # ephemeral or not as the defer said.
            record.deferred = False
            original = record.original
            kept = int(original.get("flags") or 0) & FLAG_EPHEMERAL
            original.update(
                content=body.get("content") or "",
                components=body.get("components") or [],
                embeds=body.get("embeds") or [],
                flags=kept,
            )
            message = original
        else:
            message = self._response_message(record, body, flags=flags, kind=0)
            record.followups.append(message)
        if request.query.get("wait") in ("1", "true", "True"):
            return self.server._json(message)
        return web.Response(status=204)

    def _find_response(self, record: InteractionRecord, message_id: str) -> dict[str, Any] | None:
        if message_id == "@original":  # a button's: the message the button is on
            return record.original or record.source_message
        return next((m for m in record.messages if m["id"] == message_id), None)

    async def _get_response(self, request: web.Request) -> web.Response:
        self.server._record(request)
        record = self._by_hook(request, "get")
        if isinstance(record, web.Response):
            return record
        message = self._find_response(record, request.match_info["message_id"])
        if message is None:
            return _error(self.server, 404, 10008, "Unknown Message")
        return self.server._json(message)

    async def _edit_response(self, request: web.Request) -> web.Response:
        self.server._record(request)
        record = self._by_hook(request, "edit")
        if isinstance(record, web.Response):
            return record
        message = self._find_response(record, request.match_info["message_id"])
        if message is None:
            return _error(self.server, 404, 10008, "Unknown Message")
        body = await request.json()
        if len(str(body.get("content") or "")) > 2000:
            return _too_long(self.server)
        record.edits.append(body)
        record.deferred = False  # the thinking message got its content
        message.update({k: v for k, v in body.items() if k in ("content", "components", "embeds")})
        message["flags"] = int(message.get("flags") or 0) & ~FLAG_LOADING
        return self.server._json(message)

    async def _delete_response(self, request: web.Request) -> web.Response:
        self.server._record(request)
        record = self._by_hook(request, "delete")
        if isinstance(record, web.Response):
            return record
        message = self._find_response(record, request.match_info["message_id"])
        if message is None:
            return _error(self.server, 404, 10008, "Unknown Message")
        if message is record.original:
            record.original = None
        elif message in record.followups:
            record.followups.remove(message)
        return web.Response(status=204)

    # -- command sync ----------------------------------------------------------------------------
    async def _sync(self, request: web.Request) -> web.Response:
        server = self.server
        server._record(request)
        bot = server._bot(request)
        if bot is None:
            return server._unauthorised()
        app_id = request.match_info["app_id"]
        guild_id = request.match_info.get("guild_id")
        if app_id != bot.app_id:
            return _error(server, 403, 50001, "Missing Access")
        if guild_id is not None and (
            guild_id not in server.guilds or guild_id in self.without_commands_scope
        ):
            return _error(server, 403, 50001, "Missing Access")
        body = await request.json()
        if not isinstance(body, list):
            return _error(server, 400, 50035, "Invalid Form Body")
        stored = []
        for command in body:
            stored.append(
                {
                    "id": _snowflake(),
                    "application_id": app_id,
                    "version": _snowflake(),
                    "type": command.get("type", 1),
                    "name": command["name"],
                    "description": command.get("description", ""),
                    "options": command.get("options", []),
                    "default_member_permissions": command.get("default_member_permissions"),
                    "dm_permission": command.get("dm_permission", True),
                    "nsfw": command.get("nsfw", False),
                    "contexts": command.get("contexts"),
                    "integration_types": command.get("integration_types", [0]),
                    **({"guild_id": guild_id} if guild_id else {}),
                }
            )
        self.commands[(app_id, guild_id)] = stored
        self.sync_calls.append((app_id, guild_id, [c["name"] for c in stored]))
        return server._json(stored)

    async def _list_commands(self, request: web.Request) -> web.Response:
        self.server._record(request)
        if self.server._bot(request) is None:
            return self.server._unauthorised()
        key = (request.match_info["app_id"], request.match_info.get("guild_id"))
        return self.server._json(self.commands.get(key, []))


def _too_long(server: FakeDiscordServer) -> web.Response:
    return server._json(
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


def _option_type(value: object) -> int:
    """Discord's option types: 3 STRING, 4 INTEGER, 5 BOOLEAN."""
    if isinstance(value, bool):
        return 5
    return 4 if isinstance(value, int) else 3


def _snowflake() -> str:
    from tests.support.fake_discord import snowflake

    return snowflake()
