"""POST /v1/instagram/posts, GET /v1/instagram/posts/{id}, GET /v1/instagram/limit.

A post is accepted (202) once its media passed the pipeline's checks and it is journaled;
it is published in the background (instagram_posts.py) and polled with GET. The media
comes either as a multipart upload (file field `media`, repeated for a carousel, plus text
fields) or, for admins, as JSON naming files on the server (`path` or `paths`).

Paths on the server: any regular file the server process can read (symlinks are
followed). Posting needs the admin scope, which can already do everything else, and a
file passes only if the media checks accept it as an image or video, so a path cannot
publish a database, a key file or a config file; directories, devices and missing files
are refused with 422 naming the field.
"""

from __future__ import annotations

import stat
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from carrier_cli.clients.api.auth import require, state_of
from carrier_cli.clients.api.errors import ApiError, from_carrier_error, not_found
from carrier_cli.clients.api.instagram_posts import InstagramPoster, not_configured
from carrier_cli.clients.api.uploads import not_media, read_form, sniff_suffix
from carrier_cli.clients.instagram.graph import GraphError
from carrier_cli.clients.instagram.journal import PostRecord
from carrier_cli.clients.instagram.pipeline import PostRequest
from carrier_cli.clients.instagram.publish_options import PublishOptions
from carrier_cli.errors import CarrierError, ConfigError, InputError
from carrier_cli.redact import scrub

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.schedule import Entry
    from carrier_cli.clients.instagram.when import Zone

router = APIRouter(prefix="/v1/instagram", tags=["instagram"])

Kind = Literal["image", "reel", "story", "carousel"]
MAX_POST_ID = 2**63 - 1  # a larger id is no row, and overflows the database's integer


class PostOptions(BaseModel):
    """The choices of one post; the text fields of a multipart upload, or the JSON body."""

    model_config = ConfigDict(extra="forbid")

    caption: str | None = Field(
        None,
        max_length=2200,
        description='The caption; "" posts without one. Required unless generate_caption '
        "or kind story (stories have no caption).",
    )
    alt_text: str | None = Field(None, max_length=1000, description="Alt text for images.")
    kind: Kind | None = Field(
        None,
        description="What the media must make: image (one image), reel (one video), "
        "carousel (2-10 files) or story (one file). Default: what the media makes.",
    )
    character: str | None = Field(
        None,
        description="The served character the post belongs to (name or id); it writes the "
        "caption with generate_caption. Default: none (with generate_caption: the first "
        "served character).",
    )
    generate_caption: bool = Field(False, description="Let the character write the caption.")
    fit: Literal["pad", "crop"] | None = Field(
        None, description="pad or crop images whose aspect ratio Instagram refuses."
    )
    force: bool = Field(False, description="Publish again even if this exact post was.")
    cleanup: bool = Field(False, description="Delete the files from the FTP server after.")
    # Publishing options (publish_options.py has Meta's rules; a multipart text field takes
    # a JSON array or names separated by spaces).
    collaborators: list[str] | None = Field(
        None,
        max_length=20,
        description="Instagram usernames invited as collaborators (at most 3; not on stories).",
    )
    user_tags: list[str] | None = Field(
        None, max_length=50, description="USER or USER@x,y (x, y from 0 to 1); images, stories."
    )
    location_id: str | None = Field(None, max_length=30, description="A location's Page id.")
    cover: str | None = Field(
        None, max_length=4096, description="Reels: absolute path of a cover image on the server."
    )
    thumb_offset: int | None = Field(None, ge=0, description="Reels: cover frame, in ms.")
    share_to_feed: bool | None = Field(None, description="Reels: also in the feed (default).")
    audio_name: str | None = Field(None, max_length=100, description="Reels: the audio's name.")
    transcode: bool = Field(True, description="Convert an out-of-spec video (false: refuse).")
    # Scheduling, as `carrier instagram post --at/--tz/--draft` (the server's scheduler
    # publishes it; GET /v1/instagram/queue lists it).
    at: str | None = Field(
        None,
        max_length=100,
        description='When to publish: "2026-12-24 09:00" (in tz), an ISO time with its '
        'offset, or "+30m"/"+2h"/"+1d". The post is checked and converted now and queued.',
    )
    tz: str | None = Field(
        None,
        max_length=64,
        description="The time zone of a local `at`, e.g. Europe/Paris (default: the server's).",
    )
    draft: bool = Field(
        False,
        description="Queue it as a draft waiting for approval (POST .../approve); with `at`, "
        "it goes out at that time once approved.",
    )

    @field_validator("collaborators", "user_tags", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):  # a multipart text field
            import json

            return json.loads(value) if value.lstrip().startswith("[") else value.split()
        return value


