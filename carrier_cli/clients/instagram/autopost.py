"""`carrier run --client instagram`: post the character's media folder on a jittered timer.

Each round takes the oldest file in the media folder, has the character write a caption,
publishes it through the same journaled pipeline as `carrier instagram post`, and moves
the file to `posted/` (or `failed/` when Instagram's rules refuse it, so it is not retried
forever). Errors are logged and the loop keeps going; a stop request is honoured between
pipeline steps, leaving the journal where a later round continues.

On PostgreSQL several processes may run it for one account: only the one holding the
account's leadership lease (cluster.leader) posts; the others stand by and one takes over
within a few seconds of the holder's death, posting when the next post is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.instagram.graph import GraphClient, GraphError
from carrier_cli.clients.instagram.journal import Journal, now
from carrier_cli.clients.instagram.media import VIDEO_EXTENSIONS
from carrier_cli.clients.instagram.options import InstagramOptions
from carrier_cli.clients.instagram.pipeline import (
    PostRequest,
    Reporter,
    StopRequested,
    check_publish_settings,
)
from carrier_cli.clients.instagram.video_probe import INPUT_SUFFIXES
from carrier_cli.errors import CarrierError, ConfigError, InputError

if TYPE_CHECKING:
    # Only `run_instagram_client`, the `carrier.clients` entry point, takes the settings;
    # it builds `InstagramOptions` and everything below it takes those.
    from carrier_cli.config import Settings

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mpo"}
# Videos in any container Carrier converts from (MKV, WebM...: converted to MP4 first).
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | set(VIDEO_EXTENSIONS) | INPUT_SUFFIXES


def next_media(folder: Path) -> Path | None:
    """The oldest media file directly in the folder (posted/ and failed/ are skipped)."""
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS and not p.name.startswith(".")
    ]
    return min(files, key=lambda p: (p.stat().st_mtime, p.name)) if files else None


def move_to(path: Path, subfolder: str) -> Path:
    target_dir = path.parent / subfolder
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    counter = 1
    while target.exists():
        target = target_dir / f"{path.stem}-{counter}{path.suffix}"
        counter += 1
    shutil.move(str(path), target)
    return target


def jittered_interval(
    minutes: float,
    jitter_minutes: float,
    rng: random.Random | None = None,
) -> float:
    rng = rng or random.Random()
    return max(60.0, (minutes + rng.uniform(-jitter_minutes, jitter_minutes)) * 60.0)


async def _sleep_or_stop(stop_event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop_event.wait(), timeout=max(0.0, seconds))


async def post_next(
    runtime: Any,
    options: InstagramOptions,
    journal: Journal,
    folder: Path,
    stop_event: asyncio.Event | None = None,
) -> str:
    """One round; returns what happened: posted, already, empty, quota, refused, stopped,
    or drafted (clients.instagram.require_approval: waits for `carrier instagram approve`)."""
    from carrier_cli.clients.instagram import service

    path = next_media(folder)
    if path is None:
        log.info("Instagram: no media left in %s", folder)
        return "empty"
    if runtime.character.clients.instagram.require_approval:  # a draft uses no quota
        from carrier_cli.clients.instagram.approval import draft_next

        return await draft_next(runtime, options, journal, path, move_to)
    async with GraphClient(options.graph) as graph:
        quota = await graph.publishing_limit()
    if quota.remaining == 0:
        log.warning(
            "Instagram: publishing limit reached (%d of %d); skipping this round",
            quota.usage,
            quota.total,
        )
        return "quota"
    character = runtime.character
    request = PostRequest(files=[path], character=character.name, fit="pad")

    def confirm(_text: str) -> bool:
        return True

    try:
        outcome = await service.publish(
            options,
            request,
            generate=True,
            confirm=confirm,
            reporter=Reporter(),
            journal=journal,
            runtime=runtime,
            stop_event=stop_event,
        )
    except StopRequested:
        return "stopped"
    except ConfigError:
        raise  # a setting, not the file: keep the file for when it is fixed
    except (InputError, GraphError) as exc:
        if isinstance(exc, GraphError) and exc.action != "fix_input":
            raise
        moved = move_to(path, "failed")
        log.error("Instagram: %s refused (%s); moved to %s", path.name, exc, moved)
        return "refused"
    assert not isinstance(outcome, service.DryRun)
    moved = move_to(path, "posted")
    record = outcome.record
    log.info(
        "Instagram: %s %s as post %d (%s); moved to %s",
        path.name,
        "was already published" if outcome.already_published else "published",
        record.id,
        record.permalink or record.media_id,
        moved,
    )
    return "already" if outcome.already_published else "posted"


async def autopost_loop(
    runtime: Any,
    options: InstagramOptions,
    stop_event: asyncio.Event,
    *,
    interval: float | None = None,
    journal: Journal | None = None,
) -> None:
    """Post until stopped. `interval` (seconds) overrides the character's timing (tests).
    On PostgreSQL only while this process leads the account (`_lead`)."""
    character = runtime.character
    folder = character.media_folder_path()
    if folder is None or not folder.is_dir():
        raise ConfigError(
            f"Character {character.name}: clients.instagram.media_folder "
            f"{'is not set' if folder is None else f'({folder}) is not a directory'}.",
            hint="Point media_folder at a folder of images to post (relative paths are "
            "relative to the character file).",
        )
    check_publish_settings(options)
    own_journal = journal is None
    journal = journal or await Journal.open(options.database_url)
    try:
        shared = journal.engine.dialect.name == "postgresql"  # other processes may post
        while not stop_event.is_set():
            lease = await _lead(journal, options, stop_event) if shared else None
            if shared and lease is None:
                return  # stopped while standing by
            try:
                await _post_while_leading(
                    runtime, journal, options, folder, stop_event, lease, interval
                )
            finally:
                if lease is not None:
                    await lease.release()
            if not shared:
                return
    finally:
        if own_journal:
            await journal.close()


async def _lead(journal: Journal, options: InstagramOptions, stop_event: asyncio.Event) -> Any:
    """On PostgreSQL, wait until this process is the account's one autoposter (a
    cluster.leader lease keyed by the account id; None once stopped). Several `carrier
    run --client instagram` on one database then post in turn, never side by side: the
    journal makes a post exactly-once anyway, but two posters would each take the next
    file and post twice as often. A standby takes over within `leader.RETRY` seconds of the
    holder's death and posts when the next post is due (the last post + the interval).
    """
    from carrier_cli.cluster.advisory import advisory_key
    from carrier_cli.cluster.leader import acquire

    account = options.graph.account_id or ""
    key = advisory_key("carrier.instagram.autopost", account)
    return await acquire(
        journal.engine, key, stop_event, what=f"The Instagram autoposter of account {account}"
    )


async def _post_while_leading(
    runtime: Any,
    journal: Journal,
    options: InstagramOptions,
    folder: Path,
    stop_event: asyncio.Event,
    lease: Any,
    interval: float | None,
) -> None:
    """Rounds until stopped or the lease is lost, the first one when the next post is due."""
    character = runtime.character
    config = character.clients.instagram
    last = await journal.last_published(character.name)
    if last is not None and interval is None:
        wait = (last + timedelta(minutes=config.post_interval_minutes) - now()).total_seconds()
        if wait > 0:
            log.info("Instagram: last post %s ago; next in %.0f s", now() - last, wait)
            await _sleep_or_stop(stop_event, wait)
    while not stop_event.is_set():
        if lease is not None and lease.lost:
            return  # lead again (or stand by) before the next round
        try:
            await post_next(runtime, options, journal, folder, stop_event)
        except GraphError as exc:
            if exc.action == "stop":
                log.critical(
                    "Instagram: %s Autoposting for %s is paused until Carrier restarts.",
                    exc,
                    character.name,
                )
                await stop_event.wait()
                return
            log.error("Instagram: this round failed: %s", exc)
        except CarrierError as exc:
            log.error("Instagram: this round failed: %s", exc)
        except Exception:
            log.exception("Instagram: unexpected error in this round")
        delay = (
            interval
            if interval is not None
            else jittered_interval(config.post_interval_minutes, config.interval_jitter_minutes)
        )
        await _sleep_or_stop(stop_event, delay)


async def run_instagram_client(runtime: Any, settings: Settings, stop_event: asyncio.Event) -> None:
    """Entry point registered in carrier_cli/cli/run.py: the autoposter, and beside it the
    publisher of this character's scheduled and approved posts (scheduler.py)."""
    if not runtime.character.clients.instagram.enabled:
        log.info("Instagram is disabled for %s (clients.instagram.enabled)", runtime.character.name)
        await stop_event.wait()
        return
    from carrier_cli.clients.instagram.accounts import for_character

    # The character's own account (instagram:NAME, accounts.py) posts, schedules, answers.
    options = for_character(InstagramOptions.from_settings(settings), runtime.character)
    config = runtime.character.clients.instagram
    if config.reply_to_comments and config.media_folder is None:
        # Only answers comments: no autoposts, and nothing to publish that needs FTP.
        await _with_comment_replies(runtime, settings, stop_event, None)
        return
    from carrier_cli.clients.instagram.approval import with_scheduler

    async def autopost_and_replies(
        runtime: Any, options: InstagramOptions, stop_event: asyncio.Event, *, journal: Any
    ) -> None:
        autopost = autopost_loop(runtime, options, stop_event, journal=journal)
        await _with_comment_replies(runtime, settings, stop_event, autopost)

    await with_scheduler(runtime, options, stop_event, autopost_and_replies)


async def _with_comment_replies(
    runtime: Any, settings: Settings, stop_event: asyncio.Event, autopost: Any
) -> None:
    """The autoposter, and beside it the comment replier when the character answers
    comments (clients.instagram.reply_to_comments); `autopost` None (a character that only
    answers, without media_folder) runs the replier alone."""
    config = runtime.character.clients.instagram
    if not config.reply_to_comments:
        await autopost
        return
    from dataclasses import replace

    from carrier_cli.clients.instagram.accounts import character_graph
    from carrier_cli.clients.instagram.comment_replies import run_comment_replies
    from carrier_cli.clients.instagram.options import CommentOptions

    comment_options = CommentOptions.from_settings(settings)
    # The character's own account (accounts.py) answers the comments on its own posts.
    comment_options = replace(
        comment_options, graph=character_graph(comment_options.graph, runtime.character)
    )
    replies = run_comment_replies(runtime, comment_options, stop_event)
    if autopost is None:
        await replies
        return
    tasks = [asyncio.ensure_future(autopost), asyncio.ensure_future(replies)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # the first failure, as the supervisor expects it (not a group)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
