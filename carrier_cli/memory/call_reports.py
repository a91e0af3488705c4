"""What `carrier logs`, `carrier logs show` and `carrier usage` do, as library functions
the CLI wraps: reading `--since`, opening the database, finding the character and room
the flags name, and the JSON shapes (stable keys, documented in the README).

The records themselves are `usage.records.CallRecord`s; the SQL is `memory.calls`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import InputError

if TYPE_CHECKING:
    from carrier_cli.config import Settings
    from carrier_cli.memory.calls import GroupBy
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.usage.records import CallRecord, UsageTotals

_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SINCE_FORMS = "30m, 12h, 1d, 2w, or an ISO date or time (2026-12-01, 2026-12-01T09:30)"
MAX_CHART_DAYS = 62  # bars drawn at most: two months fit a terminal


def parse_since(value: str, *, flag: str = "--since", now: datetime | None = None) -> datetime:
    """A moment from `30m`, `12h`, `1d`, `2w` (that long ago) or an ISO date or time (a
    date is its midnight UTC; a time without a zone is UTC). Anything else is an
    InputError naming the flag and the accepted forms (exit 2)."""
    moment = now or datetime.now(UTC)
    match = _DURATION.match(value)
    if match is not None:
        amount, unit = int(match.group(1)), match.group(2).lower()
        try:
            return moment - timedelta(**{_UNITS[unit]: amount})
        except OverflowError:
            raise InputError(
                f"{flag} {value!r} is too long ago.", hint=f"Use {SINCE_FORMS}."
            ) from None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(
            f"{flag} {value!r} is not a duration or a date.", hint=f"Use {SINCE_FORMS}."
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# ---------------------------------------------------------------------- JSON shapes
def call_json(record: CallRecord, *, full: bool = False) -> dict[str, Any]:
    """One call as `carrier logs --json` prints it (`full`: with prompt and output, as
    `carrier logs show --json` does; None when they were not stored)."""
    context, usage = record.context, record.usage
    data: dict[str, Any] = {
        "id": str(record.id),
        "created_at": record.created_at.isoformat(),
        "character": context.character,
        "agent_id": _text(context.agent_id),
        "room_id": _text(context.room_id),
        "client": context.client,
        "purpose": context.purpose,
        "provider": record.provider,
        "model": record.model,
        "attempt": record.attempt,
        "outcome": record.outcome,
        "error_code": record.error_code,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_tokens": usage.cached_tokens,
        "tokens_estimated": usage.estimated,
        "first_token_ms": record.first_token_ms,
        "total_ms": record.total_ms,
        "cost_usd": record.cost_usd,
        "turn_id": _text(context.turn_id),
    }
    if full:
        data["prompt"] = record.prompt
        data["output"] = record.output
    return data


def totals_json(key: str, totals: UsageTotals) -> dict[str, Any]:
    """One `carrier usage --json` row. `cost_usd` sums the priced calls only;
    `unpriced_calls` says how many had no known price (their cost is unknown, not 0)."""
    return {
        "key": key,
        "calls": totals.calls,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "cached_tokens": totals.cached_tokens,
        "cost_usd": round(totals.cost_usd, 8),
        "unpriced_calls": totals.unpriced_calls,
        "estimated_calls": totals.estimated_calls,
    }


def _text(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


# ---------------------------------------------------------------------- reports
@dataclass
class UsageReport:
    """`carrier usage`: the rows grouped `by`, their sum, and the days for the chart
    (every day from the first with calls to the last, quiet days as zeros)."""

    by: str
    since: datetime | None
    rows: list[tuple[str, UsageTotals]]
    total: UsageTotals
    days: list[tuple[str, UsageTotals]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": self.since.isoformat() if self.since else None,
            "rows": [totals_json(k, t) for k, t in self.rows],
            "total": totals_json("total", self.total),
        }


def sum_totals(rows: list[tuple[str, UsageTotals]]) -> UsageTotals:
    from carrier_cli.usage.records import UsageTotals

    total = UsageTotals()
    for _, row in rows:
        total.calls += row.calls
        total.input_tokens += row.input_tokens
        total.output_tokens += row.output_tokens
        total.cached_tokens += row.cached_tokens
        total.cost_usd += row.cost_usd
        total.unpriced_calls += row.unpriced_calls
        total.estimated_calls += row.estimated_calls
    return total


def fill_days(rows: list[tuple[str, UsageTotals]]) -> list[tuple[str, UsageTotals]]:
    """Day rows (YYYY-MM-DD, oldest first) with the quiet days between them added as
    zeros, so the chart's bars are evenly spaced in time; the last MAX_CHART_DAYS."""
    from carrier_cli.usage.records import UsageTotals

    if not rows:
        return []
    known = dict(rows)
    first, last = date.fromisoformat(rows[0][0]), date.fromisoformat(rows[-1][0])
    first = max(first, last - timedelta(days=MAX_CHART_DAYS - 1))
    days: list[tuple[str, UsageTotals]] = []
    day = first
    while day <= last:
        key = day.isoformat()
        days.append((key, known.get(key, UsageTotals())))
        day += timedelta(days=1)
    return days


