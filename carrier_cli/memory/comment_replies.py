"""`instagram_comment_replies`: one row per Instagram comment the agent looked at.

The row is what makes a reply exactly-once. Its key is the comment id (Meta's, unique
across Instagram), so two processes, or the poller and a webhook of one process, that see
the same comment share one row. A comment moves through

    pending (claimed by one process, lease in `claimed_until`)
      -> replied (reply_id set) | skipped (a rule said no; `reason`) | failed (gave up)

The reply text is stored while the row is still pending, before the reply is posted:
after a crash between `POST /{comment}/replies` and `finish(...)` the next claimer finds a
pending row with a text and checks the comment's replies on Instagram for that text from
the account before posting anything (clients/instagram/comment_replies.py).

Claims are one conditional UPDATE (free, expired, or held by a dead process of this host),
every later write names the owner (a fence), and the same statements run on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Column, Index, Integer, String, Table, Text, func, select, update

from carrier_cli.memory.schema import METADATA, UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from carrier_cli.memory.backend import MemoryBackend
    from carrier_cli.memory.store import MemoryStore

Status = Literal["pending", "replied", "skipped", "failed"]
FINAL: frozenset[str] = frozenset({"replied", "skipped", "failed"})
REASON_CHARS = 500  # `reason` is bounded
TEXT_CHARS = 2_200  # Instagram's longest comment


REPLIES = Table(
    "instagram_comment_replies",
    METADATA,
    Column("comment_id", String(64), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("media_id", String(64), nullable=False),
    Column("parent_id", String(64), nullable=True),
    Column("character", String(200), nullable=False),
    Column("status", String(10), nullable=False),
    Column("reason", Text, nullable=True),
    Column("reply_text", Text, nullable=True),
    Column("reply_id", String(64), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("claim_owner", String(200), nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("replied_at", UTCDateTime, nullable=True),
    Index("ix_instagram_comment_replies_replied", "character", "replied_at"),
    Index("ix_instagram_comment_replies_status", "status"),
)


@dataclass(frozen=True)
class CommentReply:
    """A detached copy of a row."""

    comment_id: str
    account_id: str
    media_id: str
    parent_id: str | None
    character: str
    status: str
    reason: str | None
    reply_text: str | None
    reply_id: str | None
    attempts: int
    claim_owner: str | None
    created_at: datetime
    updated_at: datetime
    replied_at: datetime | None

    @property
    def final(self) -> bool:
        return self.status in FINAL


@dataclass(frozen=True)
class Claim:
    """What `claim` found: the row (now ours when `owned`), and whether it existed before,
    i.e. an earlier attempt may have posted a reply already."""

    row: CommentReply
    owned: bool
    existed: bool


def _reply(row: Any) -> CommentReply:
    return CommentReply(
        comment_id=row.comment_id,
        account_id=row.account_id,
        media_id=row.media_id,
        parent_id=row.parent_id,
        character=row.character,
        status=row.status,
        reason=row.reason,
        reply_text=row.reply_text,
        reply_id=row.reply_id,
        attempts=row.attempts,
        claim_owner=row.claim_owner,
        created_at=row.created_at,
        updated_at=row.updated_at,
        replied_at=row.replied_at,
    )


def _backend(store: MemoryStore) -> MemoryBackend:
    return store._backend  # inside memory/, like outbox.py


async def get(store: MemoryStore, comment_id: str) -> CommentReply | None:
    query = select(REPLIES).where(REPLIES.c.comment_id == comment_id)
    async with _backend(store).read() as conn:
        row = (await conn.execute(query)).first()
    return _reply(row) if row is not None else None


async def final_ids(store: MemoryStore, comment_ids: Sequence[str]) -> set[str]:
    """Which of these comments are done with (replied, skipped or failed): a poll skips
    them without a claim. Up to 500 ids per query."""
    done: set[str] = set()
    ids = list(dict.fromkeys(comment_ids))
    async with _backend(store).read() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = select(REPLIES.c.comment_id).where(
                REPLIES.c.comment_id.in_(chunk), REPLIES.c.status.in_(sorted(FINAL))
            )
            done.update(r[0] for r in (await conn.execute(query)).all())
    return done


async def claim(
    store: MemoryStore,
    *,
    comment_id: str,
    account_id: str,
    media_id: str,
    parent_id: str | None,
    character: str,
    owner: str,
    now: datetime,
    lease: timedelta,
    owner_is_dead: Callable[[str], bool],
) -> Claim:
    """Take the comment for `owner` until now + lease: a new row, or a pending one whose
    lease ran out or whose owner died (`owner_is_dead`). Otherwise the row as it is,
    not owned (done already, or another live process is on it)."""
    backend = _backend(store)
    values = {
        "comment_id": comment_id,
        "account_id": account_id,
        "media_id": media_id,
        "parent_id": parent_id,
        "character": character[:200],
        "status": "pending",
        "reason": None,
        "reply_text": None,
        "reply_id": None,
        "attempts": 0,
        "claim_owner": owner,
        "claimed_until": now + lease,
        "created_at": now,
        "updated_at": now,
        "replied_at": None,
    }
    insert = backend.insert(REPLIES).on_conflict_do_nothing(index_elements=["comment_id"])
    this = REPLIES.c.comment_id == comment_id

    def write(conn: Connection) -> Claim:
        if conn.execute(insert, values).rowcount:
            return Claim(_reply(conn.execute(select(REPLIES).where(this)).one()), True, False)
        row = conn.execute(select(REPLIES).where(this)).one()
        if row.status != "pending":
            return Claim(_reply(row), False, True)
        held = row.claimed_until is not None and row.claimed_until > now
        # Held by a live owner, this process included (the poller and a webhook of one
        # process may meet on one comment): not ours.
        if held and not owner_is_dead(row.claim_owner or ""):
            return Claim(_reply(row), False, True)
        # Compare-and-swap on the owner read above: of two claimers, one wins.
        taken = conn.execute(
            update(REPLIES)
            .where(this, REPLIES.c.status == "pending", _same_owner(row.claim_owner))
            .values(claim_owner=owner, claimed_until=now + lease, updated_at=now)
        ).rowcount
        latest = _reply(conn.execute(select(REPLIES).where(this)).one())
        return Claim(latest, bool(taken), True)

    return await backend.run_write(write)


def _same_owner(owner: str | None) -> Any:
    return REPLIES.c.claim_owner.is_(None) if owner is None else REPLIES.c.claim_owner == owner


async def _owned_update(
    store: MemoryStore, comment_id: str, owner: str, values: dict[str, Any]
) -> bool:
    stmt = (
        update(REPLIES)
        .where(
            REPLIES.c.comment_id == comment_id,
            REPLIES.c.claim_owner == owner,
            REPLIES.c.status == "pending",
        )
        .values(**values)
    )
    return await _backend(store).run_write(lambda conn: bool(conn.execute(stmt).rowcount))


async def save_text(
    store: MemoryStore, comment_id: str, owner: str, text: str, now: datetime
) -> bool:
    """Keep the reply about to be posted (so a crash after posting is recognised)."""
    return await _owned_update(
        store, comment_id, owner, {"reply_text": text[:TEXT_CHARS], "updated_at": now}
    )


async def finish(
    store: MemoryStore,
    comment_id: str,
    owner: str,
    *,
    status: Status,
    now: datetime,
    reply_id: str | None = None,
    reply_text: str | None = None,
    reason: str | None = None,
) -> bool:
    """Record the outcome; False when the claim was lost to another process."""
    values: dict[str, Any] = {
        "status": status,
        "reason": reason[:REASON_CHARS] if reason else None,
        "updated_at": now,
        "claim_owner": None,
        "claimed_until": None,
    }
    if status == "replied":
        values["reply_id"] = reply_id
        values["replied_at"] = now
    if reply_text is not None:
        values["reply_text"] = reply_text[:TEXT_CHARS]
    return await _owned_update(store, comment_id, owner, values)


async def give_back(
    store: MemoryStore,
    comment_id: str,
    owner: str,
    *,
    now: datetime,
    reason: str,
    max_attempts: int,
) -> str:
    """An attempt failed: pending again for a later poll, or `failed` after
    `max_attempts`. Returns the new status."""
    current = await get(store, comment_id)
    attempts = (current.attempts if current else 0) + 1
    status: Status = "failed" if attempts >= max_attempts else "pending"
    await _owned_update(
        store,
        comment_id,
        owner,
        {
            "status": status,
            "attempts": attempts,
            "reason": reason[:REASON_CHARS],
            "updated_at": now,
            "claim_owner": None,
            "claimed_until": None,
        },
    )
    return status


async def release(
    store: MemoryStore, comment_id: str, owner: str, *, now: datetime, reason: str
) -> bool:
    """Give the claim back untried (not an attempt): a later poll takes the comment again."""
    return await _owned_update(
        store,
        comment_id,
        owner,
        {
            "reason": reason[:REASON_CHARS],
            "updated_at": now,
            "claim_owner": None,
            "claimed_until": None,
        },
    )


async def replies_since(store: MemoryStore, character: str, since: datetime) -> int:
    """How many replies the character posted since `since` (max_replies_per_hour)."""
    query = (
        select(func.count())
        .select_from(REPLIES)
        .where(
            REPLIES.c.character == character[:200],
            REPLIES.c.status == "replied",
            REPLIES.c.replied_at >= since,
        )
    )
    async with _backend(store).read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def list_replies(
    store: MemoryStore, *, status: Status | None = None, limit: int = 50
) -> list[CommentReply]:
    """Newest first."""
    query = select(REPLIES).order_by(REPLIES.c.created_at.desc()).limit(limit)
    if status is not None:
        query = query.where(REPLIES.c.status == status)
    async with _backend(store).read() as conn:
        rows = (await conn.execute(query)).all()
    return [_reply(r) for r in rows]
