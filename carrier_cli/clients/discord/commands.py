"""The bot's slash commands, through discord.py's `app_commands`: /ask, /forget, /about,
/memory, their sync to Discord, and the answers to commands and buttons the bot no longer has.

- /ask text: a turn of the runtime like a message (the asker's id and name, the channel as
  the room), deferred at once (Discord allows 3 s for the first answer; a turn takes
  longer), then the reply as follow-ups, split as messages are (split.py).
- /forget [scope]: deletes the agent's facts about the asker (scope all: and their messages)
  after a confirmation button (forget_view.py); the deletion is memory.forget's.
- /about: the character's name, first bio line and model.
- /memory query: a memory search, for members with Manage Server (or Administrator) or a
  role named in `clients.discord.memory_roles` (names or ids); refused ephemerally else.

Sync: `clients.discord.sync_commands: guild` puts the commands in each guild of the bot on
start and on joining one (instant: for development); `global` (or `carrier run
--sync-commands`) registers them globally once (Discord takes up to an hour to show them
everywhere); `off` leaves what is registered. A command Discord still shows but the bot
does not have (renamed, removed, a stale client) gets an ephemeral explanation.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal, Protocol, cast

import discord
from discord import app_commands

from carrier_cli.clients.discord.command_rules import (
    STALE_BUTTON,
    ask_message,
    may_search_memory,
    plural,
    refusal_here,
    stale_command_text,
)
from carrier_cli.clients.discord.forget_view import BUTTON_PREFIX, CONFIRM_SECONDS, ForgetConfirm
from carrier_cli.clients.discord.interactions import failure_reason, report_failure, tell, where
from carrier_cli.clients.discord.split import split_message
from carrier_cli.runtime.rooms import TurnHooks
from carrier_cli.runtime.types import TurnResult

log = logging.getLogger("carrier_cli.discord")

MEMORY_HITS = 8  # results /memory shows
MEMORY_SNIPPET = 300  # characters of each result
MAX_ASK = 2000  # characters of /ask text (Discord's own limit for a string option is 6000)
MAX_QUERY = 500
FINISHED_GRACE = 60.0  # seconds a pressed confirmation's buttons are still recognised


class CommandsHost(Protocol):
    """What the commands use of the bot (bot.CarrierDiscordBot, a discord.Client): its
    runtime and options, its bound on model calls, its shutdown bookkeeping."""

    runtime: Any
    config: Any  # DiscordOptions
    accepting: bool
    _model_slots: asyncio.Semaphore
    _in_flight: set[asyncio.Task[None]]

    @property
    def options(self) -> Any: ...  # the character's clients.discord block
    @property
    def guilds(self) -> Sequence[discord.Guild]: ...
    def owns_guild(self, guild_id: int | str | None) -> bool: ...
    async def _mark_answered(self, message_id: str, outcome: str) -> None: ...


class SlashCommands:
    """The command tree of one bot and what it needs: the runtime through the bot."""

    def __init__(self, bot: CommandsHost) -> None:
        self.bot = bot
        self.tree = CarrierCommandTree(bot, self)
        self.live_views: dict[str, ForgetConfirm] = {}  # key -> confirmation awaiting a press
        self.synced: list[str] = []  # "global" or guild ids, in order (tests, logs)
        self._sync_task: asyncio.Task[None] | None = None
        self.confirm_seconds = CONFIRM_SECONDS
        _register(self)

    # -- sync ------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        if self.bot.config.sync_commands:
            return "global"  # carrier run --sync-commands
        return str(getattr(self.bot.options, "sync_commands", "off"))

    def start_sync(self) -> None:
        """On ready (once): sync in the background, the bot answers meanwhile."""
        if self._sync_task is None and self.mode != "off":
            self._sync_task = asyncio.create_task(self._sync_all(), name="discord:sync-commands")

    async def _sync_all(self) -> None:
        if self.mode == "global":
            if self.bot.owns_guild(None):  # one process of a split bot is enough
                await self._sync(None)
            return
        for guild in list(self.bot.guilds):
            await self._sync(guild)

    async def guild_joined(self, guild: discord.Guild) -> None:
        if self.mode == "guild":
            await self._sync(guild)

    async def _sync(self, guild: discord.Guild | None) -> None:
        target = "globally" if guild is None else f"to guild {guild.id} ({guild.name})"
        try:
            if guild is not None:
                self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        except asyncio.CancelledError:
            raise
        except discord.Forbidden as exc:
            log.warning(
                "Discord: could not sync the slash commands %s: %s. Invite the bot with the "
                "applications.commands scope (OAuth2 URL Generator: bot + applications.commands).",
                target,
                failure_reason(exc),
            )
            return
        except Exception as exc:  # never takes the bot down: it still answers messages
            log.error("Discord: syncing the slash commands %s failed: %s", target, exc)
            return
        self.synced.append("global" if guild is None else str(guild.id))
        names = ", ".join(f"/{c.name}" for c in synced)
        later = " (Discord may take up to an hour to show them everywhere)" if guild is None else ""
        log.info("Discord: synced %d slash commands %s: %s%s", len(synced), target, names, later)

    async def close(self) -> None:
        if self._sync_task is not None and not self._sync_task.done():
            self._sync_task.cancel()
            with contextlib.suppress(BaseException):
                await self._sync_task

    # -- buttons whose view is gone ---------------------------------------------------------
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """discord.py drops a button press no view claims; Discord then shows the user
        "This interaction failed". Ours (by their custom_id prefix) get an explanation."""
        if interaction.type is not discord.InteractionType.component:
            return
        data: Any = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        if not custom_id.startswith(BUTTON_PREFIX):
            return
        key = custom_id[len(BUTTON_PREFIX) :].split(":", 1)[0]
        if key in self.live_views:
            return  # its view answers
        log.info("Discord: %s: the confirmation is gone (expired or restarted)", where(interaction))
        await tell(interaction, STALE_BUTTON)

    def _view_finished(self, view: ForgetConfirm) -> None:
        """A pressed confirmation stays known for FINISHED_GRACE seconds: discord.py runs
        its button callback before `on_interaction`, which must not take the press for a
        stale one; an expired one is forgotten at once."""
        if view.outcome == "expired":
            self.live_views.pop(view.key, None)
        else:
            asyncio.get_running_loop().call_later(
                FINISHED_GRACE, self.live_views.pop, view.key, None
            )

    # -- the commands ----------------------------------------------------------------------
    async def ask(self, interaction: discord.Interaction[Any], text: str) -> None:
        bot = self.bot
        if not bot.accepting:
            await tell(interaction, "The bot is shutting down; ask again in a moment.")
            return
        refused = refusal_here(interaction, bot.options)
        if refused is not None:
            log.info("Discord: %s refused: %s", where(interaction), refused)
            await tell(interaction, refused)
            return
        await interaction.response.defer(thinking=True)  # first, within Discord's 3 s
        current = asyncio.current_task()
        if current is not None:  # shutdown drains it like a message's turn
            bot._in_flight.add(current)  # type: ignore[arg-type]
        try:
            await self._ask(interaction, text)
        finally:
            if current is not None:
                bot._in_flight.discard(current)  # type: ignore[arg-type]

    async def _ask(self, interaction: discord.Interaction[Any], text: str) -> None:
        bot = self.bot
        started = time.monotonic()
        incoming = ask_message(interaction, text)
        outcome = "no reply"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as deadline:

                def on_start() -> None:  # the turn's clock starts when the channel's turn does
                    deadline.reschedule(loop.time() + bot.config.turn_timeout)

                async def deliver(result: TurnResult) -> None:
                    nonlocal outcome
                    deadline.reschedule(None)  # sending is not the model's time
                    outcome = await self._send_answer(interaction, result)

                hooks = TurnHooks(limit=bot._model_slots, on_start=on_start, deliver=deliver)
                await bot.runtime.handle_message(incoming, hooks=hooks)
        except TimeoutError:
            outcome = "timed out"
            log.error(
                "Discord: %s exceeded %.0fs and was cancelled",
                where(interaction),
                bot.config.turn_timeout,
            )
            await tell(interaction, bot.config.apology.strip() or "Sorry, that took too long.")
        except discord.HTTPException:
            raise  # sending failed: the tree's on_error logs it (and tells, if it can)
        except Exception as exc:
            outcome = "failed"
            await report_failure(
                interaction,
                exc,
                user_message=bot.config.apology.strip() or "Sorry, something went wrong.",
            )
        await bot._mark_answered(str(interaction.id), outcome)
        log.info(
            "Discord[%s] %s: %r -> %s (%.2fs)",
            bot.runtime.character.name,
            where(interaction),
            text[:60],
            outcome,
            time.monotonic() - started,
        )

    async def _send_answer(self, interaction: discord.Interaction[Any], result: TurnResult) -> str:
        text = result.text or ""
        chunks = [c for part in [text, *result.extra_messages] for c in split_message(part)]
        if not chunks:
            # A deferred interaction keeps "thinking…" until answered: never leave it so.
            await interaction.followup.send(
                f"{self.bot.runtime.character.name} has nothing to say to that.", ephemeral=True
            )
            return f"no reply ({result.decision})"
        mentions = discord.AllowedMentions(everyone=False, roles=False, users=True)
        for chunk in chunks:
            await interaction.followup.send(chunk, allowed_mentions=mentions, wait=True)
        return f"replied in {len(chunks)} message{'s' if len(chunks) != 1 else ''}"

    async def forget(self, interaction: discord.Interaction[Any], scope: str) -> None:
        from carrier_cli.memory.forget import count_about, forget_person, person_entity_id
        from carrier_cli.memory.types import MemoryKind

        runtime = self.bot.runtime
        store, agent_id = getattr(runtime, "store", None), getattr(runtime, "agent_id", None)
        if store is None or agent_id is None:
            await tell(interaction, "This bot keeps no memory to forget.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        user_key = str(interaction.user.id)
        entity_id = person_entity_id("discord", user_key)
        facts = await count_about(store, agent_id, entity_id, MemoryKind.FACT)
        messages = (
            await count_about(store, agent_id, entity_id, MemoryKind.MESSAGE)
            if scope == "all"
            else 0
        )
        name = runtime.character.name
        if facts + messages == 0:
            await interaction.followup.send(
                f"{name} has stored nothing about you: nothing to forget.", ephemeral=True
            )
            return
        what = plural(facts, "fact") + (
            f" and {plural(messages, 'message')} you sent" if scope == "all" else ""
        )

        async def do_forget() -> str:
            done = await forget_person(
                store,
                agent_id,
                platform="discord",
                external_id=user_key,
                scope="all" if scope == "all" else "facts",
            )
            forget_cache = getattr(runtime, "forget_facts_everywhere", None)
            if forget_cache is not None:
                await forget_cache(done.entity_id)
            deleted = plural(done.facts, "fact") + (
                f" and {plural(done.messages, 'message')}" if scope == "all" else ""
            )
            return f"Done: {name} forgot {deleted} about you."

        view = ForgetConfirm(
            interaction.user.id,
            do_forget,
            on_finish=self._view_finished,
            timeout=self.confirm_seconds,
        )
        view.command_interaction = interaction
        self.live_views[view.key] = view
        them = "it" if facts + messages == 1 else "them"
        await interaction.followup.send(
            f"{name} has stored {what} about you. Forget {them}? This cannot be undone.",
            view=view,
            ephemeral=True,
            wait=True,
        )

    async def about(self, interaction: discord.Interaction[Any]) -> None:
        runtime = self.bot.runtime
        character = runtime.character
        bio = next((line for line in getattr(character, "bio", []) if line.strip()), "")
        config = getattr(runtime, "model_config", None)
        model = (
            f"{config.provider} {config.large}"
            if config is not None
            else (character.model.name or "the configured model")
        )
        lines = [f"**{character.name}**", bio[:300], f"Model: {model}"]
        await interaction.response.send_message(
            "\n".join(line for line in lines if line), ephemeral=True
        )

    async def memory(self, interaction: discord.Interaction[Any], query: str) -> None:
        allowed, why = may_search_memory(interaction, self.bot.options.memory_roles)
        if not allowed:
            log.info("Discord: %s refused: %s", where(interaction), why)
            await tell(interaction, why)
            return
        runtime: Any = self.bot.runtime
        if getattr(runtime, "store", None) is None:
            await tell(interaction, "This bot keeps no memory to search.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        hits = await runtime.store.search(query, agent_id=runtime.agent_id, k=MEMORY_HITS)
        if not hits:
            await interaction.followup.send(f"Nothing in memory matches {query!r}.", ephemeral=True)
            return
        lines = [f"Memory matching {query!r} (best first):"]
        for n, hit in enumerate(hits, 1):
            memory = hit.memory
            text = " ".join(memory.text.split())
            if len(text) > MEMORY_SNIPPET:
                text = text[: MEMORY_SNIPPET - 1] + "…"
            lines.append(f"{n}. [{memory.kind}] {text} (score {hit.score:.2f})")
        for chunk in split_message("\n".join(lines)):
            await interaction.followup.send(
                chunk, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )


class CarrierCommandTree(app_commands.CommandTree):
    """discord.py's tree with Carrier's answers to what goes wrong."""

    def __init__(self, bot: CommandsHost, slash: SlashCommands) -> None:
        super().__init__(cast(discord.Client, bot))
        self.slash = slash

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
            data: Any = interaction.data or {}
            name = getattr(error, "name", None) or data.get("name", "?")
            log.warning(
                "Discord: %s: not a command of this bot (stale or unsynced); told the user",
                where(interaction),
            )
            await tell(
                interaction, stale_command_text(str(name), self.slash.bot.runtime.character.name)
            )
            return
        cause: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError):
            cause = error.original
        await report_failure(
            interaction, cause, user_message="Sorry, that command failed; try again in a moment."
        )


def _register(slash: SlashCommands) -> None:
    tree = slash.tree

    @tree.command(name="ask", description="Ask the character something; it answers here.")
    @app_commands.describe(text="What to ask or say")
    async def ask(
        interaction: discord.Interaction[Any], text: app_commands.Range[str, 1, MAX_ASK]
    ) -> None:
        await slash.ask(interaction, text)

    @tree.command(name="forget", description="Delete what the character stored about you.")
    @app_commands.describe(scope="facts: what it learned about you; all: and your messages")
    async def forget(
        interaction: discord.Interaction[Any], scope: Literal["facts", "all"] = "facts"
    ) -> None:
        await slash.forget(interaction, scope)

    @tree.command(name="about", description="Who the character is and which model it runs on.")
    async def about(interaction: discord.Interaction[Any]) -> None:
        await slash.about(interaction)

    @tree.command(name="memory", description="Search the character's memory (moderators).")
    @app_commands.describe(query="What to look for")
    async def memory(
        interaction: discord.Interaction[Any], query: app_commands.Range[str, 1, MAX_QUERY]
    ) -> None:
        await slash.memory(interaction, query)
