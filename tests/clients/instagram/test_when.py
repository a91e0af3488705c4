"""`--at WHEN [--tz ZONE]`: ISO 8601, local wall-clock times, relative delays, DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carrier_cli.clients.instagram.when import describe, local_zone, parse_when, zone
from carrier_cli.errors import InputError

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

CASES = [
    # (WHEN, --tz, expected UTC)
    ("+10s", None, "2026-03-01T12:00:10"),
    ("+30m", None, "2026-03-01T12:30:00"),
    ("+2h", None, "2026-03-01T14:00:00"),
    ("+1d", None, "2026-03-02T12:00:00"),
    ("+1h30m", None, "2026-03-01T13:30:00"),
    ("2026-12-24T09:00:00+01:00", None, "2026-12-24T08:00:00"),
    ("2026-12-24T08:00Z", "Asia/Tokyo", "2026-12-24T08:00:00"),  # an offset wins over --tz
    ("2026-12-24 09:00", "Europe/Paris", "2026-12-24T08:00:00"),  # CET, +01:00
    ("2026-07-14 09:00", "Europe/Paris", "2026-07-14T07:00:00"),  # CEST, +02:00
    ("2026-12-24T09:00", "America/New_York", "2026-12-24T14:00:00"),
    ("2026-12-24 09:00", "UTC", "2026-12-24T09:00:00"),
    # autumn: 02:30 happens twice in Paris; the first (still CEST, +02:00) is taken
    ("2026-10-25 02:30", "Europe/Paris", "2026-10-25T00:30:00"),
    # the day after spring forward, a local time is +02:00
    ("2026-03-30 09:00", "Europe/Paris", "2026-03-30T07:00:00"),
]


@pytest.mark.parametrize(("text", "tz", "expected"), CASES)
def test_when_cases(text: str, tz: str | None, expected: str) -> None:
    got = parse_when(text, zone(tz or "UTC"), at=NOW)
    assert got.tzinfo is not None
    assert got.astimezone(UTC).replace(tzinfo=None).isoformat() == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("yesterday", "not a time Carrier can read"),
        ("+0s", "later than now"),
        ("+5x", "not a time Carrier can read"),
        ("2026-02-28 09:00", "is in the past"),
        ("2026-03-01T11:00:00Z", "is in the past"),
        ("2028-01-01 09:00", "more than 366 days ahead"),
        ("+400d", "more than 366 days ahead"),
    ],
)
def test_refused_times_name_at_with_examples(text: str, needle: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_when(text, zone("Europe/Paris"), at=NOW)
    error = caught.value
    assert error.exit_code == 2 and "--at" in error.message and needle in error.message
    assert error.hint and ("+30m" in error.hint or "year" in error.hint or "Pick" in error.hint)


def test_the_skipped_spring_hour_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        parse_when("2026-03-29 02:30", zone("Europe/Paris"), at=NOW)
    assert "does not exist in Europe/Paris" in caught.value.message


def test_unknown_zone_is_refused_naming_tz() -> None:
    with pytest.raises(InputError) as caught:
        zone("Mars/Olympus_Mons")
    assert caught.value.exit_code == 2 and "--tz `Mars/Olympus_Mons`" in caught.value.message


def test_machine_zone_from_tz_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    local = local_zone()
    assert local.name == "Europe/Paris"
    assert parse_when("2026-12-24 09:00", local, at=NOW).hour == 8


def test_describe_shows_utc_and_local() -> None:
    text = describe(datetime(2026, 12, 24, 8, 0, tzinfo=UTC), zone("Europe/Paris"))
    assert text == "2026-12-24 08:00:00 UTC (2026-12-24 09:00:00 CET, Europe/Paris)"
