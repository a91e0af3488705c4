"""The built-in actions: REPLY, IGNORE, NONE, CONTINUE and SEND_FILE.

REPLY/IGNORE/NONE are markers: the runtime has already stored (or not stored) the reply
when they "run". CONTINUE lets the agent add one follow-up message; it is capped at one
per turn so a model that always says CONTINUE cannot keep a turn alive forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from carrier_cli.runtime.plugins import Action, ActionExample

if TYPE_CHECKING:
    from carrier_cli.runtime.context import TurnContext


@dataclass
class _Marker:
    name: str
    description: str
    similes: Sequence[str] = ()
    examples: Sequence[Sequence[ActionExample]] = field(default_factory=list)

    async def validate(self, ctx: TurnContext) -> bool:
        return True

    async def handler(self, ctx: TurnContext) -> str | None:
        return None


@dataclass
class _Continue(_Marker):
    async def handler(self, ctx: TurnContext) -> str | None:
        if ctx.reply is None:
            return None
        return await ctx.runtime.continue_turn(ctx)


@dataclass
class _SendFile(_Marker):
    """Send the files the turn's providers offered (`ctx.offer_file`); offered to the model
    only when there is one, so the model never chooses it with nothing to send."""

    async def validate(self, ctx: TurnContext) -> bool:
        await ctx.providers_done.wait()  # the offers come from providers, run alongside
        return bool(ctx.file_offers)

    async def handler(self, ctx: TurnContext) -> str | None:
        for offered in ctx.file_offers:
            ctx.send_file(offered)
        ctx.file_offers.clear()
        return None


def always_valid(action: object) -> bool:
    """Whether the action's validate is the markers' own `return True` (REPLY, IGNORE,
    NONE, CONTINUE): compose then offers it without running it as a task under a timeout
    (four tasks and timers per turn saved)."""
    return getattr(type(action), "validate", None) is _Marker.validate


def calls_no_model(action: object) -> bool:
    """Whether running the action is known to call no model: the markers (REPLY, IGNORE,
    NONE) and SEND_FILE. CONTINUE asks the model for its follow-up, and a plugin's action
    may do anything, so neither is. The runtime gives the client's slot (a bound on model
    calls, `TurnHooks`) back before storing the reply when nothing after it needs one."""
    return type(action) in (_Marker, _SendFile)


def builtin_actions() -> list[Action]:
    return [
        _Marker(
            "REPLY",
            "Send the text as a message. The default when there is something to say.",
            similes=("RESPOND", "SEND_MESSAGE", "ANSWER"),
        ),
        _Marker(
            "IGNORE",
            "Say nothing: the message is not for you, the conversation is over, or the "
            "person is rude.",
            similes=("STOP_TALKING", "SILENT"),
            examples=[
                [
                    {"name": "{{user1}}", "text": "ok bye"},
                    {"name": "{{agentName}}", "text": "", "actions": ["IGNORE"]},
                ]
            ],
        ),
        _Marker("NONE", "Reply without any other action.", similes=("NO_ACTION", "NOTHING")),
        _Continue(
            "CONTINUE",
            "Send the text, then add one more message right after it (for a thought that "
            "needs a second message).",
            similes=("FOLLOW_UP", "ELABORATE"),
        ),
        _SendFile(
            "SEND_FILE",
            "Send the text with the files listed under 'Files you can send' attached.",
            similes=("ATTACH_FILE", "SEND_ATTACHMENT", "UPLOAD_FILE"),
        ),
    ]
