"""Scheduled and drafted posts, usable without the command line.

`carrier instagram post ... --at WHEN` / `--draft`, `carrier instagram queue ...`,
`approve` and `reject` call these; the API routes and the autoposter use the `*_in`
functions with the journal they hold. Scheduling does now everything that can fail
because of the file (the media checks and conversions, the journal row), so a bad file is
refused at once rather than at publishing time; the upload, the containers and
media_publish run when the post is due, by whichever Carrier process claims it. The upload
waits on purpose: uploaded, the media would be public on HTTP_SERVER before its time (a
December post readable in November). The settings it will need (token, account, FTP,
HTTP_SERVER) are checked now, so a missing one is refused at scheduling time too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.instagram import captions
from carrier_cli.clients.instagram import when as when_mod
from carrier_cli.clients.instagram.journal import Journal, PostRecord, now
from carrier_cli.clients.instagram.options import InstagramOptions
from carrier_cli.clients.instagram.pipeline import (
    PostRequest,
    Publisher,
    Reporter,
    check_publish_settings,
    prepare,
)
from carrier_cli.clients.instagram.schedule import OPEN_STATES, Entry, Schedule
from carrier_cli.clients.instagram.scheduler import PassResult, publish_due
from carrier_cli.errors import InputError

if TYPE_CHECKING:
    from carrier_cli.character.model import Character
    from carrier_cli.clients.instagram.media import PostKind, PreparedMedia
    from carrier_cli.config import Settings


@dataclass
class QueueItem:
    """A schedule entry with its journal post (caption, media, step)."""

    entry: Entry
    record: PostRecord
    already_published: bool = False
    # The post's earlier schedule entry that this one replaced (the same media and
    # caption sent again with --at/--draft): an operator should hear that a waiting
    # post moved rather than a second one being queued.
    replaced: Entry | None = None
    # False when the journal had this post already (same media and caption): its
    # files are the first sending's, so a caller holding a second copy may drop it.
    created: bool = True

    @property
    def zone(self) -> when_mod.Zone:
        try:
            return when_mod.zone(self.entry.tz)
        except InputError:  # a zone this machine lacks: show the machine's
            return when_mod.local_zone()

    def when_text(self) -> str:
        at = self.entry.scheduled_at
        if at is None:
            return "when approved"
        return when_mod.describe(at, self.zone)

    def media(self) -> list[str]:
        return [str(item.get("source")) for item in self.record.items]

    def to_dict(self) -> dict[str, Any]:
        e, r = self.entry, self.record
        at = e.scheduled_at
        return {
            "post_id": e.post_id,
            "state": e.state,
            "scheduled_at": at.isoformat() if at else None,
            "scheduled_local": self.zone.show(at).isoformat() if at else None,
            "tz": e.tz,
            "kind": r.kind,
            "caption": r.caption,
            "media": self.media(),
            "character": r.character,
            "prompt": e.prompt,
            "reason": e.reason,
            "attempts": e.attempts,
            "step": r.last_step,
            "media_id": r.media_id,
            "permalink": r.permalink,
            "decided_at": e.decided_at.isoformat() if e.decided_at else None,
            "already_published": self.already_published,
            "replaced": _replaced_dict(self.replaced),
        }

    def replaced_text(self) -> str | None:
        """One sentence on the entry this one replaced, None when there was none."""
        old = self.replaced
        if old is None:
            return None
        if old.state in ("queued", "approved") and old.scheduled_at is not None:
            was = f"{old.state} for {when_mod.describe(old.scheduled_at, self.zone)}"
        else:
            was = old.state
        return f"This replaces the post's earlier schedule entry ({was})."


def _replaced_dict(old: Entry | None) -> dict[str, Any] | None:
    if old is None:
        return None
    at = old.scheduled_at
    return {"state": old.state, "scheduled_at": at.isoformat() if at else None}


def caption_prompt(kind: str, files: list[Path]) -> str:
    """What the character is asked for a caption (the service's instructions)."""
    from carrier_cli.clients.instagram.service import CAPTION_INSTRUCTIONS

    return CAPTION_INSTRUCTIONS.format(kind=kind, files=", ".join(p.name for p in files))


def parse_at(at: str | None, tz: str | None) -> tuple[datetime | None, when_mod.Zone]:
    """--at and --tz, checked before anything else is done (InputError naming them)."""
    zone = when_mod.zone(tz)
    return (when_mod.parse_when(at, zone) if at is not None else None), zone


async def schedule_in(
    options: InstagramOptions,
    journal: Journal,
    request: PostRequest,
    *,
    at: datetime | None,
    zone: when_mod.Zone,
    draft: bool,
    character: Character | None = None,
    runtime: Any | None = None,
    open_runtime: Callable[[Character], Awaitable[Any]] | None = None,
    prepared: tuple[list[PreparedMedia], PostKind] | None = None,
    confirm: Callable[[str], bool] | None = None,
    reporter: Reporter | None = None,
) -> QueueItem:
    """Validate and convert the media now, journal the post and schedule it: `queued`
    for `at` (default now), or a `draft` waiting for approval. `character` (with its
    `runtime`, or `open_runtime`) writes the caption now, so the approver reads it."""
    from carrier_cli.clients.instagram.service import write_caption

    if request.caption and character is None:
        captions.check_caption(request.caption)
    if request.alt_text and len(request.alt_text) > 1000:
        raise InputError(f"--alt-text has {len(request.alt_text)} characters; at most 1,000.")
    check_publish_settings(options)  # missing settings now, not at publishing time
    if prepared is None:
        # A video out of spec is converted now (minutes for a long clip): `reporter` shows
        # its progress as an immediate post does.
        prepared = await asyncio.to_thread(prepare, request, reporter)
    media, kind = prepared
    prompt = None
    publisher = Publisher(options, journal)
    if character is not None:
        request.character = character.name
        request.caption_key = f"generated:{character.name}"
        prompt = caption_prompt(kind, request.files)
        existing = await publisher.lookup(request, media, kind)
        if existing is not None:
            request.caption = existing.caption
        else:
            request.caption = await write_caption(
                character, kind, request.files, runtime, open_runtime=open_runtime
            )
            if confirm is not None and not confirm(request.caption):
                raise InputError(
                    "Caption not approved; nothing was queued.",
                    hint="Run again for another caption, pass --caption, or --draft to "
                    "decide later.",
                )
    record, created = await publisher.begin(request, prepared)
    schedule = Schedule(journal)
    if record.published and not request.force:
        entry = await schedule.get(record.id)
        if entry is None:
            entry = await _published_entry(schedule, record)
        return QueueItem(entry, record, already_published=True, created=created)
    previous = await schedule.get(record.id)  # put() replaces it unless in progress
    entry = await schedule.put(
        record.id,
        state="draft" if draft else "queued",
        scheduled_at=at if at is not None or draft else now(),
        tz=zone.name if zone.tz is not None else None,
        prompt=prompt,
    )
    return QueueItem(entry, record, replaced=previous, created=created)


async def _published_entry(schedule: Schedule, record: PostRecord) -> Entry:
    """An Entry-shaped view of a post published without the schedule (for the answer)."""
    stamp = record.published_at or now()
    return Entry(
        post_id=record.id,
        state="published",
        scheduled_at=None,
        tz=None,
        prompt=None,
        reason=None,
        claim_owner=None,
        claimed_at=None,
        attempts=0,
        created_at=record.created_at,
        updated_at=stamp,
        decided_at=None,
    )


async def items_in(
    journal: Journal, states: tuple[str, ...] | None = OPEN_STATES, limit: int = 200
) -> list[QueueItem]:
    schedule = Schedule(journal)
    items = []
    for entry in await schedule.entries(states, limit=limit):
        record = await journal.get(entry.post_id)
        if record is not None:
            items.append(QueueItem(entry, record))
    return items


async def item_in(journal: Journal, post_id: int) -> QueueItem:
    entry = await Schedule(journal).require(post_id)
    return QueueItem(entry, await journal.require(post_id))


async def decide_in(journal: Journal, post_id: int, decision: str, reason: str | None) -> QueueItem:
    """approve | reject | cancel one post; InputError when its state does not allow it."""
    schedule = Schedule(journal)
    if decision == "approve":
        entry = await schedule.approve(post_id)
        if entry.scheduled_at is None:  # a draft without --at goes out once approved
            await schedule._transition(post_id, ("approved",), scheduled_at=now())
    elif decision == "reject":
        await schedule.reject(post_id, reason)
    elif decision == "cancel":
        await schedule.cancel(post_id)
    else:
        raise ValueError(decision)
    return await item_in(journal, post_id)


async def reschedule_in(
    journal: Journal, post_id: int, at: datetime, zone: when_mod.Zone
) -> QueueItem:
    await Schedule(journal).reschedule(post_id, at, zone.name if zone.tz is not None else None)
    return await item_in(journal, post_id)


# -- the edge: Settings in, data out (the CLI) ---------------------------------------------
async def _with(settings: Settings, work: Callable[[Journal], Awaitable[Any]]) -> Any:
    journal = await Journal.open(InstagramOptions.from_settings(settings).database_url)
    try:
        return await work(journal)
    finally:
        await journal.close()


async def schedule(
    settings: Settings,
    request: PostRequest,
    *,
    at: datetime | None,
    zone: when_mod.Zone,
    draft: bool,
    generate: bool,
    character_loader: Callable[[str | None], Character] | None = None,
    confirm: Callable[[str], bool] | None = None,
    reporter: Reporter | None = None,
) -> QueueItem:
    from carrier_cli.clients.instagram.service import _runtime_opener

    options = InstagramOptions.from_settings(settings)
    character = None
    if generate or request.character:
        if character_loader is None:
            from carrier_cli.character import resolve_character

            character_loader = resolve_character
        loaded = character_loader(request.character)
        # Journaled by name (not the file given to --character), which is what
        # `carrier run --client instagram --character ...` publishes by.
        request.character = loaded.name
        character = loaded if generate else None

    async def work(journal: Journal) -> QueueItem:
        return await schedule_in(
            options,
            journal,
            request,
            at=at,
            zone=zone,
            draft=draft,
            character=character,
            open_runtime=_runtime_opener(settings),
            confirm=confirm,
            reporter=reporter,
        )

    result: QueueItem = await _with(settings, work)
    return result


async def items(settings: Settings, *, every: bool = False) -> list[QueueItem]:
    result: list[QueueItem] = await _with(
        settings, lambda j: items_in(j, None if every else OPEN_STATES)
    )
    return result


async def item(settings: Settings, post_id: int) -> QueueItem:
    result: QueueItem = await _with(settings, lambda j: item_in(j, post_id))
    return result


async def decide(
    settings: Settings, post_id: int, decision: str, reason: str | None = None
) -> QueueItem:
    result: QueueItem = await _with(settings, lambda j: decide_in(j, post_id, decision, reason))
    return result


async def reschedule(
    settings: Settings, post_id: int, at: datetime, zone: when_mod.Zone
) -> QueueItem:
    result: QueueItem = await _with(settings, lambda j: reschedule_in(j, post_id, at, zone))
    return result


async def run_due(settings: Settings, *, reporter: Reporter | None = None) -> PassResult:
    """One pass of the scheduler in this process: publish what is due now."""
    options = InstagramOptions.from_settings(settings)
    check_publish_settings(options)

    async def work(journal: Journal) -> PassResult:
        return await publish_due(options, journal, reporter=reporter)

    result: PassResult = await _with(settings, work)
    return result
