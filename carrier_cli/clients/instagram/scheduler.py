"""Publish the scheduled posts that are due: one pass (`carrier instagram queue run`) or a
loop (`carrier run --client instagram`, `carrier serve`'s background poster).

Each due post is claimed in the database (schedule.Schedule.claim_due) and published by
the same journaled pipeline as `carrier instagram post` (Publisher.resume), so a post is
published once however many processes poll. Before each claim the publishing quota is
read live from Instagram (`content_publishing_limit`); with none left nothing is claimed
and the post waits for the next pass, never counted as a failure.

A failure is retried a bounded number of times (MAX_ATTEMPTS, with a growing delay), then
the post is `failed` with its reason (`carrier instagram queue reschedule ID --at ...`
queues it again). Media that Instagram's rules refuse fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from carrier_cli.clients.instagram.graph import GraphClient, GraphError, Quota, StopRequested
from carrier_cli.clients.instagram.journal import Journal, make_owner, now
from carrier_cli.clients.instagram.pipeline import Publisher, Reporter
from carrier_cli.clients.instagram.schedule import CLAIM_STALE, Entry, Schedule
from carrier_cli.errors import CarrierError, InputError
from carrier_cli.redact import scrub

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from carrier_cli.clients.instagram.options import InstagramOptions

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
MAX_PER_PASS = 10  # due posts published by one pass; the rest wait for the next one
MAX_RETRY_DELAY = 3600.0


@dataclass
class PassResult:
    published: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    quota: Quota | None = None  # set when the quota stopped the pass

    @property
    def waiting_for_quota(self) -> bool:
        return self.quota is not None


def retry_delay(options: InstagramOptions, attempt: int) -> float:
    """60 s, 120 s, 240 s with the default 2 s back-off unit (30 units, doubling)."""
    return min(MAX_RETRY_DELAY, max(options.retry_delay, 0.01) * 30 * 2 ** (attempt - 1))


async def live_quota(options: InstagramOptions) -> Quota:
    async with GraphClient(options.graph) as graph:
        return await graph.publishing_limit()


async def publish_due(
    options: InstagramOptions,
    journal: Journal,
    *,
    characters: Iterable[str | None] | None = None,
    stop_event: asyncio.Event | None = None,
    reporter: Reporter | None = None,
    limit: int = MAX_PER_PASS,
) -> PassResult:
    """Publish up to `limit` due posts (of `characters`' posts; None: everyone's)."""
    schedule = Schedule(journal)
    result = PassResult()
    names = list(characters) if characters is not None else None
    while len(result.published) + len(result.failed) + len(result.retrying) < limit:
        if stop_event is not None and stop_event.is_set():
            break
        owner = make_owner()
        entry = await schedule.claim_due(owner, characters=names)
        if entry is None:
            break  # nothing due: no Graph call (the quota is read only for a due post)
        try:
            quota = await live_quota(options)
        except BaseException:
            await asyncio.shield(schedule.finish(entry.post_id, owner, "queued"))
            raise
        record = await journal.get(entry.post_id)
        # A post a killed process left at `publishing` may have used the last slot itself:
        # asking its container (the pipeline does) is what finishes it, not the quota.
        past_quota = record is not None and record.last_step in ("publishing", "published")
        if quota.remaining == 0 and not past_quota:
            await schedule.finish(entry.post_id, owner, "queued")
            result.quota = quota
            break
        outcome = await _publish_claimed(options, journal, entry, owner, stop_event, reporter)
        if outcome == "quota":
            result.retrying.append(entry.post_id)
            result.quota = await live_quota(options)
            break
        getattr(result, outcome).append(entry.post_id)
    return result


async def _publish_claimed(
    options: InstagramOptions,
    journal: Journal,
    entry: Entry,
    owner: str,
    stop_event: asyncio.Event | None,
    reporter: Reporter | None,
) -> str:
    """published | retrying | failed | quota (back in the queue, nothing counted)."""
    schedule = Schedule(journal)
    post_id = entry.post_id
    heartbeat = asyncio.create_task(_keep_claim(schedule, post_id, owner))
    publisher = Publisher(options, journal, reporter=reporter, stop_event=stop_event)
    try:
        outcome = await publisher.resume(post_id)
    except StopRequested:
        await schedule.finish(post_id, owner, "queued")
        log.info("Instagram: scheduled post %d stopped; it continues on the next start", post_id)
        return "retrying"
    except asyncio.CancelledError:
        await asyncio.shield(schedule.finish(post_id, owner, "queued"))
        raise
    except Exception as exc:
        return await _after_failure(options, schedule, entry, owner, exc)
    finally:
        heartbeat.cancel()
    await schedule.finish(post_id, owner, "published", reason=None)
    record = outcome.record
    log.info(
        "Instagram: scheduled post %d %s (%s)",
        post_id,
        "was already published" if outcome.already_published else "published",
        record.permalink or record.media_id,
    )
    return "published"


async def _after_failure(
    options: InstagramOptions, schedule: Schedule, entry: Entry, owner: str, exc: BaseException
) -> str:
    reason = scrub(str(exc)) or type(exc).__name__
    post_id = entry.post_id
    quota_hit = isinstance(exc, GraphError) and exc.action == "quota"
    if not quota_hit and not isinstance(exc, InputError):
        with contextlib.suppress(Exception):  # the pipeline's own quota refusal, or a race
            quota_hit = (await live_quota(options)).remaining == 0
    if quota_hit:
        await schedule.finish(post_id, owner, "queued", reason=f"waiting for the quota: {reason}")
        log.warning("Instagram: scheduled post %d waits for the publishing quota", post_id)
        return "quota"
    if isinstance(exc, GraphError) and exc.action == "stop":
        await schedule.finish(post_id, owner, "failed", reason=reason)
        raise exc
    attempts = entry.attempts + 1
    refused = isinstance(exc, InputError) or not isinstance(exc, CarrierError | OSError)
    if refused or attempts >= MAX_ATTEMPTS:
        await schedule.finish(post_id, owner, "failed", reason=reason, attempts=attempts)
        log.error("Instagram: scheduled post %d failed: %s", post_id, reason)
        return "failed"
    delay = retry_delay(options, attempts)
    await schedule.finish(
        post_id,
        owner,
        "queued",
        reason=reason,
        attempts=attempts,
        scheduled_at=now() + timedelta(seconds=delay),
    )
    log.warning(
        "Instagram: scheduled post %d failed (%s); try %d of %d in %.0f s",
        post_id,
        reason,
        attempts + 1,
        MAX_ATTEMPTS,
        delay,
    )
    return "retrying"


async def _keep_claim(schedule: Schedule, post_id: int, owner: str) -> None:
    while True:
        await asyncio.sleep(CLAIM_STALE / 4)
        try:
            await schedule.refresh(post_id, owner)
        except Exception as exc:  # the next write reports a real database problem
            log.warning("could not refresh the claim of scheduled post %d: %s", post_id, exc)


async def schedule_loop(
    options: InstagramOptions,
    journal: Journal,
    stop_event: asyncio.Event,
    *,
    characters: Iterable[str | None] | None = None,
    interval: float | None = None,
    on_published: Callable[[list[int]], Awaitable[None]] | None = None,
) -> None:
    """Publish due posts every `interval` seconds (options.queue_poll_interval) until
    stopped. Errors are logged and the loop goes on; an account Instagram restricted
    stops it until Carrier restarts, as the autoposter does. `on_published` gets the ids
    each pass published (`carrier serve` sends its webhooks and removes the uploads)."""
    names = list(characters) if characters is not None else None
    every = interval if interval is not None else options.queue_poll_interval
    quota_noted = False
    while not stop_event.is_set():
        try:
            result = await publish_due(options, journal, characters=names, stop_event=stop_event)
            if result.published and on_published is not None:
                await on_published(result.published)
            if result.quota is not None and not quota_noted:
                q = result.quota
                log.warning(
                    "Instagram: publishing limit reached (%d of %d); due posts wait for a slot",
                    q.usage,
                    q.total,
                )
            quota_noted = result.quota is not None
        except GraphError as exc:
            if exc.action == "stop":
                log.critical("Instagram: %s Scheduled posts are paused until restart.", exc)
                await stop_event.wait()
                return
            log.error("Instagram: checking the schedule failed: %s", exc)
        except CarrierError as exc:
            log.error("Instagram: checking the schedule failed: %s", exc)
        except Exception:
            log.exception("Instagram: unexpected error while checking the schedule")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=every)
