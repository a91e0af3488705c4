"""The publishing pipeline: one journaled step at a time, resumable from any of them.

Each step records its result in the journal before the next begins, so a crash or a
rerun continues from the last completed step instead of starting over. The one step
that cannot be made idempotent on Instagram's side, `media_publish`, is preceded by a
`publishing` mark: a rerun that finds it asks the container whether it was already
published before publishing again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.instagram import accounts, publish_options
from carrier_cli.clients.instagram import media as media_mod
from carrier_cli.clients.instagram.ftp_upload import FtpConfig, Progress, delete_file, upload_file
from carrier_cli.clients.instagram.graph import GraphClient, GraphError, Quota, StopRequested
from carrier_cli.clients.instagram.http_check import check_public_url, public_url
from carrier_cli.clients.instagram.journal import (
    Journal,
    LeaseLost,
    PostRecord,
    crash_point,
    make_owner,
    now,
)
from carrier_cli.errors import CarrierError, ConfigError, InputError, RuntimeFailure
from carrier_cli.metrics import active as active_metrics
from carrier_cli.paths import carrier_paths

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.options import InstagramOptions

log = logging.getLogger(__name__)
# One pipeline step: (record, lease owner, Graph client) -> the record after the step.
Step = Callable[[PostRecord, str, GraphClient], Awaitable[PostRecord]]


@dataclass
class PostRequest:
    files: list[Path]
    caption: str = ""
    alt_text: str | None = None
    story: bool = False
    fit: media_mod.Fit | None = None
    force: bool = False
    cleanup: bool = False
    character: str | None = None
    # What identifies the caption in the idempotency key. A generated caption differs on
    # every run, so it is keyed by "generated:<character>" instead of its text.
    caption_key: str | None = None
    # Who asked for the post ("api" for `POST /v1/instagram/posts`), journaled with its
    # options so a restarted server resumes its own posts and no one else's.
    origin: str | None = None
    # --collaborator, --user-tag, --location-id, --cover, ... (publish_options.py).
    publish: publish_options.PublishOptions = field(default_factory=publish_options.PublishOptions)
    transcode: bool = True  # False (--no-transcode): refuse an out-of-spec video instead


@dataclass
class PostOutcome:
    record: PostRecord
    already_published: bool = False
    notes: list[str] = field(default_factory=list)


class Reporter:
    """How the pipeline tells a person what it does; the base class stays silent."""

    def info(self, message: str) -> None:
        log.info("%s", message)

    def upload_progress(self, name: str, total: int) -> Progress | None:
        return None

    def upload_done(self) -> None:
        return None

    def transcode_progress(self, name: str, seconds: float) -> Callable[[float], None] | None:
        """A callback for the seconds of video converted so far (None: no display)."""
        return None

    def transcode_done(self) -> None:
        return None


def prepared_dir() -> Path:
    return carrier_paths().cache_dir / "instagram" / "prepared"


def idempotency_key(
    kind: str, media: list[media_mod.PreparedMedia], caption_key: str, options_key: str = ""
) -> str:
    """The post's identity: kind, media contents, caption and (when any were given) the
    publishing options, so a post without options keeps the key it always had."""
    digest = hashlib.sha256(f"v1|{kind}|".encode())
    for item in media:
        digest.update(item.source_sha256.encode() + b"|")
    digest.update(caption_key.encode())
    if options_key:
        digest.update(b"|options:" + options_key.encode())
    return digest.hexdigest()


def _key(
    request: PostRequest,
    kind: str,
    media: list[media_mod.PreparedMedia],
    account_key: str | None = None,
) -> str:
    """The same media posted to a character's own account (accounts.py) is another post."""
    options_key = request.publish.key_text()
    if account_key:
        options_key += f"|account:{account_key}"
    return idempotency_key(kind, media, request.caption_key or request.caption, options_key)


