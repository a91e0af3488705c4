"""Decide: should the agent answer? The rules first (`should_respond.rule_decision`), the
small model only when they cannot tell.

A room told to STOP stays quiet, for messages the rules leave undecided, until the agent
is addressed directly or mentioned there again.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING

from carrier_cli.runtime import prompts
from carrier_cli.runtime.parsing import ParseAttempts, parse_should_respond
from carrier_cli.runtime.should_respond import rule_decision
from carrier_cli.runtime.turn.calls import call_context
from carrier_cli.runtime.turn.compose import read_recent
from carrier_cli.runtime.turn.generate import timed
from carrier_cli.runtime.turn.state import TurnDeps, TurnState
from carrier_cli.runtime.types import Decision, PromptRecord, TurnLog
from carrier_cli.usage.records import using

if TYPE_CHECKING:
    from carrier_cli.memory.types import Memory
    from carrier_cli.runtime.context import TurnContext

log = logging.getLogger("carrier.runtime")


async def decide(
    deps: TurnDeps, turn: TurnState, names: re.Pattern[str], muted: set[uuid.UUID]
) -> None:
    """Set the turn's decision (`ctx.decision`, `tlog.decision`); `muted` holds the rooms
    that said STOP and is updated here."""
    ctx = turn.ctx
    room_id = ctx.room.id
    decision = rule_decision(ctx.message, names)
    if decision in ("DIRECT", "MENTIONED"):
        muted.discard(room_id)
    elif decision is None and room_id in muted:
        decision = "IGNORE"
    if decision is None:
        turn.recent = await read_recent(deps, ctx)
        decision, seconds = await ask_should_respond(deps, ctx, turn.recent, turn.tlog)
        turn.model_seconds += seconds
        if decision == "STOP":
            muted.add(room_id)
    ctx.decision = decision
    turn.tlog.decision = decision


async def ask_should_respond(
    deps: TurnDeps, ctx: TurnContext, recent: list[Memory], tlog: TurnLog
) -> tuple[Decision, float]:
    """The small model's RESPOND/IGNORE/STOP, asked once more when its answer has none;
    returns the decision and the seconds the model took. A budget that refuses: IGNORE,
    without asking (the room is not told about the budget unless it addresses us)."""
    if (await deps.budget.check("should_respond")).refused:
        return "IGNORE", 0.0
    messages = prompts.should_respond(deps, ctx, recent)
    params = deps.model_config.params(small=True, temperature=0.2, max_tokens=64)
    seconds = 0.0
    word: str | None = None
    raw = ""
    attempts = ParseAttempts("should_respond")
    call = call_context(deps, ctx, "should_respond")
    for attempt in attempts:
        record = PromptRecord(
            "should_respond",
            params.model,
            messages[-1].content,
            system=messages[0].content,
            attempt=attempt,
        )
        tlog.calls.append(record)
        with timed(record), using(call):
            raw = await deps.model.complete(messages, params)
        seconds += record.seconds
        record.output = raw
        answer = parse_should_respond(raw)
        word = answer.word
        if not answer.ok:  # tags without a decision (cut off) or nothing: ask once more
            tlog.parse_failures += 1
            attempts.failed()
    if word is None:
        log.debug("should-respond answer %r has no RESPOND/IGNORE/STOP; ignoring", raw[:200])
        word = "IGNORE"
    decision: Decision = "RESPOND" if word == "RESPOND" else "STOP" if word == "STOP" else "IGNORE"
    return decision, seconds
