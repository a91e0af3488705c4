"""When a scheduled post goes out: `--at WHEN [--tz ZONE]` as an aware UTC datetime.

WHEN is one of
* an ISO 8601 time with an offset: `2026-12-24T09:00:00+01:00`, `2026-12-24T08:00Z`;
* a local wall-clock time, read in `--tz` (default: this machine's zone):
  `2026-12-24 09:00`, `2026-12-24T09:00:30`;
* a relative delay from now: `+10s`, `+30m`, `+2h`, `+1d`, or several units `+1h30m`.

Daylight saving time: a wall-clock time that does not exist in the zone (the hour skipped
in spring, e.g. 02:30 on 2026-03-29 in Europe/Paris) is refused; one that exists twice
(the hour repeated in autumn) is the first of the two, and `describe` shows the offset, so
the operator sees which one was taken.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from carrier_cli.errors import InputError

# A post scheduled further than this is most likely a typo in the year.
MAX_AHEAD = timedelta(days=366)
# A time this little in the past is "now" (the command took a moment to start).
PAST_TOLERANCE = timedelta(seconds=5)
_RELATIVE = re.compile(r"^\+((?:\d+[smhd])+)$")
_UNIT = re.compile(r"(\d+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def examples(tz_flag: str = "--tz") -> str:
    """The accepted forms, for hints (`tz_flag`: what the time zone option is called)."""
    return f'`+30m`, `+2h`, `"2026-12-24 09:00"` (in {tz_flag}) or `2026-12-24T09:00:00+01:00`'


@dataclass(frozen=True)
class Zone:
    """A time zone and the name the operator knows it by (None: this machine's)."""

    tz: tzinfo | None  # None: the system's local rules (time.mktime)
    name: str

    def localize(self, wall: datetime) -> datetime:
        """The naive wall-clock time `wall` in this zone, as an aware datetime."""
        if self.tz is None:
            return wall.astimezone()  # the C library's rules, DST included
        return wall.replace(tzinfo=self.tz, fold=0)

    def show(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz) if self.tz is not None else moment.astimezone()


def zone(name: str | None, *, flag: str = "--tz") -> Zone:
    """`--tz NAME` (an IANA name such as Europe/Paris, or UTC), or the machine's zone.
    `flag`: what the error calls it (the API's request field is `tz`)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name is None:
        return local_zone()
    if name.upper() in ("UTC", "Z"):
        return Zone(UTC, "UTC")
    try:
        return Zone(ZoneInfo(name), name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InputError(
            f"{flag} `{name}` is not a time zone this machine knows.",
            hint="Use an IANA name such as Europe/Paris, America/New_York or UTC "
            "(the list is in /usr/share/zoneinfo; on Debian install tzdata).",
        ) from None


def local_zone() -> Zone:
    """The machine's zone by name when it can be found ($TZ, /etc/localtime), so that
    DST rules apply to a date months ahead; else the C library's local time."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        target = os.readlink("/etc/localtime")
        candidates.append(target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "")
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for name in candidates:
        if not name or name.startswith("/"):
            continue
        try:
            return Zone(ZoneInfo(name), name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
    return Zone(None, "local time")


def parse_when(
    text: str,
    tz: Zone,
    *,
    at: datetime | None = None,
    flag: str = "--at",
    tz_flag: str = "--tz",
) -> datetime:
    """WHEN as an aware UTC datetime in the future (InputError naming `flag` otherwise:
    --at on the command line, the request field `at` over the API)."""
    at = at or datetime.now(UTC)
    value = text.strip()
    match = _RELATIVE.match(value)
    if match:
        seconds = sum(int(n) * _SECONDS[u] for n, u in _UNIT.findall(match.group(1)))
        if seconds <= 0:
            raise _bad(text, "a relative time must be later than now", flag, tz_flag)
        if seconds > MAX_AHEAD.total_seconds():
            raise _too_far(text, flag)
        return at + timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "T", 1) if " " in value else value)
    except ValueError:
        raise _bad(text, "not a time Carrier can read", flag, tz_flag) from None
    if parsed.tzinfo is None:
        moment = tz.localize(parsed)
        if tz.tz is not None:
            back = moment.astimezone(UTC).astimezone(tz.tz).replace(tzinfo=None)
            if back != parsed:
                raise InputError(
                    f"{flag} `{text}`: {parsed:%Y-%m-%d %H:%M} does not exist in {tz.name} "
                    "(the clocks skip that hour for daylight saving time).",
                    hint=f"Pick a time outside the skipped hour, e.g. {back:%H:%M}.",
                )
    else:
        moment = parsed
    moment = moment.astimezone(UTC)
    if moment < at - PAST_TOLERANCE:
        raise InputError(
            f"{flag} `{text}` is in the past ({moment:%Y-%m-%d %H:%M:%S} UTC; it is now "
            f"{at:%Y-%m-%d %H:%M:%S} UTC).",
            hint=f"Give a time to come: {examples(tz_flag)}.",
        )
    if moment - at > MAX_AHEAD:
        raise _too_far(text, flag)
    return max(moment, at)


def describe(moment: datetime, tz: Zone) -> str:
    """`2026-12-24 08:00:00 UTC (09:00:00 CET, Europe/Paris)`: both, so nobody converts."""
    local = tz.show(moment)
    return (
        f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
        f"({local:%Y-%m-%d %H:%M:%S} {local.tzname() or ''}, {tz.name})"
    )


def _bad(text: str, why: str, flag: str, tz_flag: str) -> InputError:
    return InputError(f"{flag} `{text}`: {why}.", hint=f"Use {examples(tz_flag)}.")


def _too_far(text: str, flag: str) -> InputError:
    return InputError(
        f"{flag} `{text}` is more than {MAX_AHEAD.days} days ahead.",
        hint="Check the year; a post can be scheduled at most a year ahead.",
    )