def prepare(
    request: PostRequest, reporter: Reporter | None = None
) -> tuple[list[media_mod.PreparedMedia], media_mod.PostKind]:
    """Validate and convert locally (no network): the whole of --dry-run. Videos out of
    Instagram's spec are converted here (unless request.transcode is False); a Reel's
    cover image is prepared like an image and comes last, with role "cover"."""
    prepared = media_mod.prepare_all(
        request.files,
        fit=request.fit,
        story=request.story,
        out_dir=prepared_dir(),
        transcode=request.transcode,
        reporter=reporter,
    )
    kind = media_mod.post_kind(prepared, story=request.story)
    options = request.publish
    publish_options.check_for(options, kind, prepared[0].duration if kind == "reel" else None)
    if options.cover is not None:
        prepared.append(_prepare_cover(options.cover, options.flag("cover")))
    if reporter is not None:  # what was changed, and why: a converted clip says so
        for item in prepared:
            for note in item.notes:
                reporter.info(f"{item.source.name}: {note}")
    return prepared, kind


def _prepare_cover(path: Path, flag: str = "--cover") -> media_mod.PreparedMedia:
    """A Reel's cover: a JPEG like any image, in any aspect ratio (Meta crops it to 9:16
    in the Reels tab and to 1:1 in the profile grid)."""
    from dataclasses import replace

    try:
        cover = media_mod.prepare_image(path, fit=None, story=True, out_dir=prepared_dir())
    except InputError as exc:
        raise InputError(f"{flag}: {exc.message}", hint=exc.hint) from None
    return replace(cover, role="cover")


def _item(m: media_mod.PreparedMedia) -> dict[str, Any]:
    return {
        "source": str(m.source.resolve()),
        "path": str(m.path),
        "sha256": m.sha256,
        "source_sha256": m.source_sha256,
        "size": m.size,
        "kind": m.kind,
        "content_type": m.content_type,
        "remote_name": m.remote_name,
        "url": None,
        "container_id": None,
        **({"role": m.role} if m.role != "media" else {}),
    }


def free_slot_time(published: list[datetime], quota: Quota, at: datetime) -> datetime | None:
    """When the rolling window next frees a slot, judging by the posts Carrier made."""
    window = timedelta(seconds=quota.duration)
    recent = sorted(p for p in published if p > at - window)
    if not recent:
        return None
    excess = len(recent) - quota.total  # posts made elsewhere are invisible to us
    index = max(0, min(len(recent) - 1, excess))
    return recent[index] + window


def check_publish_settings(options: InstagramOptions, *, ftp: bool | None = None) -> None:
    """Refuse early, before anything is journaled, when a needed setting is missing.

    `ftp`: whether the FTP and HTTP settings are needed (None: unless Reels go through
    Meta's resumable upload, where only images, covers and stories need them; `_upload`
    checks again with the post's own files)."""
    GraphClient(options.graph)  # names INSTAGRAM_ACCESS_TOKEN / INSTAGRAM_ACCOUNT_ID
    if ftp is None:
        ftp = options.reel_upload != "resumable"
    if not ftp:
        return
    FtpConfig.from_options(options.ftp)
    if not options.http_server:
        raise ConfigError(
            "HTTP_SERVER is not set: Instagram downloads media from a public URL, so "
            "Carrier needs the address where FTP_DIRECTORY is served.",
            hint="Set HTTP_SERVER, e.g. https://media.example.com/instagram/.",
        )
    if not options.http_server.startswith(("http://", "https://")):
        raise ConfigError(
            f"HTTP_SERVER `{options.http_server}` must start with https:// (or http://)."
        )


