"""GET /v1/agents/{agent}/turns/{message_id}: what one turn did, for the console's turn
inspector (the terminal's `/debug`, over the API).

Two records of a turn exist and this reads both, never anything else:
- the runtime's `turn_logs` (runtime/types.py `TurnLog`): the rendered prompts, the raw
  model outputs, the stage timings and the decision of the last
  `AgentRuntime.turn_log_history` (50) turns this process ran, in memory only;
- the usage records (`model_calls`, issue 12): one row per model call attempt with its
  tokens, milliseconds and cost, kept in the database for every process; their prompt and
  output only with `log_prompts`.
A turn older than the in-memory history (or run by another process, e.g. a worker of
`--role api`) still has its calls, tokens and cost; `prompts` says which record answered.

`{message_id}` is the incoming message's id or the reply's (a reply names the message it
answers in `in_reply_to`), so the console can inspect any message of a room.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from carrier_cli.clients.api.auth import require, state_of
from carrier_cli.clients.api.errors import ApiError
from carrier_cli.clients.api.routes.shapes import agent_memory
from carrier_cli.memory.types import MemoryKind

router = APIRouter(prefix="/v1", tags=["turns"])

# The usage records of a turn are read among the room's calls made after its message:
# a turn makes a handful of calls (should-respond, reply, continue, facts), so 200 is far
# more than one turn and bounds the read however busy the room is.
MAX_CALLS_READ = 200
# Calls are recorded when they end; a turn's calls start after its message is stored but
# a clock step between processes could put them slightly before, hence the margin.
CLOCK_MARGIN = timedelta(seconds=5)


class TurnCall(BaseModel):
    purpose: str = Field(description="should_respond, reply, continue, facts, ...")
    model: str
    provider: str | None = None
    attempt: int = 1
    outcome: str | None = Field(None, description="ok, retried or failed (usage records).")
    failure: str | None = Field(None, description="Why the call failed, when it did.")
    system: str | None = Field(None, description="The system prompt, when known.")
    prompt: str | None = Field(None, description="The rendered prompt, when kept.")
    output: str | None = Field(None, description="The raw model output, when kept.")
    ms: float | None = Field(None, description="How long the call took.")
    first_token_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = Field(None, description="None: no price known for the model.")


class TurnTotals(BaseModel):
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0


class Turn(BaseModel):
    message_id: str = Field(description="The incoming message the turn answered.")
    reply_id: str | None = Field(None, description="The reply's id, when it replied.")
    room_id: str | None = None
    started: str | None = None
    decision: str | None = None
    timings: dict[str, float] = Field(
        default_factory=dict, description="Milliseconds per stage (this process's turns)."
    )
    prompts: Literal["live", "records", "none"] = Field(
        description="Where the prompts and outputs come from: `live` (this process's recent "
        "turns), `records` (stored with log_prompts), `none` (not kept)."
    )
    calls: list[TurnCall]
    totals: TurnTotals


def _log_of(runtime: Any, message_id: uuid.UUID) -> Any:
    for log in reversed(list(getattr(runtime, "turn_logs", ()) or ())):
        if log.message_id == message_id:
            return log
    return None


async def _records_of(runtime: Any, message: Any) -> list[Any]:
    usage = getattr(runtime, "usage", None)
    if usage is not None:
        # The meter writes in batches (every few seconds): write what is due now, so a
        # turn that just ended shows its tokens. Bounded by the meter's own queue.
        await usage.flush()
    since = message.created_at - CLOCK_MARGIN if message.created_at else None
    calls = await runtime.store.list_calls(
        character=runtime.character.name,
        room_id=message.room_id,
        since=since,
        limit=MAX_CALLS_READ,
    )
    return sorted((c for c in calls if c.context.turn_id == message.id), key=lambda c: c.created_at)


def _merged_calls(log: Any, records: list[Any]) -> list[TurnCall]:
    """The turn log's calls (prompt, output) with the usage record of each (tokens, cost),
    matched by purpose and attempt (then by purpose alone: a provider may count attempts
    its own way); records without a log entry follow as they are."""
    unmatched = list(records)
    calls: list[TurnCall] = []
    for entry in log.calls if log is not None else []:
        same = [r for r in unmatched if r.context.purpose == entry.purpose]
        record = next((r for r in same if r.attempt == entry.attempt), None) or next(
            iter(same), None
        )
        if record is not None:
            unmatched.remove(record)
        calls.append(_call(entry, record))
    calls.extend(_call(None, r) for r in unmatched)
    return calls


def _call(entry: Any, record: Any) -> TurnCall:
    usage = record.usage if record is not None else None
    return TurnCall(
        purpose=entry.purpose if entry is not None else record.context.purpose,
        model=entry.model if entry is not None else record.model,
        provider=record.provider if record is not None else None,
        attempt=entry.attempt if entry is not None else record.attempt,
        outcome=record.outcome if record is not None else None,
        failure=(entry.error if entry is not None else None)
        or (record.error_code if record is not None else None),
        system=(entry.system or None) if entry is not None else None,
        prompt=entry.prompt if entry is not None else record.prompt,
        output=entry.output if entry is not None else record.output,
        ms=round(entry.seconds * 1000, 2) if entry is not None else record.total_ms,
        first_token_ms=record.first_token_ms if record is not None else None,
        input_tokens=usage.input_tokens if usage is not None else None,
        output_tokens=usage.output_tokens if usage is not None else None,
        cached_tokens=usage.cached_tokens if usage is not None else None,
        cost_usd=record.cost_usd if record is not None else None,
    )


def _totals(records: list[Any]) -> TurnTotals:
    totals = TurnTotals()
    for record in records:
        totals.calls += 1
        totals.input_tokens += record.usage.input_tokens or 0
        totals.output_tokens += record.usage.output_tokens or 0
        if record.cost_usd is None:
            totals.unpriced_calls += 1
        else:
            totals.cost_usd += record.cost_usd
    totals.cost_usd = round(totals.cost_usd, 8)
    return totals


async def _reply_of(runtime: Any, message: Any) -> str | None:
    """The id of the agent's reply to `message` among the room's next messages."""
    later = await runtime.store.recent(message.room_id, 50)
    for memory in later:
        if memory.entity_id == runtime.agent_id and (memory.content or {}).get(
            "in_reply_to"
        ) == str(message.id):
            return str(memory.id)
    return None


@router.get(
    "/agents/{agent}/turns/{message_id}",
    response_model=Turn,
    summary="One turn: prompts, raw model output, timings, tokens and cost",
    description="Scope: read. `message_id` is the incoming message's id or its reply's. "
    "Prompts, outputs and timings are kept in memory for the last 50 turns this process "
    "ran (and stored with `log_prompts`); calls, tokens and cost come from the usage "
    "records, for every turn.",
    responses={404: {"description": "No such agent or message"}},
)
async def get_turn(
    agent: str,
    message_id: str,
    request: Request,
    _: Annotated[Any, Depends(require("read"))],
) -> Turn:
    runtime = state_of(request).agents.get(agent)
    memory = await agent_memory(runtime, message_id, "message_id")
    if memory is None or memory.kind != MemoryKind.MESSAGE:
        raise ApiError(
            404,
            "not_found",
            f"{runtime.character.name} has no message {message_id}.",
            hint="Use the `id` of a message from GET .../rooms/{room}/messages or a "
            "WebSocket message.created event.",
        )
    reply_id: str | None = None
    if memory.entity_id == runtime.agent_id:  # a reply: inspect the turn that made it
        answered = (memory.content or {}).get("in_reply_to")
        incoming = None
        if answered:
            try:
                incoming = await runtime.store.get(uuid.UUID(str(answered)), with_vector=False)
            except ValueError:
                incoming = None
        if incoming is None:
            raise ApiError(
                404,
                "not_found",
                f"Message {message_id} is the agent's own, not a reply to a message.",
                hint="Inspect a reply (it answers a message) or the message itself.",
            )
        reply_id, memory = str(memory.id), incoming
    else:
        reply_id = await _reply_of(runtime, memory)
    log = _log_of(runtime, memory.id)
    records = await _records_of(runtime, memory)
    calls = _merged_calls(log, records)
    prompts: Literal["live", "records", "none"]
    if log is not None:
        prompts = "live"
    elif any(c.prompt for c in calls):
        prompts = "records"
    else:
        prompts = "none"
    return Turn(
        message_id=str(memory.id),
        reply_id=reply_id,
        room_id=str(memory.room_id) if memory.room_id else None,
        started=memory.created_at.isoformat() if memory.created_at else None,
        decision=str(log.decision) if log is not None and log.decision is not None else None,
        timings={k: round(v * 1000, 2) for k, v in log.timings.items()} if log else {},
        prompts=prompts,
        calls=calls,
        totals=_totals(records),
    )
