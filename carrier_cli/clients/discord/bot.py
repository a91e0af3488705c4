"""One Discord bot serving one character: discord.py events in, runtime turns, replies out.

The hard parts live here because they are where ElizaOS' Discord client failed in practice:
the typing indicator always stops (it runs in a task cancelled in `finally`), turns in one
channel run in order while channels run concurrently under a bound on model calls, a failing
or slow turn is answered with an apology instead of silence, and shutdown drains in-flight
turns within a grace period.

The order itself is the runtime's (runtime/rooms.py, the same for every client): the bot
hands each message to `handle_message` at once with `TurnHooks` carrying its bound on model
calls, the start of the typing indicator and the turn's clock, and the sending of the reply,
which the runtime runs while it still holds the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import discord

from carrier_cli.clients.discord import attachments, outgoing
from carrier_cli.clients.discord.addressing import InboundMessage, Verdict, decide, to_incoming
from carrier_cli.clients.discord.backfill import Backfill
from carrier_cli.clients.discord.options import DiscordOptions
from carrier_cli.clients.discord.reactions import (
    Acknowledger,
    on_reaction,
    remember_reply,
    reply_links,
)
from carrier_cli.clients.discord.recent_ids import RecentIds
from carrier_cli.clients.discord.split import split_message
from carrier_cli.clients.discord.threads import (
    FollowedThreads,
    is_thread,
    open_thread,
    resolve_thread,
    thread_name,
)
from carrier_cli.runtime.rooms import TurnHooks
from carrier_cli.runtime.types import Addressing, IncomingMessage, TurnResult
from carrier_cli.text import one_line

log = logging.getLogger("carrier_cli.discord")

MESSAGE_CONTENT_HELP = (
    "Discord is not sending message text to this bot: the Message Content intent is not "
    "enabled. Open https://discord.com/developers/applications, pick the application, go to "
    "Bot > Privileged Gateway Intents, switch on MESSAGE CONTENT INTENT, save, and restart "
    "`carrier run`."
)


class TurnRuntime(Protocol):
    """The part of AgentRuntime the bot uses (a stand-in in unit tests)."""

    @property
    def character(self) -> Any: ...

    async def handle_message(
        self, message: IncomingMessage, *, hooks: TurnHooks | None = None
    ) -> TurnResult: ...


_CONVERSATION_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})


def bot_intents() -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True  # privileged: enabled in the developer portal
    intents.guild_reactions = True  # feedback reactions on replies (not privileged)
    intents.dm_reactions = True
    return intents


def presence(status: str | None) -> discord.CustomActivity | None:
    """The character's status line as a custom activity: discord.py sends it in every
    IDENTIFY (so it is there on connect and after a reconnect)."""
    return discord.CustomActivity(name=status) if status and status.strip() else None


def inbound_from(message: discord.Message) -> InboundMessage:
    """Copy what the rules and the runtime need out of a discord.py message."""
    channel = message.channel
    guild = message.guild
    parent_id = getattr(channel, "parent_id", None)
    ref = message.reference
    replied_author: str | None = None
    if ref is not None and isinstance(ref.resolved, discord.Message):
        replied_author = str(ref.resolved.author.id)
    return InboundMessage(
        message_id=str(message.id),
        channel_id=str(channel.id),
        author_id=str(message.author.id),
        author_name=message.author.display_name,
        author_username=message.author.name,
        content=message.content,
        clean_content=message.clean_content,
        guild_id=str(guild.id) if guild is not None else None,
        guild_name=guild.name if guild is not None else None,
        channel_name=getattr(channel, "name", None),
        parent_channel_id=str(parent_id) if parent_id else None,
        parent_channel_name=getattr(getattr(channel, "parent", None), "name", None),
        author_is_bot=message.author.bot,
        mention_ids=[str(u.id) for u in message.mentions],
        replied_to_author_id=replied_author,
        replied_to_message_id=str(ref.message_id) if ref is not None and ref.message_id else None,
        attachments=[
            {"url": a.url, "filename": a.filename, "content_type": a.content_type, "size": a.size}
            for a in message.attachments
        ],
        has_embeds=bool(message.embeds or message.stickers),
    )


NONCE_MAX = 25  # Discord rejects a longer nonce


def reply_nonce(message_id: str | int, index: int, kind: str = "r") -> str:
    """The nonce of chunk `index` of our answer (`kind` "r": reply, "a": apology) to inbound
    message `message_id`.

    Deterministic on purpose: discord.py sends it with `enforce_nonce: true`, so Discord hands
    back the message it already created for the same nonce (same bot, same channel, within a
    few minutes) instead of posting another one. That covers discord.py retrying a POST that
    Discord created but answered 5xx, and a turn replayed after a crash or restart (catch-up)
    posting the same chunk again. discord.py's own default nonce is random per call, which
    covers neither. A snowflake has at most 20 digits, so "<id>-<kind><index>" fits in 25
    characters; anything longer is hashed to stay deterministic and within the limit.
    """
    nonce = f"{message_id}-{kind}{index}"
    if len(nonce) <= NONCE_MAX:
        return nonce
    digest = hashlib.sha256(nonce.encode()).digest()
    return str(int.from_bytes(digest[:8], "big") >> 1)  # 63 bits: at most 19 digits


async def _stop(task: asyncio.Task[None] | None) -> None:
    """Stop the typing indicator (idempotent): it must never outlive its turn."""
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


class CarrierDiscordBot(discord.Client):
    def __init__(
        self,
        runtime: TurnRuntime,
        config: DiscordOptions,
        *,
        on_status: Callable[[str], None] | None = None,
        guild_ready_timeout: float = 0.5,
    ) -> None:
        super().__init__(
            intents=bot_intents(),
            guild_ready_timeout=guild_ready_timeout,
            activity=presence(runtime.character.clients.discord.status),
            **self._client_options(config),
        )
        self.runtime = runtime
        # The process-wide Discord options; `options` below is the character's own block.
        self.config = config
        self.on_status = on_status
        self.accepting = True
        self.turns_handled = 0
        self._model_slots = asyncio.Semaphore(max(1, config.max_concurrent_turns))
        self._in_flight: set[asyncio.Task[None]] = set()
        self._own_ids = RecentIds(maxlen=2000)  # our recent messages (reply detection)
        self._hand_order = attachments.HandOrder()  # channel order while files are fetched
        self._content_warning_given = False
        self.ready_event = asyncio.Event()
        self._warming: asyncio.Task[None] | None = None  # the runtime's warm-up (start)
        self._catch_up_task: asyncio.Task[int] | None = None
        # message id -> our messages already in the channel for it, when a kill cut its
        # answer off after some chunks: the catch-up replay posts only the rest.
        self._posted_before: dict[int, list[str]] = {}
        self.caught_up: int | None = None  # set once the start-up catch-up has finished
        # Catch-up looks only at messages stored before this bot started: later ones are
        # live turns of this process (queued, or about to be).
        self._started_at = datetime.now(UTC)
        # Slash commands (/ask, /forget, /about, /memory): commands.py.
        from carrier_cli.clients.discord.commands import SlashCommands

        self.slash = SlashCommands(self)
        # Threads, backfill and reactions (threads.py, backfill.py, reactions.py).
        self.threads = FollowedThreads(
            getattr(runtime, "store", None), getattr(runtime, "agent_id", None)
        )
        self.backfill = Backfill(self, inbound_from, _CONVERSATION_TYPES)
        self._ack = Acknowledger()
        # The last feedback changes (discord message id, what was done): logs and tests.
        self.feedback_events: deque[tuple[str, str]] = deque(maxlen=100)

    def _client_options(self, config: DiscordOptions) -> dict[str, Any]:
        """More keyword arguments for discord.py's client (the sharded bot's shard ids)."""
        return {}

    @property
    def initial_connections(self) -> int:
        """Gateway connections made at start (one per shard run here): any later one is a
        reconnect."""
        return 1

    def owns_guild(self, guild_id: int | str | None) -> bool:
        """Whether Discord delivers this guild's events (None: DMs) to this process. Always,
        unless the bot runs only some of its shards (sharded.py)."""
        return True

    # -- identity ---------------------------------------------------------------------------
    @property
    def character_names(self) -> list[str]:
        character = self.runtime.character
        names = [character.name, getattr(character, "username", None)]
        return [n for n in names if n]

    @property
    def options(self) -> Any:
        return self.runtime.character.clients.discord

    async def start(self, token: str, *, reconnect: bool = True) -> None:
        """Log in and connect, while the runtime loads what the first turn needs (the
        local embedding model, in a worker thread): `on_ready` says the bot is connected
        once both are done, so that the first messages find it ready."""
        if self._warming is None:
            self._warming = asyncio.create_task(self._warm(), name="discord:warm")
        await super().start(token, reconnect=reconnect)

    async def _warm(self) -> None:
        warm = getattr(self.runtime, "warm", None)
        if warm is None:
            return
        try:
            await warm()
        except Exception as exc:  # the first turn tries again and reports it
            log.warning("Discord: loading the embedding model at start failed: %s", exc)

    # -- events -----------------------------------------------------------------------------
    async def on_ready(self) -> None:
        if self._warming is not None:
            await asyncio.shield(self._warming)  # ready means ready to answer at once
        user = self.user
        guilds = ", ".join(g.name for g in self.guilds[:5]) + (" …" if len(self.guilds) > 5 else "")
        who = f"{user.display_name} (@{user.name}, id {user.id})" if user else "?"
        status = (
            f"Discord: connected as {who} in "
            f"{len(self.guilds)} guild{'s' if len(self.guilds) != 1 else ''}"
            f"{' (' + guilds + ')' if guilds else ''} as character {self.runtime.character.name}"
        )
        if self.config.shards is not None:  # which part of the bot this process is
            status += f", {self.config.shards.describe()}"
        log.info(status)
        if self.on_status is not None:
            self.on_status(status)
        flags = self.application_flags
        if not (flags.gateway_message_content or flags.gateway_message_content_limited):
            self._warn_missing_content()
        if self._catch_up_task is None:  # on_ready fires again after a new session: once only
            self._catch_up_task = asyncio.create_task(self._catch_up(), name="discord:catch-up")
            self.slash.start_sync()
        for guild in self.guilds:  # once per guild (a later on_ready finds them started)
            self.backfill.start(guild)
        self.ready_event.set()

    async def on_guild_join(self, guild: discord.Guild) -> None:
        """Added to a guild while running (GUILD_CREATE after READY): its slash commands
        (sync_commands: guild) and its history (backfill)."""
        await self.slash.guild_joined(guild)
        await self.backfill.guild(guild)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        """A guild back after an outage, or one that came late: backfilled if not yet."""
        await self.backfill.guild(guild)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reaction(payload, added=True)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reaction(payload, added=False)

    async def _reaction(self, payload: discord.RawReactionActionEvent, *, added: bool) -> None:
        if self.user is None:
            return
        try:
            done = await on_reaction(self.runtime, payload, added=added, bot_id=self.user.id)
        except Exception as exc:  # feedback is never worth the bot
            log.warning("Discord: could not store the reaction on %s: %s", payload.message_id, exc)
            return
        if done is not None:
            log.info("Discord: feedback %s %s on reply %s", done, payload.emoji, payload.message_id)
            self.feedback_events.append((str(payload.message_id), done))

    async def on_resumed(self) -> None:
        log.info("Discord: gateway session resumed for %s", self.runtime.character.name)

    # Slash commands: the tree gets commands by itself; these two are commands.py's too.
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        await self.slash.on_interaction(interaction)

    async def on_message(self, message: discord.Message) -> None:
        if self.user is None or message.type not in _CONVERSATION_TYPES:
            return  # joins, pins, boosts, thread notices: nothing anyone said
        inbound = inbound_from(message)
        unknown = message.guild is not None and isinstance(
            message.channel, discord.PartialMessageable
        )
        if not (unknown or is_thread(message.channel)):
            self._take(message, inbound)  # no await before the queue: arrival order kept
            return
        # In a thread, whether the bot follows it is looked up (an await): messages of one
        # thread wait for each other here (a FIFO lock), so they are queued in order, and a
        # mention is recorded before the next message of the thread is decided.
        async with self.threads.in_order(inbound.channel_id):
            if unknown:  # a guild channel discord.py has not cached: a thread, usually
                thread = await resolve_thread(self, inbound.channel_id)
                if thread is None:
                    self._take(message, inbound)
                    return
                inbound.channel_name = thread.name
                inbound.parent_channel_id = str(thread.parent_id)
                inbound.parent_channel_name = getattr(thread.parent, "name", None)
            inbound.in_followed_thread = await self.threads.follows(inbound.channel_id)
            verdict = self._take(message, inbound)
            if verdict is not None and verdict.answers and not inbound.in_followed_thread:
                await self.threads.follow(inbound.channel_id)  # addressed in it: a conversation

    def _take(self, message: discord.Message, inbound: InboundMessage) -> Verdict | None:
        """Decide on the message and queue its turn; returns the verdict if queued."""
        assert self.user is not None
        verdict = decide(
            inbound, bot_id=str(self.user.id), options=self.options, names=self.character_names
        )
        if (
            inbound.replied_to_author_id is None
            and inbound.replied_to_message_id is not None
            and inbound.replied_to_message_id in self._own_ids
        ):
            # A reply whose referenced message discord did not include: we know it is ours.
            inbound.replied_to_author_id = str(self.user.id)
            verdict = decide(
                inbound, bot_id=str(self.user.id), options=self.options, names=self.character_names
            )
        if inbound.author_id == str(self.user.id):
            self._own_ids.add(inbound.message_id)
        self._check_content_intent(inbound)
        if not verdict.handle:
            log.debug("Discord: ignoring message %s: %s", inbound.message_id, verdict.reason)
            return None
        if not self.accepting:
            log.info("Discord: shutting down, not taking message %s", inbound.message_id)
            return None
        self._queue_turn(message, inbound, verdict)
        return verdict

    # -- turns ------------------------------------------------------------------------------
    def _queue_turn(
        self,
        message: discord.Message,
        inbound: InboundMessage,
        verdict: Verdict,
        *,
        catch_up: bool = False,
        on_stored: Callable[[], None] | None = None,
    ) -> asyncio.Task[None]:
        """One task per message, started at once: the runtime keeps each channel's order
        (runtime/rooms.py), runs channels concurrently under the bound on model calls, and
        stores a channel's next message while its current reply is generated. `on_stored`:
        called once the message is stored (TurnHooks.on_stored)."""
        task = asyncio.create_task(
            self._turn(message, inbound, verdict, catch_up=catch_up, on_stored=on_stored)
        )
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def _turn(
        self,
        message: discord.Message,
        inbound: InboundMessage,
        verdict: Verdict,
        *,
        catch_up: bool = False,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        started = time.monotonic()
        channel: Any = message.channel  # where the answer goes: the channel, or a new thread
        if self._opens_thread(message, verdict):
            thread = await open_thread(
                message,
                thread_name(self._without_own_name(inbound.clean_content), inbound.author_name),
            )
            if thread is not None:
                channel = thread
                await self.threads.follow(str(thread.id))
                # The conversation lives in the thread: its first message is this one.
                inbound.parent_channel_id, inbound.parent_channel_name = (
                    inbound.channel_id,
                    inbound.channel_name,
                )
                inbound.channel_id, inbound.channel_name = str(thread.id), thread.name
        incoming = to_incoming(inbound, verdict)
        where = incoming.room_name
        outcome = "no reply"
        typing: asyncio.Task[None] | None = None
        ack = self.options.ack_reaction if verdict.answers else None
        acking: asyncio.Task[bool] | None = None
        # The sent chunks' feedback links, written with the answered mark (one transaction
        # instead of two, of a turn's four writes).
        links: list[tuple[str, Any, float | None]] = []
        loop = asyncio.get_running_loop()
        previous, mine = self._hand_order.ticket(inbound.channel_id)  # before any await
        try:
            try:  # images and files, from Discord's CDN only (attachments.py)
                records = await attachments.for_turn(
                    message,
                    self.runtime,
                    api_base=self.config.api_base,
                    proxy=self.http.proxy,
                    answering=not incoming.ignore,
                )
                if records is not None:
                    incoming.attachments = records
                await self._hand_order.wait(previous)
            finally:
                self._hand_order.handed(inbound.channel_id, mine)
            # The clock starts when the channel's turn does (on_start), not while queued.
            async with asyncio.timeout(None) as deadline:

                def on_start() -> None:
                    nonlocal typing
                    deadline.reschedule(loop.time() + self.config.turn_timeout)
                    if verdict.answers:  # likely to answer: show it (should-respond may say no)
                        typing = asyncio.create_task(self._keep_typing(channel))

                async def deliver(result: TurnResult) -> None:
                    nonlocal outcome
                    deadline.reschedule(None)  # sending is not the model's time
                    await _stop(typing)
                    outcome = await self._deliver(
                        message, result, catch_up=catch_up, channel=channel, links=links
                    )

                if ack:  # in the background: an await here would let a later turn of the
                    # channel reach the runtime first
                    acking = asyncio.create_task(self._ack.add(message, ack))

                hooks = TurnHooks(
                    limit=self._model_slots,
                    on_stored=on_stored,
                    on_start=on_start,
                    deliver=deliver,
                )
                try:
                    await self.runtime.handle_message(incoming, hooks=hooks)
                finally:
                    await _stop(typing)
                    if acking is not None and ack and await acking:  # whatever the outcome
                        await self._ack.remove(message, ack, self.user)
        except asyncio.CancelledError:
            log.warning(
                "Discord: turn for message %s in %s cancelled (shutdown)", inbound.message_id, where
            )
            if links:  # the reply went out: its feedback links are still written
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(
                        self._write_cache(links, "link the reply to", inbound.message_id)
                    )
            raise
        except TimeoutError:
            log.error(
                "Discord: turn for message %s in %s exceeded %.0fs and was cancelled",
                inbound.message_id,
                where,
                self.config.turn_timeout,
            )
            apologised = await self._apologise(message, channel)
            outcome = "timed out; apologised" if apologised else "timed out"
        except Exception as exc:
            log.error(
                "Discord: turn for message %s in %s failed: %s: %s",
                inbound.message_id,
                where,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            outcome = "failed; apologised" if await self._apologise(message, channel) else "failed"
        # Reached only when the turn ended (not when cancelled by shutdown or a kill): from
        # now on catch-up leaves this message alone.
        await self._mark_answered(inbound.message_id, outcome, links)
        self.turns_handled += 1
        log.info(
            "Discord[%s] %s%s: %r -> %s (%.2fs)",
            self.runtime.character.name,
            where,
            "" if inbound.is_dm else f" {inbound.author_name}",
            one_line(inbound.clean_content, 60),
            outcome,
            time.monotonic() - started,
        )

    def _without_own_name(self, text: str) -> str:
        """The text without the leading @mention of the bot (a thread's name)."""
        me = self.user
        if me is None:
            return text
        for name in (me.display_name, me.name):
            if text.startswith(f"@{name}"):
                return text[len(name) + 1 :].lstrip(" ,:")
        return text

    def _opens_thread(self, message: discord.Message, verdict: Verdict) -> bool:
        """`reply_in_thread`: a conversation that starts with a mention in a channel (not
        in a thread, not in a DM) gets its own thread."""
        return bool(
            self.options.reply_in_thread
            and verdict.answers
            and verdict.how is Addressing.MENTION
            and message.guild is not None
            and isinstance(message.channel, discord.TextChannel)
        )

    async def _deliver(
        self,
        message: discord.Message,
        result: TurnResult,
        *,
        catch_up: bool,
        channel: Any = None,
        links: list[tuple[str, Any, float | None]] | None = None,
    ) -> str:
        """Send the turn's result (the runtime still holds the channel); returns the outcome.
        `links`: where the reply's feedback links go (written by the caller), else they
        are written at once."""
        if catch_up and result.replayed and result.text:
            # Stored before the crash but maybe never posted, or posted in part: post what
            # the channel lacks (catch-up found the chunks that are there). A chunk posted
            # but not seen is still caught by its nonce within Discord's window.
            posted = self._posted_before.pop(message.id, None)
            sent = await self._send_reply(
                message, result.text, channel=channel, result=result, already=posted, links=links
            )
            sent += await self._send_action_messages(
                message, result, channel=channel, already=posted
            )
            return f"caught up: stored reply sent in {sent} message{'s' if sent != 1 else ''}"
        if getattr(result, "replayed", False):
            # Discord re-delivered a message we already answered (e.g. after a RESUME).
            return "already handled (replayed event)"
        if result.text:
            sent = await self._send_reply(
                message, result.text, channel=channel, result=result, links=links
            )
            sent += await self._send_action_messages(message, result, channel=channel)
            extras = await outgoing.send_extras(  # a plugin's files and embeds (SEND_FILE)
                message,
                getattr(result, "files", ()),
                getattr(result, "embeds", ()),
                nonce=reply_nonce(message.id, 0, "f"),
                channel=channel,
            )
            if extras is not None:
                self._own_ids.add(str(extras.id))
                sent += 1
            where = " in a thread" if channel is not None and channel is not message.channel else ""
            return f"replied{where} in {sent} message{'s' if sent != 1 else ''}"
        return f"no reply ({result.decision})"

    async def _keep_typing(self, channel: Any) -> None:
        """Discord shows 'typing' for 10 s per request; repeat until cancelled."""
        interval = max(0.05, self.config.typing_interval)
        while True:
            try:
                await channel.typing()
            except discord.HTTPException as exc:
                log.debug("Discord: typing indicator failed: %s", exc)
            await asyncio.sleep(interval)

    async def _send_reply(
        self,
        message: discord.Message,
        text: str,
        kind: str = "r",
        *,
        channel: Any = None,
        result: TurnResult | None = None,
        as_reply: bool = True,
        already: list[str] | None = None,
        links: list[tuple[str, Any, float | None]] | None = None,
    ) -> int:
        """Post `text` in chunks: the first replies to `message` (`as_reply`), unless the
        answer goes to a thread opened on it (a reply must be in the same channel; the
        thread starts with the message anyway). `result`: link the chunks to the reply's
        memory, for feedback reactions: the links are added to `links` when given (the
        turn writes them with its answered mark), else written here. `already`: chunks
        found in the channel at catch-up, skipped (and taken off the list); returns how
        many were sent."""
        chunks = split_message(text)
        target: Any = channel if channel is not None else message.channel
        in_place = as_reply and target is message.channel
        reference = message.to_reference(fail_if_not_exists=False) if in_place else None
        mentions = discord.AllowedMentions(
            everyone=False, roles=False, users=True, replied_user=True
        )
        sent_ids: list[int] = []
        skipped = 0
        for index, chunk in enumerate(chunks):
            if already is not None and chunk in already:
                already.remove(chunk)
                skipped += 1
                continue
            sent = await target.send(
                chunk,
                reference=reference if index == 0 else None,
                allowed_mentions=mentions,
                nonce=reply_nonce(message.id, index, kind),
            )
            self._own_ids.add(str(sent.id))
            sent_ids.append(sent.id)
        if result is not None:
            agent_id = getattr(self.runtime, "agent_id", None)
            if links is not None:
                links.extend(reply_links(agent_id, sent_ids, result.reply_id, result.message_id))
            else:
                await remember_reply(
                    getattr(self.runtime, "store", None),
                    agent_id,
                    sent_ids,
                    result.reply_id,
                    result.message_id,
                )
        return len(chunks) - skipped

    async def _send_action_messages(
        self,
        message: discord.Message,
        result: TurnResult,
        *,
        channel: Any = None,
        already: list[str] | None = None,
    ) -> int:
        """The messages actions added after the reply (`result.extra_messages`: CONTINUE's
        follow-up, a plugin action's text), in order, where the reply went (the channel or
        its thread), split like the reply. They follow it rather than reply to `message`;
        extra `n` has its own nonces ("x<n>.<chunk>"), so a retried or caught-up send
        returns the message already posted instead of a copy."""
        sent = 0
        for n, text in enumerate(getattr(result, "extra_messages", None) or ()):
            sent += await self._send_reply(
                message, text, f"x{n}.", channel=channel, as_reply=False, already=already
            )
        return sent

    async def _apologise(self, message: discord.Message, channel: Any = None) -> bool:
        apology = self.config.apology.strip()
        if not apology:
            return False
        try:
            await self._send_reply(message, apology, kind="a", channel=channel)
            return True
        except Exception as exc:  # the apology must never take the bot down
            log.error("Discord: could not send the apology: %s", exc)
            return False

    # -- catch-up after a restart -------------------------------------------------------------
    def _answered_key(self, message_id: str) -> str:
        return f"discord:answered:{getattr(self.runtime, 'agent_id', '')}:{message_id}"

    async def _mark_answered(
        self,
        message_id: str,
        outcome: str,
        links: list[tuple[str, Any, float | None]] | None = None,
    ) -> None:
        """Remember in the memory database that this message's turn ran to its end, so
        catch-up at the next start does not answer it again; `links` (the reply's feedback
        links, `reply_links`) go in the same transaction. Best effort: a failure here
        costs at most one nonce-deduplicated retry after a restart (and feedback on that
        reply), never the bot."""
        entries = list(links or ())
        minutes = self.config.catch_up_minutes
        if minutes > 0:
            ttl = max(86400.0, minutes * 120)  # outlives the window it is looked up in
            entries.append((self._answered_key(message_id), outcome, ttl))
        await self._write_cache(entries, "record as answered", message_id)

    async def _write_cache(
        self, entries: list[tuple[str, Any, float | None]], what: str, message_id: str
    ) -> None:
        store = getattr(self.runtime, "store", None)
        if store is None or not entries:
            return
        try:
            await store.cache_set_many(entries)
        except Exception as exc:
            log.warning("Discord: could not %s message %s: %s", what, message_id, exc)

    async def _catch_up(self) -> int:
        """Answer what a crash or a turn cut off at shutdown left unanswered.

        Candidates are the user messages stored (by the turn's intake) in the last
        `discord_catch_up_minutes` whose turn never reached its end (no answered mark). Each
        is fetched from Discord again, so the live addressing rules (mention, DM, reply to
        the bot, named) decide on the real message, and queued oldest first. The runtime
        replays a stored reply or runs the turn again; the deterministic nonces keep a
        chunk that did reach Discord from being posted twice. Returns how many were queued.
        """
        count = 0
        try:
            count = await self._run_catch_up()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # catch-up must never take the bot down
            log.error(
                "Discord: catching up unanswered messages failed: %s: %s",
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        self.caught_up = count
        return count

    async def _run_catch_up(self) -> int:
        minutes = self.config.catch_up_minutes
        store = getattr(self.runtime, "store", None)
        agent_id = getattr(self.runtime, "agent_id", None)
        if minutes <= 0 or store is None or agent_id is None or self.user is None:
            return 0
        from carrier_cli.memory.types import MemoryKind

        cutoff = datetime.now(UTC) - timedelta(minutes=minutes)
        candidates: list[Any] = []  # newest first while reading
        offset, page = 0, 200
        while True:
            rows = await store.list(
                agent_id=agent_id, kinds=[MemoryKind.MESSAGE], limit=page, offset=offset
            )
            for memory in rows:
                created = memory.created_at
                if created is not None and created.tzinfo is None:
                    created = created.replace(tzinfo=UTC)
                if created is not None and created < cutoff:
                    rows = []  # older than the window: done
                    break
                if created is not None and created >= self._started_at:
                    continue
                meta = memory.metadata or {}
                if (
                    memory.content.get("source") == "discord"
                    and memory.entity_id != agent_id
                    and meta.get("message_key")
                    and meta.get("room_key")
                ):
                    candidates.append(memory)
            if len(rows) < page:
                break
            offset += page
        tasks: list[asyncio.Task[None]] = []
        for memory in reversed(candidates):  # oldest first
            message_id, channel_id = (
                str(memory.metadata["message_key"]),
                str(memory.metadata["room_key"]),
            )
            if await store.cache_get(self._answered_key(message_id)) is not None:
                continue
            if not await self._owns_channel(channel_id):
                continue  # another process's shard receives (and catches up) this channel
            message = await self._fetch_message(channel_id, message_id)
            if message is None or not self.accepting:
                continue
            inbound = inbound_from(message)
            verdict = decide(
                inbound, bot_id=str(self.user.id), options=self.options, names=self.character_names
            )
            if not verdict.answers:
                continue  # only what was said to the bot; chatter, listen channels let go
            posted = await self._posted_answer(message)
            if posted is not None:
                # Posted (a reply or an apology) but killed before the mark. Whole: mark it,
                # do not repost. Cut off after some chunks (a long reply, or its action
                # messages): the catch-up replay posts the rest of the stored answer.
                stored = await self._stored_answer(inbound, verdict)
                if not Counter(stored or ()) - Counter(posted):  # nothing missing
                    outcome = "answered on Discord (found at catch-up)"
                    await self._mark_answered(message_id, outcome)
                    continue
                self._posted_before[message.id] = posted
            # Oldest first at the model too: the next turn is handed in once this one is
            # stored and queued for a slot, not while it still reads its files (a slow CDN
            # download would otherwise let a newer message take the slot first).
            in_line: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def mark_in_line(in_line: asyncio.Future[None] = in_line) -> None:
                if not in_line.done():
                    in_line.set_result(None)

            task = self._queue_turn(
                message, inbound, verdict, catch_up=True, on_stored=mark_in_line
            )
            tasks.append(task)
            await asyncio.wait({in_line, task}, return_when=asyncio.FIRST_COMPLETED)
        if tasks:
            await asyncio.wait(tasks)
        log.info(
            "Discord: caught up %d unanswered message%s (last %g minutes)",
            len(tasks),
            "" if len(tasks) == 1 else "s",
            minutes,
        )
        return len(tasks)

    async def _posted_answer(self, message: discord.Message) -> list[str] | None:
        """Our answer to `message` as found in its channel: the texts of our messages from
        the one replying to it (the first chunk of every answer references the message)
        on, among the next 100, oldest first. None when none replies to it there; beyond
        100, or when Discord cannot say, the reply nonces still stop a second copy within
        Discord's window."""
        assert self.user is not None
        ours: list[str] | None = None
        try:
            async for later in message.channel.history(after=message, limit=100):
                if later.author.id != self.user.id:
                    continue
                ref = later.reference
                if ours is None and ref is not None and ref.message_id == message.id:
                    ours = []
                if ours is not None:
                    ours.append(later.content)
        except discord.HTTPException as exc:
            log.debug("Discord: could not read the history after %s: %s", message.id, exc)
        return ours

    async def _stored_answer(self, inbound: InboundMessage, verdict: Verdict) -> list[str] | None:
        """The chunks of the stored reply to this message and of its action messages, as
        `_deliver` posts them; None when no reply is stored (the turn never got that far:
        whatever is in the channel, an apology, is the whole answer)."""
        from carrier_cli.runtime.turn.replay import stored_answer

        store = getattr(self.runtime, "store", None)
        agent_id = getattr(self.runtime, "agent_id", None)
        if store is None or agent_id is None:
            return None
        stored = await stored_answer(store, agent_id, to_incoming(inbound, verdict))
        if stored is None or not stored[0].text:
            return None
        reply, extra = stored
        chunks = split_message(reply.text)
        for text in extra:
            if text:
                chunks += split_message(text)
        return chunks

    async def _owns_channel(self, channel_id: str) -> bool:
        """Whether this process's shards receive the channel's messages (always when the
        bot is not split). A channel of our own guilds is cached; any other is either a DM
        (shard 0's) or a guild channel of another shard: Discord says which."""
        if self.config.shards is None:
            return True
        channel: Any = self.get_channel(int(channel_id))
        if channel is not None:
            return self.owns_guild(getattr(getattr(channel, "guild", None), "id", None))
        if not self.owns_guild(None):
            return False  # not ours if a DM (shard 0's) nor if a guild's (not cached here)
        try:
            data: Any = await self.http.get_channel(int(channel_id))
        except discord.HTTPException as exc:
            log.info("Discord: not catching up in channel %s: %s", channel_id, exc)
            return False
        return self.owns_guild(data.get("guild_id"))

    async def _fetch_message(self, channel_id: str, message_id: str) -> discord.Message | None:
        channel: Any = self.get_channel(int(channel_id))
        if channel is None:  # a DM channel is not cached before its first event
            channel = self.get_partial_messageable(int(channel_id))
        try:
            return await channel.fetch_message(int(message_id))  # type: ignore[no-any-return]
        except discord.HTTPException as exc:  # deleted, or no longer visible to the bot
            log.info("Discord: not catching up message %s: %s", message_id, exc)
            return None

    # -- diagnostics ------------------------------------------------------------------------
    def _check_content_intent(self, inbound: InboundMessage) -> None:
        """Without the intent Discord delivers guild messages with empty text."""
        if (
            not self._content_warning_given
            and not inbound.is_dm
            and not inbound.content
            and not inbound.attachments
            and not inbound.has_embeds
            and not inbound.author_is_bot
        ):
            self._warn_missing_content()

    def _warn_missing_content(self) -> None:
        if not self._content_warning_given:
            self._content_warning_given = True
            log.warning(MESSAGE_CONTENT_HELP)

    # -- shutdown ---------------------------------------------------------------------------
    async def drain(self, grace: float) -> None:
        """Stop taking messages, give in-flight turns `grace` seconds, cancel the rest."""
        self.accepting = False
        await self.slash.close()
        backfills = self.backfill.cancel()  # stored so far stays; the rest at the next start
        if backfills:
            await asyncio.wait(backfills, timeout=5)
        if self._catch_up_task is not None and not self._catch_up_task.done():
            self._catch_up_task.cancel()  # its queued turns are in _in_flight, drained below
            await asyncio.wait({self._catch_up_task}, timeout=5)
        pending = set(self._in_flight)
        if pending:
            log.info("Discord: finishing %d turn(s) (up to %.0fs)", len(pending), grace)
            _, still = await asyncio.wait(pending, timeout=max(0.0, grace))
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=5)
        await self.close()
