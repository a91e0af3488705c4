"""The schedule of journaled Instagram posts: when each goes out, its approval, its claim.

One row per journal post (`instagram_schedule.post_id` = `instagram_posts.id`) that was
scheduled (`--at`) or drafted (`--draft`, `require_approval`). The journal keeps the
pipeline's steps; this table keeps what happens before and around them:

    draft ──approve──▶ approved ─┐
      │                          ├─(due, claimed)─▶ claimed ─▶ published
      └─reject─▶ rejected        │                    │
    queued ──────────────────────┘                    └─▶ queued again (retry) / failed
    queued/draft/approved ──cancel──▶ cancelled

Exactly once across processes: a process takes a due post with one compare-and-swap
UPDATE (state queued|approved → claimed, with its owner and the time), so of two pollers
only one gets it; the journal's own lease then guards the pipeline's steps as for any
post. A claim is refreshed while the post is published; a claim whose process died on
this host is taken over at once, any other after `CLAIM_STALE` seconds without refresh,
and the journal's steps resume where the dead process stopped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from carrier_cli.clients.instagram.journal import Journal, _owner_is_dead, now
from carrier_cli.errors import InputError
from carrier_cli.memory.declarative import Base
from carrier_cli.memory.schema import UTCDateTime

if TYPE_CHECKING:
    from collections.abc import Iterable

STATES = ("draft", "approved", "rejected", "queued", "claimed", "published", "failed", "cancelled")
DUE_STATES = ("queued", "approved")  # what a poller publishes once scheduled_at is past
OPEN_STATES = ("draft", "approved", "queued", "claimed")  # not decided for good yet
# A claim not refreshed for this long belongs to a process that stopped (refreshed every
# CLAIM_STALE / 4 = 30 s while its post is being published).
CLAIM_STALE = 120.0


class ScheduleRow(Base):
    __tablename__ = "instagram_schedule"
    post_id: Mapped[int] = mapped_column(
        Integer,
        ForeignKey("instagram_posts.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    state: Mapped[str] = mapped_column(String(20))
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    tz: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    claim_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    claimed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_instagram_schedule_due", "state", "scheduled_at"),)


_COLUMNS = [c.name for c in ScheduleRow.__table__.columns]


@dataclass
class Entry:
    """A detached copy of a schedule row."""

    post_id: int
    state: str
    scheduled_at: datetime | None
    tz: str | None
    prompt: str | None
    reason: str | None
    claim_owner: str | None
    claimed_at: float | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None

    @classmethod
    def from_row(cls, row: ScheduleRow) -> Entry:
        return cls(**{name: getattr(row, name) for name in _COLUMNS})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("claimed_at")
        return data

    @property
    def claim_is_stale(self) -> bool:
        if self.state != "claimed" or not self.claim_owner:
            return False
        if (self.claimed_at or 0) + CLAIM_STALE < time.time():
            return True
        return _owner_is_dead(self.claim_owner)


class Schedule:
    """The schedule table over the journal's database (the journal's engine)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    # -- reading ---------------------------------------------------------------------
    async def get(self, post_id: int) -> Entry | None:
        async with self.journal._session() as session:
            row = await session.get(ScheduleRow, post_id)
            return Entry.from_row(row) if row else None

    async def require(self, post_id: int) -> Entry:
        entry = await self.get(post_id)
        if entry is None:
            raise InputError(
                f"Post {post_id} is not scheduled or drafted"
                + ("" if await self.journal.get(post_id) else " (no such post in the journal)")
                + ".",
                hint="`carrier instagram queue list --all` lists scheduled and drafted posts.",
            )
        return entry

    async def entries(self, states: Iterable[str] | None = None, limit: int = 200) -> list[Entry]:
        async with self.journal._session() as session:
            query = select(ScheduleRow).order_by(
                ScheduleRow.scheduled_at.is_(None), ScheduleRow.scheduled_at, ScheduleRow.post_id
            )
            if states is not None:
                query = query.where(ScheduleRow.state.in_(list(states)))
            rows = (await session.execute(query.limit(limit))).scalars().all()
            return [Entry.from_row(r) for r in rows]

    async def for_posts(self, post_ids: Iterable[int]) -> dict[int, Entry]:
        """The schedule entries of these posts (those that have one)."""
        ids = sorted(set(post_ids))
        if not ids:
            return {}
        async with self.journal._session() as session:
            rows = (
                (await session.execute(select(ScheduleRow).where(ScheduleRow.post_id.in_(ids))))
                .scalars()
                .all()
            )
            return {r.post_id: Entry.from_row(r) for r in rows}

    # -- writing ---------------------------------------------------------------------
    async def put(
        self,
        post_id: int,
        *,
        state: str,
        scheduled_at: datetime | None,
        tz: str | None,
        prompt: str | None,
    ) -> Entry:
        """Schedule (or draft) a journaled post; an earlier entry that is not in progress
        (cancelled, rejected, failed, or still waiting) is replaced."""
        assert state in ("draft", "queued"), state
        stamp = now()
        values = {
            "state": state,
            "scheduled_at": scheduled_at,
            "tz": tz,
            "prompt": prompt,
            "reason": None,
            "claim_owner": None,
            "claimed_at": None,
            "attempts": 0,
            "updated_at": stamp,
            "decided_at": None,
        }
        existing = await self.get(post_id)
        if existing is None:
            try:
                async with self.journal._write_session() as session, session.begin():
                    session.add(ScheduleRow(post_id=post_id, created_at=stamp, **values))
                return await self.require(post_id)
            except IntegrityError:
                existing = await self.require(post_id)  # another process scheduled it
        if existing.state in ("claimed", "published"):
            doing = "being published" if existing.state == "claimed" else "published"
            raise InputError(
                f"Post {post_id} is {doing} already; it cannot be scheduled again.",
                hint="Add --force to post the same media and caption as a new post.",
            )
        await self._transition(post_id, (existing.state,), **values)
        return await self.require(post_id)

    async def _transition(self, post_id: int, from_states: Iterable[str], **values: Any) -> bool:
        """Compare-and-swap on the state: True when the row was in one of `from_states`."""
        values.setdefault("updated_at", now())
        async with self.journal._write_session() as session, session.begin():
            result = await session.execute(
                update(ScheduleRow)
                .where(ScheduleRow.post_id == post_id, ScheduleRow.state.in_(list(from_states)))
                .values(**values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _decide(
        self, post_id: int, allowed: tuple[str, ...], action: str, **values: Any
    ) -> Entry:
        entry = await self.require(post_id)
        if entry.state not in allowed or not await self._transition(post_id, allowed, **values):
            entry = await self.require(post_id)
            raise InputError(
                f"Post {post_id} is {entry.state}; only a post that is "
                f"{' or '.join(allowed)} can be {action}.",
                hint="`carrier instagram queue list --all` shows each post's state.",
            )
        return await self.require(post_id)

    async def approve(self, post_id: int) -> Entry:
        return await self._decide(
            post_id, ("draft",), "approved", state="approved", decided_at=now()
        )

    async def reject(self, post_id: int, reason: str | None) -> Entry:
        return await self._decide(
            post_id, ("draft",), "rejected", state="rejected", reason=reason, decided_at=now()
        )

    async def cancel(self, post_id: int) -> Entry:
        return await self._decide(
            post_id, ("draft", "approved", "queued"), "cancelled", state="cancelled"
        )

    async def reschedule(self, post_id: int, at: datetime, tz: str | None) -> Entry:
        """A new time for a waiting post; a failed or cancelled one is queued again (its
        tries reset). A draft stays a draft: approval is still needed."""
        entry = await self.require(post_id)
        values: dict[str, Any] = {"scheduled_at": at, "tz": tz}
        if entry.state in ("failed", "cancelled"):
            values.update(state="queued", attempts=0, reason=None)
        return await self._decide(
            post_id,
            ("draft", "approved", "queued", "failed", "cancelled"),
            "rescheduled",
            **values,
        )

    # -- the pollers' side -------------------------------------------------------------
    async def claim_due(
        self, owner: str, *, characters: Iterable[str | None] | None = None
    ) -> Entry | None:
        """Take one due post (the earliest first), or a stale claim; None when none is."""
        from carrier_cli.clients.instagram.journal import InstagramPostRow

        base = select(ScheduleRow).join(
            InstagramPostRow, InstagramPostRow.id == ScheduleRow.post_id
        )
        if characters is not None:
            names = list(characters)
            wanted = [n for n in names if n is not None]
            matches: Any = InstagramPostRow.character.in_(wanted)
            if None in names:
                matches = matches | InstagramPostRow.character.is_(None)
            base = base.where(matches)
        # Two reads, so that many live claims never hide the due posts behind them: the
        # claims (as many as processes publish, the oldest first) checked for staleness,
        # then the due posts, the earliest first.
        claimed = base.where(ScheduleRow.state == "claimed").order_by(ScheduleRow.claimed_at)
        due = (
            base.where(ScheduleRow.state.in_(DUE_STATES), ScheduleRow.scheduled_at <= now())
            .order_by(ScheduleRow.scheduled_at, ScheduleRow.post_id)
            .limit(20)
        )
        async with self.journal._session() as session:
            candidates = [
                Entry.from_row(r)
                for query in (claimed.limit(200), due)
                for r in (await session.execute(query)).scalars()
            ]
        for entry in candidates:
            if entry.state == "claimed" and not entry.claim_is_stale:
                continue
            condition_values = (
                (ScheduleRow.claim_owner == entry.claim_owner)
                & (ScheduleRow.claimed_at == entry.claimed_at)
                if entry.state == "claimed"
                else true()
            )
            async with self.journal._write_session() as session, session.begin():
                result = await session.execute(
                    update(ScheduleRow)
                    .where(
                        ScheduleRow.post_id == entry.post_id,
                        ScheduleRow.state == entry.state,
                        condition_values,
                    )
                    .values(
                        state="claimed",
                        claim_owner=owner,
                        claimed_at=time.time(),
                        updated_at=now(),
                    )
                )
                won = bool(result.rowcount)  # type: ignore[attr-defined]
            if won:  # read after the commit: another connection sees it only then
                return await self.require(entry.post_id)
        return None

    async def refresh(self, post_id: int, owner: str) -> bool:
        async with self.journal._write_session() as session, session.begin():
            result = await session.execute(
                update(ScheduleRow)
                .where(ScheduleRow.post_id == post_id, ScheduleRow.claim_owner == owner)
                .values(claimed_at=time.time())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def finish(self, post_id: int, owner: str, state: str, **values: Any) -> bool:
        """Leave `claimed` (published, failed, or queued again with a later time)."""
        assert state in ("published", "failed", "queued"), state
        async with self.journal._write_session() as session, session.begin():
            result = await session.execute(
                update(ScheduleRow)
                .where(
                    ScheduleRow.post_id == post_id,
                    ScheduleRow.claim_owner == owner,
                    ScheduleRow.state == "claimed",
                )
                .values(state=state, claim_owner=None, claimed_at=None, updated_at=now(), **values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]


async def ensure_publishable(journal: Journal, post_id: int) -> None:
    """Refuse to publish a post that waits for approval or was rejected or cancelled,
    whoever asks (`resume`, the same `post` again): only approval or a new schedule
    makes it publishable. A post with no schedule entry is an ordinary post."""
    entry = await Schedule(journal).get(post_id)
    if entry is None or entry.state not in ("draft", "rejected", "cancelled"):
        return
    if entry.state == "draft":
        raise InputError(
            f"Post {post_id} is a draft waiting for approval; it is not published before.",
            hint=f"`carrier instagram approve {post_id}` (or reject it); `carrier instagram "
            f"queue show {post_id}` shows it.",
        )
    raise InputError(
        f"Post {post_id} was {entry.state}"
        + (f" ({entry.reason})" if entry.reason else "")
        + "; it is not published.",
        hint=f"Schedule it again with `carrier instagram queue reschedule {post_id} --at ...`"
        if entry.state == "cancelled"
        else "Post the media again with --force to make a new post.",
    )


def shown_status(status: str, entry: dict[str, Any] | None) -> str:
    """A post's status as `status` and `history` print it, from the journal's status and
    its schedule entry (`Entry.to_dict()`, in `PostRecord.extra["schedule"]`). A scheduled
    or drafted post sits at the journal's first step (`prepared`) until it is due;
    printing that alone hid whether it waits for a time or for approval, or was cancelled
    or rejected."""
    if not entry:
        return status
    state = entry["state"]
    if state in ("rejected", "cancelled"):
        return str(state)
    if status != "prepared":  # under way, or failed: the journal says more
        return status
    when = entry.get("scheduled_at")
    at = f"{when:%Y-%m-%d %H:%M} UTC" if isinstance(when, datetime) else None
    if state == "draft":
        return "draft, awaiting approval" + (f" (for {at})" if at else "")
    if state in ("queued", "approved"):
        return f"{state} for {at}" if at else str(state)
    return status