class PathPost(PostOptions):
    path: str | None = Field(None, description="Absolute path of a media file on the server.")
    paths: list[str] | None = Field(
        None, min_length=1, max_length=10, description="Several files on the server (carousel)."
    )


class ReplacedEntry(BaseModel):
    state: str = Field(description="draft, approved, queued, cancelled, rejected or failed.")
    scheduled_at: datetime | None = Field(None, description="When it was to go out (UTC).")


class PostAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "post_id": 7,
                    "status_url": "/v1/instagram/posts/7",
                    "status": "queued",
                    "already_published": False,
                }
            ]
        }
    )

    post_id: int = Field(description="The journal id (`carrier instagram status ID` too).")
    status_url: str = Field(description="GET it to follow the post.")
    status: str = Field(
        description="queued (publishing on this server, or scheduled when scheduled_at is "
        "set), draft (waiting for approval), or the post's step when it existed already."
    )
    already_published: bool = Field(
        description="The same media and caption were published before; nothing new is "
        "posted (send force: true to post it again)."
    )
    scheduled_at: datetime | None = Field(
        None, description="When a scheduled post goes out (UTC); null: now, or when approved."
    )
    replaced: ReplacedEntry | None = Field(
        None,
        description="With scheduled_at/draft: the post (the same media and caption) was "
        "already on the schedule, and this request replaced that entry; null when it was not.",
    )


class PostStatus(BaseModel):
    post_id: int
    kind: str
    status: str = Field(
        description="queued (waiting for a slot on this server), then the last completed "
        "step: prepared, uploaded, container_created, container_finished, publishing, "
        "published; or failed (see error and step)."
    )
    step: str = Field(description="The last completed pipeline step.")
    publishing: bool = Field(description="This server is working on it (queued or running).")
    caption: str
    character: str | None = None
    files: int
    media_id: str | None = None
    permalink: str | None = None
    error: str | None = None
    attempts: int
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None = None


class PublishingLimit(BaseModel):
    quota_usage: int
    quota_total: int
    quota_duration: int = Field(description="The rolling window, in seconds.")
    remaining: int
    next_free_slot: datetime | None = Field(
        None, description="When a slot frees, when none is left (judging by Carrier's posts)."
    )


def poster_of(request: Request) -> InstagramPoster:
    poster = state_of(request).extras.get("instagram")
    if poster is None:
        raise not_configured()
    assert isinstance(poster, InstagramPoster)
    return poster


def invalid(field: str, message: str, hint: str | None = None) -> ApiError:
    return ApiError(422, "invalid_request", f"Request field `{field}`: {message}", hint=hint)


_BOOLEAN_FIELDS = ("generate_caption", "force", "cleanup", "share_to_feed", "transcode", "draft")
_TYPED_FIELDS = (*_BOOLEAN_FIELDS, "thumb_offset")
_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["media"],
                    "properties": {
                        "media": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "The file(s); repeat the field for a carousel.",
                        },
                        **{
                            name: {"type": "string"}
                            for name in PostOptions.model_fields
                            if name not in _TYPED_FIELDS
                        },
                        **{name: {"type": "boolean"} for name in _BOOLEAN_FIELDS},
                        "thumb_offset": {"type": "integer"},
                    },
                },
                "encoding": {"media": {"contentType": "image/*, video/mp4, video/quicktime"}},
            },
            "application/json": {
                "schema": PathPost.model_json_schema(),
                "example": {"path": "/srv/media/photo.jpg", "caption": "Low tide."},
            },
        },
    }
}


