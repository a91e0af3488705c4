"""The durable record of every Instagram post, in the memory database.

A post is a row that moves through prepared → uploaded → container_created →
container_finished → publishing → published (`failed` keeps the last completed step in
`last_step`, so a rerun continues from there). Two guarantees against double posting:

* `idempotency_key` (hash of the media contents and the caption) is UNIQUE, so two runs
  of the same post share one row whatever their timing;
* a lease (`lease_owner`, `lease_expires`) is taken with a compare-and-swap UPDATE, so
  only one process works on a row at a time. A lease whose process died on this host is
  taken over at once; others expire after `LEASE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, Integer, String, Text, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from carrier_cli.errors import InputError, RuntimeFailure
from carrier_cli.memory.declarative import Base
from carrier_cli.memory.schema import JSONType, UTCDateTime

if TYPE_CHECKING:
    from carrier_cli.memory.async_engine import AsyncEngine

STEPS = (
    "prepared",
    "uploaded",
    "container_created",
    "container_finished",
    "publishing",
    "published",
)
LEASE_SECONDS = 120.0


class InstagramPostRow(Base):
    __tablename__ = "instagram_posts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(30), index=True)
    last_step: Mapped[str] = mapped_column(String(30))
    caption: Mapped[str] = mapped_column(Text, default="")
    character: Mapped[str | None] = mapped_column(String(200), nullable=True)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    container_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    media_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    permalink: Mapped[str | None] = mapped_column(String(500), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


@dataclass
class PostRecord:
    """A detached copy of a row (safe to use after the session closed)."""

    id: int
    idempotency_key: str
    kind: str
    status: str
    last_step: str
    caption: str
    character: str | None
    items: list[dict[str, Any]]
    options: dict[str, Any]
    container_id: str | None
    media_id: str | None
    permalink: str | None
    error: str | None
    attempts: int
    lease_owner: str | None
    lease_expires: float | None
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: InstagramPostRow) -> PostRecord:
        return cls(**{name: _copy(getattr(row, name)) for name in _COLUMNS})

    @property
    def published(self) -> bool:
        return self.status == "published"

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _COLUMNS}
        data.pop("lease_expires")
        data.update(self.extra)  # e.g. "schedule", added by service.status/history
        return data


_COLUMNS = [c.name for c in InstagramPostRow.__table__.columns]


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if isinstance(value, list | dict) else value


def now() -> datetime:
    return datetime.now(UTC)


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_is_dead(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def crash_point(name: str) -> None:
    """Test-only fault injection: CARRIER_TEST_CRASH_AFTER=<step> kills the process here,
    right after that step was committed, the way a power cut or `kill -9` would."""
    if os.environ.get("CARRIER_TEST_CRASH_AFTER") == name:
        os._exit(137)


class LeaseLost(RuntimeError):
    """Another process took the row over; stop without touching it further."""


class Journal:
    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = True) -> None:
        self.engine = engine
        self._owns_engine = owns_engine

    @classmethod
    async def open(cls, database_url: str | None) -> Journal:
        """Open the memory database (`InstagramOptions.database_url`; None: the default
        SQLite file); an empty one is initialised, an older schema is not migrated
        implicitly (the same rule as the memory store: `carrier db upgrade`)."""
        from carrier_cli.memory.backends import make_engine
        from carrier_cli.memory.migrate import schema_state, upgrade
        from carrier_cli.memory.urls import mask_url, normalise_url

        url = normalise_url(database_url)
        engine = make_engine(url)
        try:
            state = await schema_state(engine)
            if state.status == "empty":
                await upgrade(engine)
            elif state.status != "current":
                raise InputError(
                    f"The database {mask_url(url)} is at schema revision "
                    f"{state.revision or 'none'}; this Carrier needs {', '.join(state.heads)} "
                    "(the Instagram journal lives there).",
                    hint="Run `carrier db upgrade` (back up the database first)."
                    if state.status == "behind"
                    else "Upgrade Carrier, or point DATABASE_URL at another database.",
                )
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            cause = getattr(exc, "orig", None) or exc
            raise RuntimeFailure(
                f"Cannot open the database {mask_url(url)} for the Instagram journal: "
                f"{(str(cause).splitlines() or [type(cause).__name__])[0]}.",
                hint="Check DATABASE_URL and that the database server is running.",
            ) from None
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    def _session(self) -> Any:
        # The journal's rows are ORM-mapped: SQLAlchemy's own AsyncEngine on the same
        # engine (imported here, not by every command that opens the database).
        from sqlalchemy.ext.asyncio import async_sessionmaker

        return async_sessionmaker(self.engine.orm_engine(), expire_on_commit=False)()

    def _write_session(self) -> Any:
        """A session whose transactions start with BEGIN IMMEDIATE on SQLite.

        A deferred transaction that reads the row and then updates it fails at once with
        "database is locked" when another process committed in between, whatever the
        busy_timeout; two posters racing for the same post hit exactly that.
        """
        from sqlalchemy.ext.asyncio import async_sessionmaker

        from carrier_cli.memory.engine import IMMEDIATE

        engine = self.engine.orm_engine().execution_options(**{IMMEDIATE: True})
        return async_sessionmaker(engine, expire_on_commit=False)()

    # -- reading -----------------------------------------------------------------------
    async def get(self, post_id: int) -> PostRecord | None:
        async with self._session() as session:
            row = await session.get(InstagramPostRow, post_id)
            return PostRecord.from_row(row) if row else None

    async def require(self, post_id: int) -> PostRecord:
        record = await self.get(post_id)
        if record is None:
            raise InputError(
                f"No Instagram post with id {post_id} in the journal.",
                hint="`carrier instagram history` lists the posts.",
            )
        return record

    async def by_key(self, key: str) -> PostRecord | None:
        async with self._session() as session:
            row = (
                await session.execute(
                    select(InstagramPostRow).where(InstagramPostRow.idempotency_key == key)
                )
            ).scalar_one_or_none()
            return PostRecord.from_row(row) if row else None

    async def history(self, limit: int = 20, status: str | None = None) -> list[PostRecord]:
        async with self._session() as session:
            query = select(InstagramPostRow).order_by(InstagramPostRow.id.desc()).limit(limit)
            if status:
                query = query.where(InstagramPostRow.status == status)
            rows = (await session.execute(query)).scalars().all()
            return [PostRecord.from_row(r) for r in rows]

    async def published_since(self, since: datetime) -> list[datetime]:
        async with self._session() as session:
            rows = (
                (
                    await session.execute(
                        select(InstagramPostRow.published_at)
                        .where(InstagramPostRow.published_at >= since)
                        .order_by(InstagramPostRow.published_at)
                    )
                )
                .scalars()
                .all()
            )
            return [r for r in rows if r is not None]

    async def last_published(self, character: str | None) -> datetime | None:
        async with self._session() as session:
            query = select(func.max(InstagramPostRow.published_at))
            if character is not None:
                query = query.where(InstagramPostRow.character == character)
            value = (await session.execute(query)).scalar_one_or_none()
            if value is not None and value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            return value

    async def count_with_prefix(self, key: str) -> int:
        async with self._session() as session:
            return int(
                (
                    await session.execute(
                        select(func.count())
                        .select_from(InstagramPostRow)
                        .where(InstagramPostRow.idempotency_key.like(f"{key}%"))
                    )
                ).scalar_one()
            )

    async def files_still_needed(self, names: set[str], exclude: int) -> dict[str, int]:
        """Uploaded file name -> the id of another post, not published yet, that still
        needs it: two posts of the same content share one remote name (it is the
        content's hash), so one post's cleanup must not delete what the other's container
        will be created from. Needed means uploaded (its item has the public URL, so a
        resume goes straight to the container) or a post under a live lease, which may be
        uploading it right now. Only unpublished rows are read, and only id, items and
        lease: failed posts stay in the journal, but they are few next to published ones."""
        if not names:
            return {}
        async with self._session() as session:
            rows = (
                await session.execute(
                    select(
                        InstagramPostRow.id,
                        InstagramPostRow.items,
                        InstagramPostRow.lease_expires,
                    )
                    .where(InstagramPostRow.status != "published", InstagramPostRow.id != exclude)
                    .order_by(InstagramPostRow.id)
                )
            ).all()
        needed: dict[str, int] = {}
        for post_id, items, lease_expires in rows:
            leased = (lease_expires or 0) > time.time()
            for item in items or []:
                name = item.get("remote_name")
                if name in names and name not in needed and (item.get("url") or leased):
                    needed[name] = int(post_id)
        return needed

    # -- writing -----------------------------------------------------------------------
    async def find_or_create(
        self,
        key: str,
        *,
        kind: str,
        caption: str,
        items: list[dict[str, Any]],
        options: dict[str, Any],
        character: str | None = None,
    ) -> tuple[PostRecord, bool]:
        """The row for this key; created (status `prepared`) if it did not exist."""
        existing = await self.by_key(key)
        if existing is not None:
            return existing, False
        stamp = now()
        row = InstagramPostRow(
            idempotency_key=key,
            kind=kind,
            status="prepared",
            last_step="prepared",
            caption=caption,
            character=character,
            items=items,
            options=options,
            attempts=0,
            created_at=stamp,
            updated_at=stamp,
        )
        try:
            async with self._write_session() as session, session.begin():
                session.add(row)
            return PostRecord.from_row(row), True
        except IntegrityError:
            # Another process inserted the same post between our read and our insert.
            record = await self.by_key(key)
            assert record is not None
            return record, False

    async def claim(self, post_id: int, owner: str, ttl: float = LEASE_SECONDS) -> bool:
        """Take the lease if it is free, expired or held by a dead process on this host."""
        record = await self.require(post_id)
        current = record.lease_owner
        if current and current != owner:
            alive = (record.lease_expires or 0) > time.time() and not _owner_is_dead(current)
            if alive:
                return False
        condition = (
            InstagramPostRow.lease_owner.is_(None)
            if current is None
            else InstagramPostRow.lease_owner == current
        )
        async with self._write_session() as session, session.begin():
            result = await session.execute(
                update(InstagramPostRow)
                .where(InstagramPostRow.id == post_id, condition)
                .values(
                    lease_owner=owner,
                    lease_expires=time.time() + ttl,
                    attempts=InstagramPostRow.attempts + 1,
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def update(self, post_id: int, owner: str, **values: Any) -> PostRecord:
        """Write fields while holding the lease (and renew it); LeaseLost if it was taken."""
        values["updated_at"] = now()
        values["lease_expires"] = time.time() + LEASE_SECONDS
        async with self._write_session() as session, session.begin():
            result = await session.execute(
                update(InstagramPostRow)
                .where(InstagramPostRow.id == post_id, InstagramPostRow.lease_owner == owner)
                .values(**values)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise LeaseLost(f"post {post_id} is now handled by another process")
            row = await session.get(InstagramPostRow, post_id)
            assert row is not None
            await session.refresh(row)
            return PostRecord.from_row(row)

    async def renew(self, post_id: int, owner: str) -> bool:
        async with self._write_session() as session, session.begin():
            result = await session.execute(
                update(InstagramPostRow)
                .where(InstagramPostRow.id == post_id, InstagramPostRow.lease_owner == owner)
                .values(lease_expires=time.time() + LEASE_SECONDS)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def record_step(self, post_id: int, owner: str, step: str, **values: Any) -> PostRecord:
        assert step in STEPS, step
        record = await self.update(
            post_id, owner, status=step, last_step=step, error=None, **values
        )
        crash_point(step)
        return record

    async def fail(self, post_id: int, owner: str, reason: str, **values: Any) -> None:
        with contextlib.suppress(LeaseLost):
            await self.update(post_id, owner, status="failed", error=reason[:4000], **values)

    async def release(self, post_id: int, owner: str) -> None:
        async with self._write_session() as session, session.begin():
            await session.execute(
                update(InstagramPostRow)
                .where(InstagramPostRow.id == post_id, InstagramPostRow.lease_owner == owner)
                .values(lease_owner=None, lease_expires=None)
            )