class Publisher:
    def __init__(
        self,
        options: InstagramOptions,
        journal: Journal,
        *,
        reporter: Reporter | None = None,
        lease_wait: float = 600.0,
        stop_event: asyncio.Event | None = None,
    ) -> None:
        self.stop_event = stop_event
        self.options = options
        self.journal = journal
        self.reporter = reporter or Reporter()
        self.lease_wait = lease_wait

    # -- entry points ------------------------------------------------------------------
    async def lookup(
        self, request: PostRequest, prepared: list[media_mod.PreparedMedia], kind: str
    ) -> PostRecord | None:
        if request.force:
            return None
        return await self.journal.by_key(
            _key(request, kind, prepared, self.options.graph.account_key)
        )

    async def post(
        self,
        request: PostRequest,
        prepared: tuple[list[media_mod.PreparedMedia], media_mod.PostKind] | None = None,
    ) -> PostOutcome:
        return await _counted(self._post(request, prepared))

    async def resume(self, post_id: int) -> PostOutcome:
        return await _counted(self._resume(post_id))

    async def _post(
        self,
        request: PostRequest,
        prepared: tuple[list[media_mod.PreparedMedia], media_mod.PostKind] | None,
    ) -> PostOutcome:
        record, created = await self.begin(request, prepared)
        if not created and record.published and not self._cleanup_pending(record):
            return PostOutcome(record, already_published=True)
        if not created:
            self.reporter.info(f"Continuing post {record.id} from step '{record.last_step}'.")
        return await self._drive(record)

    async def begin(
        self,
        request: PostRequest,
        prepared: tuple[list[media_mod.PreparedMedia], media_mod.PostKind] | None = None,
    ) -> tuple[PostRecord, bool]:
        """Journal the post without publishing it: its row, found by idempotency key or
        created (True) at step `prepared`. The API answers with the row's id at once and
        publishes later with `resume(id)`; `post` is `begin` and then the steps."""
        if prepared is None:
            prepared = await asyncio.to_thread(prepare, request, self.reporter)
        media, kind = prepared
        key = _key(request, kind, media, self.options.graph.account_key)
        if request.force:
            key = f"{key}+{await self.journal.count_with_prefix(key)}"
        post_options: dict[str, Any] = {  # the request's choices, journaled with the post
            "story": request.story,
            "fit": request.fit,
            "cleanup": request.cleanup,
            "alt_text": request.alt_text,
        }
        if request.origin:
            post_options["origin"] = request.origin
        if not request.publish.empty:
            post_options["publish"] = request.publish.to_journal()
        if not request.transcode:
            post_options["transcode"] = False
        if (account := accounts.journal_entry(self.options.graph)) is not None:
            post_options["account"] = account
        record, created = await self.journal.find_or_create(
            key,
            kind=kind,
            caption=request.caption,
            items=[_item(m) for m in media],
            options=post_options,
            character=request.character,
        )
        if created:
            self.reporter.info(f"Journal: post {record.id} ({kind}, {len(media)} file(s)).")
            crash_point("prepared")
        return record, created

    async def _resume(self, post_id: int) -> PostOutcome:
        record = await self.journal.require(post_id)
        if record.published and not self._cleanup_pending(record):
            return PostOutcome(record, already_published=True)
        if not record.published:
            self.reporter.info(f"Resuming post {record.id} from step '{record.last_step}'.")
        return await self._drive(record)

    # -- lease handling ----------------------------------------------------------------
    async def _drive(self, record: PostRecord) -> PostOutcome:
        from carrier_cli.clients.instagram.schedule import ensure_publishable

        await ensure_publishable(self.journal, record.id)  # not a draft, rejected, cancelled
        owner = make_owner()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease_wait
        announced = False
        while not await self.journal.claim(record.id, owner):
            if loop.time() > deadline:
                raise RuntimeFailure(
                    f"Post {record.id} is being published by another process "
                    f"({record.lease_owner}).",
                    hint="Wait for it to finish; `carrier instagram status "
                    f"{record.id}` shows its progress.",
                )
            if not announced:
                self.reporter.info(
                    f"Post {record.id} is being published by another process; waiting for it."
                )
                announced = True
            await asyncio.sleep(0.25)
            record = await self.journal.require(record.id)
            if record.published:
                return PostOutcome(record, already_published=True)
        heartbeat = asyncio.create_task(self._keep_lease(record.id, owner))
        try:
            record = await self.journal.require(record.id)
            if record.published:
                if self._cleanup_pending(record):  # a run that died right after publishing
                    record = await self._after_publish(record, owner)
                return PostOutcome(record, already_published=True)
            record = await self._run(record, owner)
            return PostOutcome(record)
        except StopRequested:
            raise
        except LeaseLost as exc:
            raise RuntimeFailure(f"Post {record.id}: {exc}; stopped without publishing.") from None
        except CarrierError as exc:
            await self.journal.fail(record.id, owner, str(exc))
            raise
        except asyncio.CancelledError:
            await asyncio.shield(self.journal.fail(record.id, owner, "interrupted"))
            raise
        except Exception as exc:
            await self.journal.fail(record.id, owner, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            heartbeat.cancel()
            await asyncio.shield(self.journal.release(record.id, owner))

    async def _keep_lease(self, post_id: int, owner: str) -> None:
        """Renew the lease during long waits (container processing, quota back-off), so that
        another process never takes over a post that is still alive."""
        from carrier_cli.clients.instagram.journal import LEASE_SECONDS

        while True:
            await asyncio.sleep(LEASE_SECONDS / 4)
            try:
                await self.journal.renew(post_id, owner)
            except Exception as exc:  # the next journal write reports a real problem
                log.warning("could not renew the lease of post %d: %s", post_id, exc)

    # -- the steps ---------------------------------------------------------------------
    def _steps(self) -> dict[str, Step]:
        """The step a post last completed (its journal's `last_step`) -> the method that
        performs the next one, in pipeline order. Each method records its own step in the
        journal before it returns, which is what makes a rerun resume where it stopped."""
        return {
            "prepared": self._upload,
            "uploaded": self._create_containers,
            "container_created": self._wait_container,
            "container_finished": self._publish,
            "publishing": self._finish_publishing,
        }

    async def _run(self, record: PostRecord, owner: str) -> PostRecord:
        recreated = 0
        graph_options = accounts.graph_for_record(self.options.graph, record.options.get("account"))
        async with GraphClient(graph_options) as graph:
            while record.last_step != "published":
                if self.stop_event is not None and self.stop_event.is_set():
                    raise StopRequested(f"stopped before step after '{record.last_step}'")
                step = record.last_step
                try:
                    next_step = self._steps().get(step)
                    if next_step is None:
                        raise RuntimeFailure(f"Post {record.id} has an unknown step '{step}'.")
                    record = await next_step(record, owner, graph)
                except GraphError as exc:
                    if exc.action != "recreate" or recreated >= 2:
                        raise
                    recreated += 1
                    self.reporter.info(f"Container gone ({exc.raw_message}); creating it again.")
                    record = await self._reset_containers(record, owner)
            record = await self._after_publish(record, owner)
        return record

    async def _check_quota(self, graph: GraphClient, record: PostRecord) -> Quota:
        quota = await graph.publishing_limit()
        if quota.remaining > 0:
            return quota
        at = now()
        published = await self.journal.published_since(at - timedelta(seconds=quota.duration))
        frees = free_slot_time(published, quota, at)
        if frees is None:
            when = (
                f"within {quota.duration / 3600:.0f} h at the latest (the posts in the "
                "window were not made by Carrier)"
            )
        else:
            when = f"at {frees.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
            if quota.usage > len(published):  # some posts were made elsewhere: maybe sooner
                when += " at the latest"
        raise RuntimeFailure(
            f"Instagram publishing limit reached: {quota.usage} of {quota.total} posts used in "
            f"the last {quota.duration / 3600:.0f} h. The next slot frees {when}.",
            hint=f"Nothing was published. Run `carrier instagram resume {record.id}` then; "
            "it continues from the last completed step.",
        )

    def _resumable(self, record: PostRecord, item: dict[str, Any]) -> bool:
        """This item goes to Meta's rupload host: a Reel's video when the setting says so
        (or when its resumable upload already began, whatever the setting says now)."""
        if item.get("upload_uri"):
            return True
        return (
            self.options.reel_upload == "resumable"
            and record.kind == "reel"
            and item["kind"] == "video"
        )

    async def _upload(self, record: PostRecord, owner: str, graph: GraphClient) -> PostRecord:
        await self._check_quota(graph, record)
        items = record.items
        by_ftp = [not i.get("url") and not self._resumable(record, i) for i in items]
        check_publish_settings(self.options, ftp=any(by_ftp))
        # The cover first: a resumable container is created with its cover_url.
        order = sorted(range(len(items)), key=lambda i: items[i].get("role") != "cover")
        for index in order:
            item = items[index]
            if item.get("url") or item.get("uploaded"):
                continue
            if not by_ftp[index]:
                record = await self._upload_resumable(record, owner, graph, index)
                items = record.items
                continue
            http_server = self.options.http_server
            assert http_server
            config = FtpConfig.from_options(self.options.ftp)
            path = self._ensure_prepared(record, item)
            progress = self.reporter.upload_progress(Path(item["source"]).name, item["size"])
            try:
                result = await upload_file(
                    config,
                    path,
                    item["remote_name"],
                    progress=progress,
                    backoff=self.options.retry_delay,
                )
            finally:
                self.reporter.upload_done()
            url = public_url(http_server, item["remote_name"])
            kind = "video" if item["kind"] == "video" else "image"
            await check_public_url(
                url,
                expected_size=item["size"],
                kind=kind,
                backoff=self.options.retry_delay,
            )
            item.update(url=url, remote_path=result.remote_path)
            items[index] = item
            record = await self.journal.update(record.id, owner, items=items)
            self.reporter.info(
                f"Uploaded {Path(item['source']).name} → {url}"
                + (f" (resumed at byte {result.resumed_from})" if result.resumed_from else "")
            )
        return await self.journal.record_step(record.id, owner, "uploaded", items=items)

    async def _upload_resumable(
        self, record: PostRecord, owner: str, graph: GraphClient, index: int
    ) -> PostRecord:
        """Create the Reel's container with upload_type=resumable (journaled with its
        upload URI before any byte is sent), then send the file to that URI."""
        from carrier_cli.clients.instagram import rupload

        items = record.items
        item = items[index]
        if not item.get("container_id"):
            params = self._container_params(record, item, child=False)
            params.pop("video_url", None)
            params["upload_type"] = "resumable"
            body = await graph.request(
                "POST", f"{graph.account_id}/media", params, what="Creating the Reel container"
            )
            if not body.get("id") or not body.get("uri"):
                raise RuntimeFailure(
                    f"Creating the Reel container: the answer has no id and upload uri ({body}).",
                    hint="Resumable upload needs Facebook Login for Business; set "
                    "instagram_reel_upload: ftp otherwise.",
                )
            item.update(container_id=str(body["id"]), upload_uri=str(body["uri"]))
            record = await self.journal.update(record.id, owner, items=items)
            crash_point("resumable_container")
        path = self._ensure_prepared(record, item)
        progress = self.reporter.upload_progress(Path(item["source"]).name, item["size"])
        try:
            resumed = await rupload.send(
                graph,
                item["upload_uri"],
                item["container_id"],
                path,
                progress=progress,
                backoff=self.options.retry_delay,
            )
        finally:
            self.reporter.upload_done()
        item["uploaded"] = True
        record = await self.journal.update(record.id, owner, items=items)
        self.reporter.info(
            f"Uploaded {Path(item['source']).name} to Meta (resumable upload"
            + (f", resumed at byte {resumed})" if resumed else ")")
        )
        return record

    def _ensure_prepared(self, record: PostRecord, item: dict[str, Any]) -> Path:
        path = Path(item["path"])
        if path.is_file():
            return path
        source = Path(item["source"])
        if not source.is_file():
            raise InputError(
                f"{source}: the original file of post {record.id} is gone and its "
                "prepared copy too; cannot continue.",
                hint="Restore the file, or post again with --force.",
            )
        if item.get("role") == "cover":
            again = _prepare_cover(source)
        else:
            again = media_mod.prepare_one(
                source,
                fit=record.options.get("fit"),
                story=bool(record.options.get("story")),
                out_dir=prepared_dir(),
                transcode=record.options.get("transcode", True),
                reporter=self.reporter,
            )
        if again.source_sha256 != item["source_sha256"]:
            raise InputError(
                f"{source}: the file changed since post {record.id} was prepared.",
                hint="Post it again as a new post (add --force).",
            )
        # Normally byte-identical; after a Pillow upgrade the upload name follows the content.
        item.update(
            path=str(again.path),
            sha256=again.sha256,
            size=again.size,
            remote_name=again.remote_name,
        )
        return again.path

    def _container_params(
        self, record: PostRecord, item: dict[str, Any], *, child: bool
    ) -> dict[str, str]:
        url_key = "video_url" if item["kind"] == "video" else "image_url"
        params = {url_key: item["url"]}
        alt = record.options.get("alt_text")
        if record.kind == "story":
            params["media_type"] = "STORIES"
        elif child:
            params["is_carousel_item"] = "true"
            if item["kind"] == "video":
                params["media_type"] = "VIDEO"
        elif record.kind == "reel":
            params["media_type"] = "REELS"
        if not child and record.kind != "story" and record.caption:
            params["caption"] = record.caption
        if alt and item["kind"] == "image" and record.kind != "story":
            params["alt_text"] = alt
        cover = next((i for i in record.items if i.get("role") == "cover"), None)
        params.update(
            publish_options.container_params(
                publish_options.PublishOptions.from_journal(record.options.get("publish")),
                record.kind,
                child=child,
                cover_url=cover["url"] if cover else None,
            )
        )
        return params

    async def _create_containers(
        self, record: PostRecord, owner: str, graph: GraphClient
    ) -> PostRecord:
        items = record.items
        if record.kind != "carousel" and items[0].get("upload_uri") and items[0].get("uploaded"):
            cid = items[0]["container_id"]  # created before the resumable upload
            return await self.journal.record_step(
                record.id, owner, "container_created", container_id=cid
            )
        if record.kind != "carousel":
            cid = await graph.create_container(
                self._container_params(record, items[0], child=False),
                what=f"Creating the {record.kind} container",
            )
            self.reporter.info(f"Container {cid} created.")
            return await self.journal.record_step(
                record.id, owner, "container_created", container_id=cid
            )
        for index, item in enumerate(items):
            if item.get("container_id"):
                continue
            item["container_id"] = await graph.create_container(
                self._container_params(record, item, child=True),
                what=f"Creating carousel item {index + 1}",
            )
            record = await self.journal.update(record.id, owner, items=items)
        for index, item in enumerate(items):
            status = await graph.wait_finished(item["container_id"], self.stop_event)
            if status.status_code not in ("FINISHED", "PUBLISHED"):
                await self._reset_containers(record, owner)
                raise RuntimeFailure(
                    f"Carousel item {index + 1} ({Path(item['source']).name}) was not accepted: "
                    f"{status.status_code} {status.status}.",
                    hint=f"`carrier instagram resume {record.id}` creates the containers again.",
                )
        cid = await graph.create_container(
            {
                "media_type": "CAROUSEL",
                "children": ",".join(i["container_id"] for i in items),
                **({"caption": record.caption} if record.caption else {}),
                **publish_options.container_params(
                    publish_options.PublishOptions.from_journal(record.options.get("publish")),
                    "carousel",
                    child=False,
                ),
            },
            what="Creating the carousel container",
        )
        self.reporter.info(f"Carousel container {cid} created.")
        return await self.journal.record_step(
            record.id, owner, "container_created", container_id=cid
        )

    async def _reset_containers(self, record: PostRecord, owner: str) -> PostRecord:
        items = [{**item, "container_id": None} for item in record.items]
        step = "uploaded"
        for item in items:
            if item.pop("upload_uri", None):  # the file lived in that container: send again
                item.pop("uploaded", None)
                step = "prepared"
        return await self.journal.update(
            record.id,
            owner,
            status=step,
            last_step=step,
            container_id=None,
            items=items,
        )

    async def _wait_container(
        self, record: PostRecord, owner: str, graph: GraphClient
    ) -> PostRecord:
        assert record.container_id
        self.reporter.info(f"Waiting for Instagram to process container {record.container_id}.")
        status = await graph.wait_finished(record.container_id, self.stop_event)
        if status.status_code == "PUBLISHED":
            return await self._mark_published(record, owner, None, graph)
        if status.status_code in ("ERROR", "EXPIRED"):
            await self._reset_containers(record, owner)
            what = "expired" if status.status_code == "EXPIRED" else "failed processing"
            raise RuntimeFailure(
                f"Instagram container {record.container_id} {what}: "
                f"{status.status or status.status_code}.",
                hint=f"`carrier instagram resume {record.id}` creates a new container from the "
                "uploaded file; if it keeps failing, check the media against the specs.",
            )
        return await self.journal.record_step(record.id, owner, "container_finished")

    async def _publish(self, record: PostRecord, owner: str, graph: GraphClient) -> PostRecord:
        assert record.container_id
        await self._check_quota(graph, record)
        container_id = record.container_id
        record = await self.journal.record_step(record.id, owner, "publishing")
        media_id = await graph.publish(container_id)
        crash_point("media_publish")  # published on Instagram, not yet in the journal
        return await self._mark_published(record, owner, media_id, graph)

    async def _finish_publishing(
        self, record: PostRecord, owner: str, graph: GraphClient
    ) -> PostRecord:
        """A previous run died around media_publish: ask the container before retrying."""
        assert record.container_id
        status = await graph.container_status(record.container_id)
        if status.status_code == "PUBLISHED":
            self.reporter.info(f"Container {record.container_id} was already published.")
            return await self._mark_published(record, owner, None, graph)
        if status.status_code in ("ERROR", "EXPIRED"):
            await self._reset_containers(record, owner)
            raise RuntimeFailure(
                f"Instagram container {record.container_id} is {status.status_code}: "
                f"{status.status}.",
                hint=f"`carrier instagram resume {record.id}` recreates it.",
            )
        media_id = await graph.publish(record.container_id)
        return await self._mark_published(record, owner, media_id, graph)

    async def _mark_published(
        self, record: PostRecord, owner: str, media_id: str | None, graph: GraphClient
    ) -> PostRecord:
        if media_id is None:
            # Published, but the answer that carried the id was lost (crash, lost answer,
            # "already published"): look it up rather than record a post without an id.
            media_id = await graph.published_media_id(record.caption)
        permalink = await graph.permalink(media_id) if media_id else None
        return await self.journal.record_step(
            record.id,
            owner,
            "published",
            media_id=media_id,
            permalink=permalink,
            published_at=now(),
        )

    def _cleanup_pending(self, record: PostRecord) -> bool:
        """Published, its FTP files to delete, and no run has done it (or tried) yet."""
        wanted = record.options.get("cleanup") or self.options.ftp_cleanup == "after_publish"
        return bool(wanted) and record.published and "ftp_cleanup" not in record.options

    async def _after_publish(self, record: PostRecord, owner: str) -> PostRecord:
        """Delete the uploaded files (instagram_ftp_cleanup: after_publish, or --cleanup).
        Only a published post gets here, so its container was FINISHED: Instagram has
        fetched the files. A delete that fails is reported and journaled in the post's
        options (`ftp_cleanup`), never a failure of the post."""
        if not record.options.get("cleanup") and self.options.ftp_cleanup != "after_publish":
            return record
        config = FtpConfig.from_options(self.options.ftp)
        deleted: list[str] = []
        failed: dict[str, str] = {}
        kept: dict[str, str] = {}
        names = {i["remote_name"] for i in record.items if not self._resumable(record, i)}
        needed = await self.journal.files_still_needed(names, exclude=record.id)
        for item in record.items:
            if self._resumable(record, item):
                continue  # sent to Meta's rupload host, never to the FTP server
            name = item["remote_name"]
            if name in needed:  # the same content, uploaded for a post not yet out
                kept[name] = f"post {needed[name]} has not been published yet"
                self.reporter.info(
                    f"Kept {name} on the FTP server: post {needed[name]} of the same file "
                    "has not been published yet (its cleanup deletes it)."
                )
                continue
            try:
                if await delete_file(config, name):
                    self.reporter.info(f"Deleted {name} from the FTP server.")
                deleted.append(name)  # or already gone (550)
            except Exception as exc:  # ftplib's error_temp/error_reply are no OSError
                reason = str(exc) or type(exc).__name__
                log.warning("could not delete %s from the FTP server: %s", name, reason)
                self.reporter.info(f"Could not delete {name}: {reason}")
                failed[name] = reason[:500]
        cleanup: dict[str, Any] = {"deleted": deleted, "failed": failed, "at": now().isoformat()}
        if kept:
            cleanup["kept"] = kept
        try:
            return await self.journal.update(
                record.id, owner, options={**record.options, "ftp_cleanup": cleanup}
            )
        except LeaseLost:
            return record


async def _counted(work: Awaitable[PostOutcome]) -> PostOutcome:
    """A post (or resume) to its end, counted in carrier_instagram_posts_total by outcome
    when metrics are on: published, already_published, stopped (shutdown), failed."""
    metrics = active_metrics()
    if metrics is None:
        return await work
    outcome = "failed"
    try:
        result = await work
        outcome = "already_published" if result.already_published else "published"
        return result
    except (StopRequested, asyncio.CancelledError):
        outcome = "stopped"
        raise
    finally:
        metrics.instagram_post_finished(outcome)