@router.post(
    "/posts",
    status_code=202,
    response_model=PostAccepted,
    summary="Publish a post (multipart upload, or files on the server)",
    openapi_extra=_BODY_DOC,
    responses={
        202: {"description": "Journaled; publishing in the background. Poll status_url."},
        400: {"description": "The multipart/form-data body is malformed"},
        413: {"description": "The upload is larger than api_max_upload_bytes"},
        415: {"description": "The body is neither multipart/form-data nor JSON"},
        422: {"description": "A field is invalid or the media cannot be posted"},
        503: {"description": "Instagram is not configured, or every slot is taken"},
    },
)
async def create_post(request: Request, _: Any = Depends(require("admin"))) -> JSONResponse:
    state = state_of(request)
    poster = poster_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    path_post: PathPost | None = None
    if content_type == "application/json":  # small: its mistakes are named first
        path_post = _validate(PathPost, await _json_body(request))
    poster.check_configured()  # before an upload is read
    with poster.reservation():
        if content_type == "multipart/form-data":
            form = await read_form(
                request, poster.directory, max_bytes=state.options.max_upload_bytes
            )
            try:
                options = _validate(PostOptions, form.fields)
                files, field = [u.path for u in form.files], "media"
                if not files:
                    raise invalid("media", "no file was sent.", "Send `-F media=@photo.jpg`.")
                record, created, entry, replaced = await _submit(
                    request, poster, options, files, field
                )
            except BaseException:
                form.discard()
                raise
            if not created:
                form.discard()  # the journal already has this post, with its own files
        elif path_post is not None:
            files, field = _server_files(path_post)
            options = PostOptions(**path_post.model_dump(exclude={"path", "paths"}))
            record, created, entry, replaced = await _submit(request, poster, options, files, field)
        else:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Content-Type `{content_type or 'none'}` is not accepted here.",
                hint="Upload with multipart/form-data (curl -F media=@photo.jpg -F caption=hi), "
                'or send JSON {"path": "/server/file.jpg", "caption": "..."}.',
            )
    url = f"/v1/instagram/posts/{record.id}"
    body_model = PostAccepted(
        post_id=record.id,
        status_url=url,
        status=_status(poster, record)
        if entry is None or record.published
        else ("draft" if entry.state == "draft" else "queued"),
        already_published=record.published and not created,
        scheduled_at=_utc(entry.scheduled_at)
        if entry is not None and not record.published
        else None,
        replaced=ReplacedEntry(state=replaced.state, scheduled_at=_utc(replaced.scheduled_at))
        if replaced is not None
        else None,
    )
    return JSONResponse(
        body_model.model_dump(mode="json"), status_code=202, headers={"Location": url}
    )


MAX_JSON_BYTES = 65_536  # a JSON post names files; the uploads' bound is not for it


async def _json_body(request: Request) -> Any:
    import json

    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise ApiError(
                413,
                "too_large",
                f"A JSON post is at most {MAX_JSON_BYTES:,} bytes.",
                hint="Name the files with `path` or `paths`; upload media with multipart.",
            )
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        from fastapi.exceptions import RequestValidationError

        # FastAPI's own answer to bad JSON on a body route: 422 naming `body`.
        error = {"loc": ("body",), "msg": f"JSON decode error: {exc}", "type": "json_invalid"}
        raise RequestValidationError([error]) from None


def _validate(model: type[PostOptions], data: Any) -> Any:
    """The model, or FastAPI's 422 naming the field (through the one error shape)."""
    from fastapi.exceptions import RequestValidationError

    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _server_files(post: PathPost) -> tuple[list[Path], str]:
    if (post.path is None) == (post.paths is None):
        raise invalid(
            "path", "give `path` (one file) or `paths` (several), not both and not neither."
        )
    names, field = ([post.path], "path") if post.path is not None else (post.paths or [], "paths")
    files = []
    for index, name in enumerate(names):
        where = field if field == "path" else f"paths.{index}"
        candidate = Path(name)
        if not candidate.is_absolute():
            raise invalid(where, f"{name!r} is not an absolute path on the server.")
        try:
            resolved = candidate.resolve(strict=True)
            mode = resolved.stat().st_mode
        except (OSError, RuntimeError, ValueError):  # ValueError: a NUL byte in it
            raise invalid(where, f"{name!r}: no such file on the server.") from None
        if not stat.S_ISREG(mode):
            raise invalid(where, f"{name!r} is not a regular file.")
        try:
            with resolved.open("rb") as f:
                head = f.read(16)
        except OSError as exc:
            raise invalid(where, f"{name!r} cannot be read ({exc.strerror}).") from None
        if sniff_suffix(head) is None:
            raise not_media(where, f"the file {name!r}")
        files.append(resolved)
    return files, field


