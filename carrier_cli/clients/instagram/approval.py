"""Autoposting with approval, and the scheduler beside the autoposter.

With `clients.instagram.require_approval: true` a round of `carrier run --client
instagram` does not publish: the character writes the caption, the post is journaled as a
draft with what the character was asked (`carrier instagram approve ID` shows it all), and
the file moves to `drafts/` in the media folder so the next round takes the next file.
Once approved, the post is due at once and the scheduler publishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.instagram.journal import Journal
from carrier_cli.clients.instagram.pipeline import PostRequest, check_publish_settings
from carrier_cli.clients.instagram.when import local_zone
from carrier_cli.errors import InputError

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.options import InstagramOptions

log = logging.getLogger(__name__)
DRAFTS = "drafts"
Autopost = Callable[..., Awaitable[None]]


async def draft_next(
    runtime: Any,
    options: InstagramOptions,
    journal: Journal,
    path: Path,
    move_to: Callable[[Path, str], Path],
) -> str:
    """Journal `path` as a draft with a caption written by the character: `drafted`, or
    `refused` (the file moves to failed/) when the media checks refuse it. `move_to`
    (autopost.move_to) moves a file into a subfolder of its folder."""
    from carrier_cli.clients.instagram.queueing import schedule_in

    waiting = move_to(path, DRAFTS)  # recorded from where it waits, so a resume finds it
    character = runtime.character
    request = PostRequest(files=[waiting], character=character.name, fit="pad")
    try:
        item = await schedule_in(
            options,
            journal,
            request,
            at=None,
            zone=local_zone(),
            draft=True,
            character=character,
            runtime=runtime,
        )
    except InputError as exc:
        moved = move_to(waiting, "failed")
        log.error("Instagram: %s refused (%s); moved to %s", path.name, exc, moved)
        return "refused"
    log.info(
        "Instagram: %s is draft post %d, waiting for `carrier instagram approve %d`",
        path.name,
        item.entry.post_id,
        item.entry.post_id,
    )
    return "drafted"


async def with_scheduler(
    runtime: Any,
    options: InstagramOptions,
    stop_event: asyncio.Event,
    autopost: Autopost,
    *,
    interval: float | None = None,
) -> None:
    """Run `autopost` (autopost.autopost_loop) with the scheduler publishing this
    character's due posts (and those made for no character) on the same journal."""
    from carrier_cli.clients.instagram.scheduler import schedule_loop

    check_publish_settings(options)
    journal = await Journal.open(options.database_url)
    scheduler = asyncio.create_task(
        schedule_loop(
            options,
            journal,
            stop_event,
            characters=[runtime.character.name, None],
            interval=interval,
        ),
        name="instagram-scheduler",
    )
    try:
        await autopost(runtime, options, stop_event, journal=journal)
        await scheduler  # stops with stop_event
    finally:
        if not scheduler.done():
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler
        await journal.close()
