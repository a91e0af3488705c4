"""The fake Discord's threads, reactions and presence (issue 17), as a mixin of
FakeDiscordServer (tests/support/fake_discord.py) kept apart from the rest of the fake.

As on Discord:
- Threads are channels of type 11 (public) or 12 (private) with a `parent_id`; a thread
  opened on a message (POST /channels/{c}/messages/{m}/threads) has the message's id, and a
  second one on the same message is refused (400, code 160004). THREAD_CREATE is
  dispatched (`newly_created: true`) to the bots of the guild; messages in a thread carry
  the thread's id as `channel_id`; GET /channels/{thread} answers the thread.
- History (GET /channels/{id}/messages?limit&before&after) is the main fake's.
- Reactions: PUT / DELETE /channels/{c}/messages/{m}/reactions/{emoji}/@me (204) for the
  bot's own, and MESSAGE_REACTION_ADD / MESSAGE_REACTION_REMOVE dispatched for every
  reaction (the bot's own too, as Discord does), with `message_author_id` on adds.
- Presence: the `presence` of each IDENTIFY and every op 3 PRESENCE_UPDATE are recorded
  in `presences`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

if TYPE_CHECKING:
    from tests.support.fake_discord import FakeDiscordServer

THREAD_ALREADY_EXISTS = 160004
PUBLIC_THREAD, PRIVATE_THREAD = 11, 12


@dataclass
class ReactionCall:
    """One reaction change, the bot's (PUT/DELETE .../@me) or a user's (test-made)."""

    op: str  # "add" | "remove"
    channel_id: str
    message_id: str
    emoji: str
    user_id: str
    at: float


class ChannelsAndReactions:
    """Mixed into FakeDiscordServer; `_init_channels()` is called from its __init__."""

    def _init_channels(self: FakeDiscordServer) -> None:
        self.threads: dict[str, dict[str, Any]] = {}  # thread id -> channel payload
        self.thread_routes: list[tuple[str, str]] = []  # (parent channel, message) opened
        self.reactions: list[ReactionCall] = []
        self.presences: list[dict[str, Any]] = []  # IDENTIFY presence, then op 3 payloads

    def _add_channel_routes(self: FakeDiscordServer, app: web.Application) -> None:
        api = "/api/v{version}"
        app.router.add_post(
            api + "/channels/{channel_id}/messages/{message_id}/threads", self._start_thread
        )
        reaction = api + "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
        app.router.add_put(reaction, self._bot_reaction)
        app.router.add_delete(reaction, self._bot_reaction)

    # -- state the rest of the fake reads ---------------------------------------------------
    def thread_guild(self: FakeDiscordServer, channel_id: str) -> str | None:
        thread = self.threads.get(channel_id)
        return str(thread["guild_id"]) if thread is not None else None

    def thread_channel(self: FakeDiscordServer, channel_id: str) -> dict[str, Any] | None:
        return self.threads.get(channel_id)

    def guild_threads(self: FakeDiscordServer, guild_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [t for t in self.threads.values() if t["guild_id"] == guild_id]

    def record_presence(self: FakeDiscordServer, presence: Any) -> None:
        if isinstance(presence, dict):
            with self._lock:
                self.presences.append(presence)

    def custom_status(self: FakeDiscordServer) -> str | None:
        """The state text of the last custom activity (type 4) the bot showed."""
        for presence in reversed(self.presences):
            # IDENTIFY's presence may carry the legacy `game` (discord.py sends that),
            # which Discord accepts as one activity; op 3 carries `activities`.
            activities = list(presence.get("activities") or [])
            if isinstance(presence.get("game"), dict):
                activities.append(presence["game"])
            for activity in activities:
                if activity.get("type") == 4:
                    return str(activity.get("state") or activity.get("name"))
        return None

    # -- threads ------------------------------------------------------------------------------
    def _thread_payload(
        self: FakeDiscordServer,
        thread_id: str,
        parent_id: str,
        name: str,
        owner_id: str,
        *,
        private: bool = False,
    ) -> dict[str, Any]:
        from tests.support.fake_discord import _now_iso

        guild_id = self._guild_of(parent_id)
        return {
            "id": thread_id,
            "guild_id": guild_id,
            "parent_id": parent_id,
            "owner_id": owner_id,
            "type": PRIVATE_THREAD if private else PUBLIC_THREAD,
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _now_iso(),
                "locked": False,
                "create_timestamp": _now_iso(),
            },
        }

    async def _open_thread(
        self: FakeDiscordServer,
        thread_id: str,
        parent_id: str,
        name: str,
        owner_id: str,
        *,
        private: bool = False,
    ) -> dict[str, Any]:
        thread = self._thread_payload(thread_id, parent_id, name, owner_id, private=private)
        with self._lock:
            self.threads[thread_id] = thread
        await self._dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread

    async def _start_thread(self: FakeDiscordServer, request: web.Request) -> web.Response:
        """POST /channels/{c}/messages/{m}/threads: a public thread whose id is the message's."""
        self._record(request)
        bot = self._bot(request)
        if bot is None:
            return self._unauthorised()
        channel_id = request.match_info["channel_id"]
        message_id = request.match_info["message_id"]
        message = self.messages.get(message_id)
        if message is None or message["channel_id"] != channel_id:
            return self._json({"message": "Unknown Message", "code": 10008}, status=404)
        if message_id in self.threads:
            return self._json(
                {
                    "message": "A thread has already been created for this message",
                    "code": THREAD_ALREADY_EXISTS,
                },
                status=400,
            )
        body = await request.json()
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            return self._json({"message": "Invalid Form Body", "code": 50035}, status=400)
        with self._lock:
            self.thread_routes.append((channel_id, message_id))
        thread = await self._open_thread(message_id, channel_id, name, bot.id)
        return self._json(thread, status=201)

    async def acreate_thread(
        self: FakeDiscordServer,
        parent_id: str | None = None,
        name: str = "a thread",
        *,
        owner_id: str = "400000000000000001",
        private: bool = False,
    ) -> str:
        """A thread a user opens (not on a message); returns its id."""
        from tests.support.fake_discord import snowflake

        thread_id = snowflake()
        await self._open_thread(
            thread_id, parent_id or self.channel_id, name, owner_id, private=private
        )
        return thread_id

    def create_thread(self: FakeDiscordServer, parent_id: str | None = None, **kw: Any) -> str:
        return self._call(lambda: self.acreate_thread(parent_id, **kw))  # type: ignore[no-any-return]

    # -- history ------------------------------------------------------------------------------
    def add_history(
        self: FakeDiscordServer,
        content: str,
        channel_id: str,
        *,
        author_id: str = "400000000000000001",
        author_name: str = "alice",
    ) -> dict[str, Any]:
        """A message said before the bot could see it (not dispatched): only the history
        route (GET /channels/{id}/messages) returns it."""
        from tests.support.fake_discord import user_payload

        author = user_payload(author_id, author_name, global_name=author_name.title())
        mentions = [b.user for b in self.bots.values() if f"<@{b.id}>" in content]
        message = self._message_payload(
            channel_id, content, author, guild_id=self._guild_of(channel_id), mentions=mentions
        )
        with self._lock:
            self.messages[message["id"]] = message
        return message

    # -- reactions ----------------------------------------------------------------------------
    async def _bot_reaction(self: FakeDiscordServer, request: web.Request) -> web.Response:
        """PUT/DELETE .../reactions/{emoji}/@me: the bot's own reaction."""
        self._record(request)
        bot = self._bot(request)
        if bot is None:
            return self._unauthorised()
        channel_id = request.match_info["channel_id"]
        message_id = request.match_info["message_id"]
        message = self.messages.get(message_id)
        if message is None or message["channel_id"] != channel_id:
            return self._json({"message": "Unknown Message", "code": 10008}, status=404)
        emoji = unquote(request.match_info["emoji"])
        adding = request.method == "PUT"
        await self._react(message, emoji, bot.id, bot.user, adding=adding)
        return web.Response(status=204)

    async def _react(
        self: FakeDiscordServer,
        message: dict[str, Any],
        emoji: str,
        user_id: str,
        user: dict[str, Any],
        *,
        adding: bool,
    ) -> None:
        channel_id, message_id = str(message["channel_id"]), str(message["id"])
        with self._lock:
            self.reactions.append(
                ReactionCall(
                    "add" if adding else "remove",
                    channel_id,
                    message_id,
                    emoji,
                    user_id,
                    time.monotonic(),
                )
            )
        data: dict[str, Any] = {
            "user_id": user_id,
            "channel_id": channel_id,
            "message_id": message_id,
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        guild_id = message.get("guild_id")
        if guild_id is not None:
            data["guild_id"] = guild_id
        if adding:
            data["message_author_id"] = message["author"]["id"]
            if guild_id is not None:
                data["member"] = {
                    "user": user,
                    "roles": [],
                    "joined_at": message["timestamp"],
                    "deaf": False,
                    "mute": False,
                    "nick": None,
                    "flags": 0,
                }
        await self._dispatch("MESSAGE_REACTION_ADD" if adding else "MESSAGE_REACTION_REMOVE", data)

    async def areact(
        self: FakeDiscordServer,
        message_id: str,
        emoji: str,
        *,
        user_id: str = "400000000000000001",
        user_name: str = "alice",
        remove: bool = False,
    ) -> None:
        """A user adds (or takes back) a reaction on a message."""
        from tests.support.fake_discord import user_payload

        message = self.messages[message_id]
        user = user_payload(user_id, user_name, global_name=user_name.title())
        await self._react(message, emoji, user_id, user, adding=not remove)

    def bot_reactions(self: FakeDiscordServer, message_id: str | None = None) -> list[ReactionCall]:
        with self._lock:
            return [
                r
                for r in self.reactions
                if r.user_id in {b.id for b in self.bots.values()}
                and (message_id is None or r.message_id == message_id)
            ]
