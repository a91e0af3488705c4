"""What `carrier logs` and `carrier usage` compute below the CLI: --since, the day series
the chart draws, the JSON shapes, and the cells the tables print."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from carrier_cli.cli.logs import money, tokens_cell
from carrier_cli.cli.usage import bar
from carrier_cli.errors import InputError
from carrier_cli.memory.call_reports import call_json, fill_days, parse_since, sum_totals
from carrier_cli.usage.records import CallContext, CallRecord, TokenUsage, UsageTotals

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("1d", NOW - timedelta(days=1)),
        ("2W", NOW - timedelta(weeks=2)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T09:30", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
        ("2026-12-01T09:30+01:00", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_since_accepts_durations_and_iso_dates(value: str, expected: datetime) -> None:
    assert parse_since(value, now=NOW) == expected


@pytest.mark.parametrize("value", ["", "yesterday", "1y", "-1d", "1.5h", "99999999999w"])
def test_since_refuses_anything_else_naming_the_flag(value: str) -> None:
    with pytest.raises(InputError) as refused:
        parse_since(value, flag="--since", now=NOW)
    assert refused.value.exit_code == 2
    assert refused.value.message.startswith(f"--since {value!r}")
    assert "30m, 12h, 1d, 2w" in (refused.value.hint or "")


def test_days_between_are_filled_and_the_chart_is_bounded() -> None:
    rows = [("2026-11-29", UsageTotals(calls=2)), ("2026-12-02", UsageTotals(calls=1))]
    days = fill_days(rows)
    assert [d for d, _ in days] == ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]
    assert [t.calls for _, t in days] == [2, 0, 0, 1]
    assert fill_days([]) == []
    long = fill_days([("2026-01-01", UsageTotals(calls=1)), ("2026-12-01", UsageTotals())])
    assert len(long) == 62 and long[-1][0] == "2026-12-01"
    total = sum_totals([("a", UsageTotals(calls=1, cost_usd=0.5)), ("b", UsageTotals(calls=2))])
    assert (total.calls, total.cost_usd) == (3, 0.5)


def test_json_and_cells() -> None:
    record = CallRecord(
        provider="anthropic",
        model="claude-haiku",
        context=CallContext(purpose="facts", character="Eliza", turn_id=uuid.uuid4()),
        usage=TokenUsage(10, 2, None, estimated=True),
        prompt="secret-free prompt",
    )
    data = json.loads(json.dumps(call_json(record)))
    assert data["purpose"] == "facts" and data["cost_usd"] is None and "prompt" not in data
    assert data["room_id"] is None and data["turn_id"] == str(record.context.turn_id)
    assert call_json(record, full=True)["prompt"] == "secret-free prompt"
    assert tokens_cell(record) == "~10/2"
    assert money(None) == "—" and money(0) == "$0" and money(0.00012) == "$0.00012"
    assert money(0.5) == "$0.5000" and money(12.345) == "$12.35"
    assert bar(0, 10) == "" and bar(10, 10, width=4) == "████" and bar(1, 8, width=1) == "▏"