async def _submit(
    request: Request, poster: InstagramPoster, options: PostOptions, files: list[Path], field: str
) -> tuple[PostRecord, bool, Entry | None, Entry | None]:
    """The post journaled and started, or scheduled (`at`/`draft`): (record, created,
    its schedule entry or None, the earlier entry that one replaced or None)."""
    state = state_of(request)
    story = options.kind == "story"
    when = _when(options) if options.at is not None or options.draft else None
    runtime = None
    if options.character is not None:
        runtime = state.agents.find(options.character)
        if runtime is None:
            names = ", ".join(r.character.name for r in state.agents) or "none"
            raise invalid("character", f"{options.character!r} is not served here ({names}).")
    elif options.generate_caption:
        runtime = next(iter(state.agents), None)
        if runtime is None:
            raise invalid("generate_caption", "no character is served to write it.")
    if options.generate_caption and options.caption:
        raise invalid("caption", "caption and generate_caption exclude each other.")
    if story and options.generate_caption:
        raise invalid("generate_caption", "stories have no caption.")
    if options.caption is None and not options.generate_caption and not story:
        raise invalid(
            "caption",
            "required.",
            'Send a caption ("" posts without one), or generate_caption: true.',
        )
    publish = _publish_options(options, files, field)
    post = PostRequest(
        files=files,
        publish=publish,
        transcode=options.transcode,
        caption="" if story else options.caption or "",
        alt_text=options.alt_text,
        story=story,
        fit=options.fit,
        force=options.force,
        cleanup=options.cleanup,
        character=runtime.character.name if runtime is not None else None,
    )
    if options.generate_caption and runtime is not None:
        post.caption_key = f"generated:{runtime.character.name}"
    else:
        from carrier_cli.clients.instagram.captions import check_caption

        try:
            check_caption(post.caption, source="the caption")
        except InputError as exc:
            raise invalid("caption", exc.message, exc.hint) from None
    _check_kind(options.kind, files, field)
    writer = runtime if options.generate_caption else None
    try:
        if when is not None:
            at, zone = when
            item = await poster.schedule(
                post, at=at, zone=zone, draft=options.draft, runtime=writer
            )
            # Not `created` when the journal had the post: the caller then drops this
            # request's upload (the post keeps its first upload's files).
            created = item.created and not item.already_published
            return item.record, created, item.entry, item.replaced
        record, created = await poster.submit(post, runtime=writer)
        return record, created, None, None
    except ConfigError as exc:
        raise not_configured(exc) from None
    except InputError as exc:  # the media checks (prepare): the file is the problem
        raise invalid(field, scrub(_without_paths(exc.message, files)), exc.hint) from None
    except CarrierError as exc:
        raise from_carrier_error(exc) from None


def _utc(moment: datetime | None) -> datetime | None:
    from datetime import UTC

    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)  # the journal's UTCDateTime reads back naive


def _when(options: PostOptions) -> tuple[datetime | None, Zone]:
    """`at` and `tz` parsed before any media work (422 naming the field)."""
    from carrier_cli.clients.instagram import when

    flags = {"at": "`at`", "tz": "`tz`"}  # what the messages call them here
    try:
        zone = when.zone(options.tz, flag=flags["tz"])
    except InputError as exc:
        raise invalid("tz", exc.message, exc.hint) from None
    if options.at is None:
        return None, zone
    try:
        return when.parse_when(options.at, zone, flag=flags["at"], tz_flag=flags["tz"]), zone
    except InputError as exc:
        raise invalid("at", exc.message, exc.hint) from None


def _publish_options(options: PostOptions, files: list[Path], field: str) -> PublishOptions:
    """The publishing options, refused (422 naming the field) when Meta would refuse them
    for what the files make; the thumbnail offset is checked against the video later."""
    from carrier_cli.clients.instagram import publish_options as po

    cover = None
    if options.cover is not None:
        cover = Path(options.cover)
        if not cover.is_absolute() or not cover.is_file():
            raise invalid("cover", f"{options.cover!r} is not a file on the server.")
    try:
        publish = po.build(
            collaborators=options.collaborators,
            user_tags=options.user_tags,
            location_id=options.location_id,
            cover=cover,
            thumb_offset_ms=options.thumb_offset,
            share_to_feed=options.share_to_feed,
            audio_name=options.audio_name,
            names=po.API_FIELDS,
        )
        po.check_for(publish, options.kind or _made(files), None)
    except po.OptionError as exc:
        raise invalid(po.API_FIELDS[exc.option], exc.message, exc.hint) from None
    return publish