async def _open(settings: Settings) -> MemoryStore:
    from carrier_cli.memory.store import MemoryStore

    # No embedder is needed to read records: the default local one loads nothing until
    # asked to embed, so a remote embedding provider's key is not required here.
    return await MemoryStore.open(settings.database_url)


async def recent_calls(
    settings: Settings,
    *,
    character: str | None = None,
    room: str | None = None,
    client: str | None = None,
    purpose: str | None = None,
    since: datetime | None = None,
    limit: int = 20,
) -> list[CallRecord]:
    """`carrier logs`: newest first. `character` is a name or file (its name is what the
    records carry); `room` a room id, external id or name of that character (default:
    the `character` setting), as `carrier memory --room` takes it."""
    from carrier_cli.memory.admin import resolve_agent
    from carrier_cli.memory.rooms_lookup import resolve_room

    name = resolve_agent(character, settings).name if character else None
    store = await _open(settings)
    try:
        room_id = None
        if room is not None:
            agent = resolve_agent(character, settings)
            room_id = await resolve_room(store, agent.id, agent.name, room)
        return await store.list_calls(
            character=name,
            room_id=room_id,
            client=client,
            purpose=purpose,
            since=since,
            limit=limit,
        )
    finally:
        await store.close()


@dataclass
class FoundCall:
    """`carrier logs show`: the call, and its room as the operator names it (the room's
    name or external id; None without a room, or one no longer stored)."""

    record: CallRecord
    room: str | None = None
    # People's reactions to the reply of the call's turn (memory/feedback.py), as
    # {"feedback": "positive"|"negative", "reaction", "person_key", "reply_id"}.
    feedback: list[dict[str, Any]] = field(default_factory=list)


async def find_call(settings: Settings, id_or_prefix: str) -> FoundCall:
    """`carrier logs show ID`: the call, or an InputError when no call has that id."""
    from carrier_cli.memory.feedback import list_feedback

    store = await _open(settings)
    feedback: list[dict[str, Any]] = []
    try:
        record = await store.get_call(id_or_prefix)
        room = None
        if record is not None and record.context.room_id is not None:
            found = await store.get_room(record.context.room_id)
            room = (found.name or found.external_id) if found is not None else None
        if record is not None and record.context.turn_id is not None:
            rows = await list_feedback(
                store, room_id=record.context.room_id, turn_id=record.context.turn_id
            )
            keys = ("feedback", "reaction", "person_key", "reply_id")
            feedback = [{k: m.content.get(k) for k in keys} for m in rows]
    finally:
        await store.close()
    if record is None:
        raise InputError(
            f"No model call has an id starting with {id_or_prefix!r}.",
            hint="`carrier logs` lists the recent calls with their ids.",
        )
    return FoundCall(record, room, feedback)


async def usage_report(
    settings: Settings, *, by: GroupBy = "character", since: datetime | None, chart: bool
) -> UsageReport:
    """`carrier usage`: totals grouped `by`; with `chart` (or by day) the days too."""
    store = await _open(settings)
    try:
        rows = await store.usage_totals(by=by, since=since)
        if by == "day":
            days = rows
        elif chart:
            days = await store.usage_totals(by="day", since=since)
        else:
            days = []
    finally:
        await store.close()
    return UsageReport(by=by, since=since, rows=rows, total=sum_totals(rows), days=fill_days(days))
