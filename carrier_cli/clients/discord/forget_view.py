"""/forget's confirmation: an ephemeral message with two buttons, a discord.ui.View.

Nothing is deleted until the person who ran /forget presses "Forget"; "Cancel", the
timeout (CONFIRM_SECONDS) or a restart of the bot delete nothing. A press on a button
whose view is gone (the bot restarted, the view timed out) reaches `SlashCommands`'
stale-button answer instead of Discord's silent "This interaction failed".
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from carrier_cli.clients.discord.interactions import report_failure, tell, where

log = logging.getLogger("carrier_cli.discord")

CONFIRM_SECONDS = 120.0
BUTTON_PREFIX = "carrier:forget:"

Forget = Callable[[], Awaitable[str]]  # does the deletion, returns what to tell the user


class ForgetConfirm(discord.ui.View):
    """Forget / Cancel for the user `owner_id`; `forget` runs on Forget."""

    def __init__(
        self,
        owner_id: int,
        forget: Forget,
        *,
        on_finish: Callable[[ForgetConfirm], None],
        timeout: float = CONFIRM_SECONDS,
    ) -> None:
        super().__init__(timeout=timeout)
        self.owner_id = owner_id
        self.key = uuid.uuid4().hex[:16]  # distinct custom_ids per confirmation
        self._forget = forget
        self._on_finish = on_finish
        self.command_interaction: discord.Interaction[Any] | None = None  # to edit on timeout
        self.outcome: str | None = None  # "forgotten", "cancelled", "expired"
        confirm: discord.ui.Button[ForgetConfirm] = discord.ui.Button(
            label="Forget", style=discord.ButtonStyle.danger, custom_id=self.custom_id("yes")
        )
        cancel: discord.ui.Button[ForgetConfirm] = discord.ui.Button(
            label="Cancel", style=discord.ButtonStyle.secondary, custom_id=self.custom_id("no")
        )
        confirm.callback = self._confirm  # type: ignore[method-assign]
        cancel.callback = self._cancel  # type: ignore[method-assign]
        self.add_item(confirm)
        self.add_item(cancel)

    def custom_id(self, choice: str) -> str:
        return f"{BUTTON_PREFIX}{self.key}:{choice}"

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await tell(interaction, "Only the person who ran /forget can answer this.")
        return False

    async def _confirm(self, interaction: discord.Interaction[Any]) -> None:
        self._done("forgotten")
        # Answer first (the 3 s clock), then delete, then say what was deleted.
        await interaction.response.edit_message(content="Forgetting…", view=None)
        summary = await self._forget()
        await interaction.edit_original_response(content=summary)
        log.info("Discord: %s: %s", where(interaction), summary)

    async def _cancel(self, interaction: discord.Interaction[Any]) -> None:
        self._done("cancelled")
        await interaction.response.edit_message(
            content="Cancelled: nothing was deleted.", view=None
        )

    def _done(self, outcome: str) -> None:
        self.outcome = outcome
        self.stop()
        self._on_finish(self)

    async def on_timeout(self) -> None:
        self.outcome = "expired"
        self._on_finish(self)
        if self.command_interaction is not None:
            try:
                await self.command_interaction.edit_original_response(
                    content="This /forget was not confirmed in time: nothing was deleted.",
                    view=None,
                )
            except discord.HTTPException as exc:
                log.debug("Discord: could not close an expired /forget: %s", exc)

    async def on_error(
        self,
        interaction: discord.Interaction[Any],
        error: Exception,
        item: discord.ui.Item[Any],
    ) -> None:
        await report_failure(
            interaction,
            error,
            user_message="Sorry, forgetting failed part-way; run /forget again to finish.",
        )