def _made(files: list[Path]) -> str:
    videos = sum(1 for f in files if f.suffix.lower() in (".mp4", ".mov"))
    return "carousel" if len(files) > 1 else ("reel" if videos else "image")


def _check_kind(kind: str | None, files: list[Path], field: str) -> None:
    """The kind asked for against what the files make (before any conversion work)."""
    if kind is None or kind == "story":
        if kind == "story" and len(files) != 1:
            raise invalid(field, f"a story takes exactly one file; {len(files)} were sent.")
        return
    videos = sum(1 for f in files if f.suffix.lower() in (".mp4", ".mov"))
    made = "carousel" if len(files) > 1 else ("reel" if videos else "image")
    if kind != made:
        raise invalid(
            "kind",
            f"`{kind}` does not match the media: {len(files)} file(s) make a `{made}` post.",
            "A carousel needs 2-10 files, a reel one video, an image post one image.",
        )


def _without_paths(message: str, files: list[Path]) -> str:
    """The media checks name the file by its path; an upload's path is the server's
    business, so it is shown as `the file`."""
    for path in files:
        message = message.replace(str(path), "the file")
    return message


def _status(poster: InstagramPoster, record: PostRecord) -> str:
    if poster.queued(record.id) and record.status == "prepared":
        return "queued"
    return record.status


@router.get(
    "/posts/{post_id}",
    response_model=PostStatus,
    summary="Where a post is: step, media id, permalink, error",
    responses={404: {"description": "No such post"}},
)
async def get_post(
    post_id: Annotated[int, PathParam(ge=1, le=MAX_POST_ID, description="The journal id.")],
    request: Request,
    _: Any = Depends(require("read")),
) -> PostStatus:
    poster = poster_of(request)
    record = await poster.journal.get(post_id)
    if record is None:
        raise not_found(f"Instagram post {post_id}", hint="POST /v1/instagram/posts makes one.")
    return post_status(poster, record)


def post_status(poster: InstagramPoster, record: PostRecord) -> PostStatus:
    return PostStatus(
        post_id=record.id,
        kind=record.kind,
        status=_status(poster, record),
        step=record.last_step,
        publishing=poster.active(record.id),
        caption=record.caption,
        character=record.character,
        files=len(record.items),
        media_id=record.media_id,
        permalink=record.permalink,
        error=scrub(record.error) if record.error else None,
        attempts=record.attempts,
        created_at=record.created_at,
        updated_at=record.updated_at,
        published_at=record.published_at,
    )


class PostList(BaseModel):
    posts: list[PostStatus] = Field(description="Newest first.")


MAX_POSTS_LISTED = 100


@router.get(
    "/posts",
    response_model=PostList,
    summary="The journal: the latest posts, newest first (as `carrier instagram history`)",
    responses={503: {"description": "Instagram is not configured"}},
)
async def list_posts(
    request: Request,
    _: Any = Depends(require("read")),
    limit: Annotated[int, Query(ge=1, le=MAX_POSTS_LISTED, description="Posts to list.")] = 20,
    status: Annotated[
        Literal["published", "failed"] | None, Query(description="Only posts in this state.")
    ] = None,
) -> PostList:
    poster = poster_of(request)
    records = await poster.journal.history(limit=limit, status=status)
    return PostList(posts=[post_status(poster, r) for r in records])


@router.get(
    "/limit",
    response_model=PublishingLimit,
    summary="The publishing quota (as `carrier instagram limit`)",
    responses={
        502: {"description": "The Graph API refused or failed"},
        503: {"description": "Instagram is not configured"},
    },
)
async def get_limit(request: Request, _: Any = Depends(require("read"))) -> PublishingLimit:
    from carrier_cli.clients.instagram.service import limit_for

    poster = poster_of(request)
    try:
        info = await limit_for(poster.options, poster.journal)
    except ConfigError as exc:
        raise not_configured(exc) from None
    except GraphError as exc:
        status = 503 if exc.action in ("retry", "quota") else 502
        raise ApiError(
            status,
            "upstream_failed" if status == 502 else "unavailable",
            f"The Instagram Graph API: {exc.message}",
            hint=exc.hint,
        ) from None
    q = info.quota
    return PublishingLimit(
        quota_usage=q.usage,
        quota_total=q.total,
        quota_duration=int(q.duration),
        remaining=q.remaining,
        next_free_slot=info.next_free,
    )
