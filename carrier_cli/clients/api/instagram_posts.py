"""The Instagram posts `carrier serve` accepted, published in the background by the server.

A request journals its post (the same journal and pipeline as `carrier instagram post`)
and answers 202 with the journal id at once; publishing (FTP upload, containers,
processing, media_publish) can take minutes, so it runs in a task the server owns. At most
`workers` posts publish at once; beyond that they wait for a slot, and beyond `capacity`
accepted-and-unfinished posts a new one is refused (503 with Retry-After) instead of
queueing without bound.

Posts are journaled with `origin: api`. On stop the tasks are asked to stop between steps
(the journal keeps the last completed step) and cancelled after the grace period (the
pipeline marks those `failed: interrupted`); the next start resumes every API post that is
unfinished or was interrupted, as `carrier instagram resume ID` would. A post that failed
for a reason (Graph refused it, the FTP server did not answer) stays failed with its error
for GET to show; `carrier instagram resume ID` retries it.

Files uploaded with the request live in `<data dir>/api-uploads/instagram` until their post
is published, then are deleted with their converted copies (a failed post keeps them, so a
resume can continue). Each finished post calls the listeners with
(`instagram.published` | `instagram.failed`, data); the first is the webhook outbox's.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.api.errors import ApiError
from carrier_cli.clients.instagram.graph import StopRequested
from carrier_cli.clients.instagram.journal import Journal, PostRecord, _owner_is_dead
from carrier_cli.clients.instagram.pipeline import (
    PostRequest,
    Publisher,
    check_publish_settings,
    idempotency_key,
    prepare,
    prepared_dir,
)
from carrier_cli.clients.instagram.schedule import Schedule
from carrier_cli.errors import ConfigError
from carrier_cli.redact import scrub

if TYPE_CHECKING:
    from datetime import datetime

    from carrier_cli.clients.instagram.options import InstagramOptions
    from carrier_cli.clients.instagram.queueing import QueueItem
    from carrier_cli.clients.instagram.when import Zone

log = logging.getLogger("carrier.api.instagram")

# (event type, data): may return an awaitable (e.g. the webhook outbox's enqueue).
Listener = Callable[[str, dict[str, Any]], Any]
ORIGIN = "api"
SETTINGS_HINT = (
    "Set INSTAGRAM_ACCESS_TOKEN, INSTAGRAM_ACCOUNT_ID, FTP_SERVER, FTP_USERNAME, FTP_PASSWORD "
    "and HTTP_SERVER for the server (see `carrier config show` and the README section "
    "'Post to Instagram'), then restart `carrier serve`."
)
RETRY_AFTER = 30  # seconds, when every slot is taken
_STALE_PART = 3600.0  # an interrupted upload's .part file older than this is removed


def not_configured(exc: ConfigError | None = None) -> ApiError:
    detail = f" {exc.message}" if exc is not None else ""
    return ApiError(
        503,
        "not_configured",
        f"Instagram publishing is not configured on this server.{detail}",
        hint=SETTINGS_HINT,
    )


def uploads_dir() -> Path:
    from carrier_cli.paths import carrier_paths

    return carrier_paths().data_dir / "api-uploads" / "instagram"


@dataclass
class InstagramPoster:
    options: InstagramOptions
    journal: Journal
    workers: int = 2
    capacity: int = 16  # accepted and unfinished in this server, queued or publishing
    grace: float = 10.0
    listeners: list[Listener] = field(default_factory=list)
    directory: Path = field(default_factory=uploads_dir)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.workers)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._queued: set[int] = set()
        self._reserved = 0
        self._stop = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None

    # -- configuration ---------------------------------------------------------------
    def check_configured(self) -> None:
        """503 not_configured, naming the missing setting, before anything is stored."""
        try:
            check_publish_settings(self.options)
        except ConfigError as exc:
            raise not_configured(exc) from None

    # -- accepting posts ---------------------------------------------------------------
    @contextlib.contextmanager
    def reservation(self) -> Iterator[None]:
        """A slot for one post while its request is read and journaled; 503 when all are
        taken, so a burst is refused before its uploads are read."""
        if self._stop.is_set():
            raise ApiError(
                503,
                "unavailable",
                "The server is stopping.",
                hint="Send the post again in a moment.",
                headers={"Retry-After": "5"},
            )
        if len(self._tasks) + self._reserved >= self.capacity:
            raise ApiError(
                503,
                "busy",
                f"{self.capacity} Instagram posts are already queued or publishing on this server.",
                hint=f"Try again in {RETRY_AFTER} s; GET /v1/instagram/posts/ID shows progress.",
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1

    async def submit(
        self, request: PostRequest, *, runtime: Any | None = None
    ) -> tuple[PostRecord, bool]:
        """Check and convert the media, journal the post and start publishing it.
        Returns (record, created); an existing row (the same media and caption) is
        continued if unfinished, or returned as it is when published. `runtime`: the
        character's, to write the caption when `request.caption_key` asks for one."""
        request.origin = ORIGIN
        prepared = await asyncio.to_thread(prepare, request)
        publisher = Publisher(self.options, self.journal)
        if runtime is not None and request.caption_key:
            await self._write_caption(request, prepared, publisher, runtime)
        record, created = await publisher.begin(request, prepared)
        if not record.published:
            self.start(record.id)
        return record, created

    async def schedule(
        self,
        request: PostRequest,
        *,
        at: datetime | None,
        zone: Zone,
        draft: bool,
        runtime: Any | None = None,
    ) -> QueueItem:
        """Check and convert the media now, journal the post and put it on the schedule
        (`queued` for `at`, or a `draft` waiting for approval), as `carrier instagram post
        --at/--draft` does; the scheduler publishes it when due. Its uploads stay until
        then (`_published` removes them)."""
        from carrier_cli.clients.instagram.queueing import schedule_in

        request.origin = ORIGIN
        prepared = await asyncio.to_thread(prepare, request)
        return await schedule_in(
            self.options,
            self.journal,
            request,
            at=at,
            zone=zone,
            draft=draft,
            character=runtime.character if runtime is not None else None,
            runtime=runtime,
            prepared=prepared,
        )

    async def _write_caption(
        self, request: PostRequest, prepared: Any, publisher: Publisher, runtime: Any
    ) -> None:
        from carrier_cli.clients.instagram.service import write_caption

        media, kind = prepared
        assert request.caption_key is not None
        existing = await self.journal.by_key(idempotency_key(kind, media, request.caption_key))
        if existing is not None and not request.force:
            request.caption = existing.caption  # the post continues with its caption
            return
        request.caption = await write_caption(runtime.character, kind, request.files, runtime)

    def start(self, post_id: int) -> None:
        if post_id in self._tasks:
            return  # already queued or publishing here
        self._queued.add(post_id)
        task = asyncio.create_task(self._publish(post_id), name=f"instagram-post-{post_id}")
        self._tasks[post_id] = task

    def queued(self, post_id: int) -> bool:
        return post_id in self._queued

    def active(self, post_id: int) -> bool:
        return post_id in self._tasks

    # -- publishing ----------------------------------------------------------------------
    async def _publish(self, post_id: int) -> None:
        try:
            async with self._slots:
                self._queued.discard(post_id)
                if self._stop.is_set():
                    return
                publisher = Publisher(self.options, self.journal, stop_event=self._stop)
                try:
                    outcome = await publisher.resume(post_id)
                except StopRequested:
                    log.info("Instagram post %d stopped; it resumes on the next start.", post_id)
                    return
                except Exception as exc:  # CarrierError or not: journaled by the pipeline
                    log.warning("Instagram post %d failed: %s", post_id, scrub(str(exc)))
                    record = await self.journal.get(post_id)
                    await self._emit("instagram.failed", event_data(record, post_id, exc))
                    return
                record = outcome.record
                self._remove_uploads(record)
                if not outcome.already_published:
                    await self._emit("instagram.published", event_data(record, post_id))
        except asyncio.CancelledError:
            raise
        except Exception:  # the journal itself failed: logged, the row shows what it can
            log.exception("Instagram post %d: the background task failed", post_id)
        finally:
            self._queued.discard(post_id)
            self._tasks.pop(post_id, None)

    async def _emit(self, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                result = listener(kind, data)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("an %s listener failed", kind)

    def _remove_uploads(self, record: PostRecord) -> None:
        """Delete what the API stored for a published post: the uploaded originals (never a
        file the admin named by path) and their converted copies."""
        from carrier_cli.clients.api.uploads import remove_upload

        ours = self.directory.resolve()
        for item in record.items:
            source = Path(item["source"])
            folder = source.parent.resolve()
            if folder == ours:  # stored before uploads had a folder each
                with contextlib.suppress(OSError):
                    source.unlink()
            elif folder.parent == ours:
                remove_upload(source)
            else:
                continue  # a file the admin named by path
            converted = Path(item.get("path") or "")
            if converted != source and converted.parent.resolve() == prepared_dir().resolve():
                with contextlib.suppress(OSError):
                    converted.unlink()

    # -- server lifetime ---------------------------------------------------------------
    async def resume_interrupted(self) -> list[int]:
        """Start every API post a previous run left unfinished (the ids started)."""
        try:
            check_publish_settings(self.options)
        except ConfigError:
            return []
        self.start_scheduler()
        self._sweep_parts()
        started = []
        try:
            records = await self.journal.history(limit=1000)
            scheduled = await Schedule(self.journal).for_posts(r.id for r in records)
        except Exception as exc:  # the API still serves; the posts wait for the next start
            log.warning("Could not read the Instagram journal to resume posts: %s", exc)
            return []
        for record in records:
            if record.options.get("origin") != ORIGIN or record.published:
                continue
            if record.status == "failed" and record.error != "interrupted":
                continue  # failed for a reason: GET shows it; resume it by hand
            if _lease_alive(record):
                continue  # another live process is publishing it
            if record.id in scheduled:
                continue  # the scheduler publishes it when it is due (or approved)
            self.start(record.id)
            started.append(record.id)
        if started:
            log.info("Resuming interrupted Instagram posts: %s", ", ".join(map(str, started)))
        return started

    def start_scheduler(self) -> None:
        """Publish the scheduled and approved posts when due (every character's), through
        the same journal and claims as `carrier run --client instagram` (scheduler.py)."""
        from carrier_cli.clients.instagram.scheduler import schedule_loop

        if self._scheduler is None:
            self._scheduler = asyncio.create_task(
                schedule_loop(self.options, self.journal, self._stop, on_published=self._published),
                name="instagram-scheduler",
            )

    async def _published(self, post_ids: list[int]) -> None:
        """What the scheduler published: the API's uploads of those posts removed, and
        `instagram.published` sent, as for a post published at once."""
        for post_id in post_ids:
            record = await self.journal.get(post_id)
            if record is None:
                continue
            self._remove_uploads(record)  # only files in the API's uploads folder
            await self._emit("instagram.published", event_data(record, post_id))

    def _sweep_parts(self) -> None:
        if not self.directory.is_dir():
            return
        cutoff = time.time() - _STALE_PART
        for part in self.directory.glob("*.part"):
            with contextlib.suppress(OSError):
                if part.stat().st_mtime < cutoff:
                    part.unlink()

    async def stop(self) -> None:
        """Ask every post to stop between steps; cancel what is still running after
        `grace` seconds (the pipeline journals those as interrupted)."""
        self._stop.set()
        tasks = list(self._tasks.values())
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _lease_alive(record: PostRecord) -> bool:
    if not record.lease_owner:
        return False
    if (record.lease_expires or 0) <= time.time():
        return False
    return not _owner_is_dead(record.lease_owner)


def event_data(
    record: PostRecord | None, post_id: int, error: BaseException | None = None
) -> dict[str, Any]:
    """The data of an instagram.published / instagram.failed event."""
    data: dict[str, Any] = {"post_id": post_id}
    if record is not None:
        data.update(
            kind=record.kind,
            status=record.status,
            step=record.last_step,
            character=record.character,
            media_id=record.media_id,
            permalink=record.permalink,
            error=scrub(record.error) if record.error else None,
            attempts=record.attempts,
        )
    if error is not None and not data.get("error"):
        data["error"] = scrub(str(error))
    return data


def webhook_listener(store: Any) -> Listener:
    """instagram.* events into the webhook outbox (nothing when no webhook is configured:
    the webhook service sets the store's outbox policy). The event id is the post and its
    attempt: a repeat enqueues nothing, a later attempt's failure is a new event."""

    async def enqueue(kind: str, data: dict[str, Any]) -> None:
        from carrier_cli.webhooks.policy import publish

        event_id = f"instagram-post:{data['post_id']}:{data.get('attempts', 0)}"
        await publish(store, kind, data, event_id=event_id)

    return enqueue


async def open_poster(
    settings: Any, store: Any, *, listeners: list[Listener] | None = None
) -> InstagramPoster:
    """The server's poster over the store's database (one connection pool for both),
    publishing its events to the webhooks, and to `listeners`."""
    from carrier_cli.clients.instagram.options import InstagramOptions

    journal = Journal(store.engine, owns_engine=False)
    return InstagramPoster(
        InstagramOptions.from_settings(settings),
        journal,
        grace=float(settings.shutdown_grace),
        listeners=[webhook_listener(store), *(listeners or [])],
    )
