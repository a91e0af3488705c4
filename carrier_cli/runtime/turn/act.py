"""Act: store the reply, then run the actions the model chose.

An action runs only if it was offered this turn (its validate passed) and at most once; a
failing action is logged and skipped. Its output, if any, is stored as one more message
(with a deterministic id by position, so a replay finds it) and sent after the reply.
Both stores are shielded: once begun they complete even if the turn is cancelled, so a
turn never leaves half a reply and a replay never generates a second one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from carrier_cli.memory.types import Memory, MemoryKind
from carrier_cli.runtime.builtin_actions import calls_no_model
from carrier_cli.runtime.outgoing import MAX_EMBEDS, MAX_FILE_BYTES, MAX_FILES, ActionOutput
from carrier_cli.runtime.turn.ids import reply_id
from carrier_cli.runtime.turn.state import TurnDeps, TurnState
from carrier_cli.runtime.types import TurnResult

if TYPE_CHECKING:
    from carrier_cli.runtime.context import TurnContext
    from carrier_cli.runtime.plugins import Action

log = logging.getLogger("carrier.runtime")


async def store_reply(deps: TurnDeps, turn: TurnState, result: TurnResult) -> None:
    """Store `turn.parsed` as the agent's reply (`ctx.reply`) and put it in `result`."""
    ctx = turn.ctx
    message = ctx.message
    parsed = turn.parsed
    assert parsed.text
    reply = Memory(
        agent_id=deps.agent_id,
        content={
            "text": parsed.text,
            "source": message.source,
            "name": deps.character.name,
            "actions": list(parsed.actions),
            "thought": parsed.thought,
            "in_reply_to": str(ctx.memory.id),
        },
        kind=MemoryKind.MESSAGE,
        room_id=ctx.room.id,
        entity_id=deps.agent_id,
        id=turn.reply_id or reply_id(message, deps.agent_id),
        metadata={"decision": turn.decision},
    )
    # Shielded: once started, the reply is stored even if the turn is cancelled now.
    ctx.reply = await asyncio.shield(deps.store.add(reply, embed=True, dedupe=False))
    result.text = parsed.text
    result.reply_id = ctx.reply.id


def no_model_call_left(deps: TurnDeps, turn: TurnState) -> bool:
    """Whether the rest of the turn (storing the reply with the local embedder, then the
    chosen actions) calls no model: every action `run_actions` would run is known to call
    none (`calls_no_model`). Then the client's slot can go back before the reply is
    stored (`TurnState.release_slot`)."""
    offered_ids = {id(a) for a in turn.offered}
    for name in turn.ctx.actions:
        action = deps.find_action(name)
        if action is not None and id(action) in offered_ids and not calls_no_model(action):
            return False
    return True


async def run_actions(deps: TurnDeps, turn: TurnState, result: TurnResult) -> None:
    """Run the chosen actions in order; their outputs become `result.extra_messages`."""
    ctx = turn.ctx
    offered_ids = {id(a) for a in turn.offered}
    done: set[int] = set()
    for index, name in enumerate(ctx.actions):
        action = deps.find_action(name)
        if action is None:
            log.debug("model chose unknown action %r; skipped", name)
            continue
        if id(action) not in offered_ids or id(action) in done:
            continue
        done.add(id(action))
        try:
            output = await action.handler(ctx)
        except Exception as exc:
            log.warning("action %s failed: %s", action.name, exc, exc_info=log.isEnabledFor(10))
            continue
        if isinstance(output, ActionOutput):
            ctx.files.extend(output.files)
            ctx.embeds.extend(output.embeds)
            output = output.text
        if output:
            await _store_output(deps, ctx, action, output, index)
    result.extra_messages = list(ctx.outputs)
    if ctx.files or ctx.embeds:
        await _store_sent(deps, ctx, result)


async def _store_sent(deps: TurnDeps, ctx: TurnContext, result: TurnResult) -> None:
    """Bound the turn's files and embeds (Discord's per-message limits) and store what was
    sent as one more message: its descriptions, never the bytes, so later turns know."""
    files = [f for f in ctx.files if len(f.data) <= MAX_FILE_BYTES]
    for dropped in [f for f in ctx.files if len(f.data) > MAX_FILE_BYTES]:
        log.warning(
            "file %s (%d bytes) is over the %d-byte limit; not sent",
            dropped.filename,
            len(dropped.data),
            MAX_FILE_BYTES,
        )
    result.files = files[:MAX_FILES]
    result.embeds = list(ctx.embeds[:MAX_EMBEDS])
    if not result.files and not result.embeds:
        return
    message = ctx.message
    memory = Memory(
        agent_id=deps.agent_id,
        content={
            "text": "\n\n".join(e.as_text() for e in result.embeds),
            "source": message.source,
            "name": deps.character.name,
            "attachments": [f.record() for f in result.files],
            "embeds": [e.record() for e in result.embeds],
            "in_reply_to": str(ctx.memory.id),
        },
        kind=MemoryKind.MESSAGE,
        room_id=ctx.room.id,
        entity_id=deps.agent_id,
        id=reply_id(message, deps.agent_id, "sent"),
    )
    stored = await asyncio.shield(deps.store.add(memory, embed=False, dedupe=False))
    deps.publish_stored(stored, ctx.room)


async def _store_output(
    deps: TurnDeps, ctx: TurnContext, action: Action, text: str, index: int
) -> None:
    message = ctx.message
    memory = Memory(
        agent_id=deps.agent_id,
        content={
            "text": text,
            "source": message.source,
            "name": deps.character.name,
            "actions": [action.name],
            "in_reply_to": str(ctx.memory.id),
        },
        kind=MemoryKind.MESSAGE,
        room_id=ctx.room.id,
        entity_id=deps.agent_id,
        id=reply_id(message, deps.agent_id, "action", index),
    )
    stored = await asyncio.shield(deps.store.add(memory, embed=True, dedupe=False))
    ctx.outputs.append(text)
    deps.publish_stored(stored, ctx.room)
