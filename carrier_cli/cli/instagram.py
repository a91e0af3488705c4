"""`carrier instagram post|resume|status|history|limit|whoami`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.journal import PostRecord
    from carrier_cli.clients.instagram.pipeline import PostOutcome, Reporter
    from carrier_cli.clients.instagram.service import DryRun

app = typer.Typer(
    help="Publish photos, carousels, Reels and stories to Instagram (Graph API + FTP).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _settings() -> Any:
    from carrier_cli.state import STATE

    return STATE.settings().settings


def _reporter(quiet: bool) -> Reporter:
    from carrier_cli.cli.instagram_progress import rich_reporter

    return rich_reporter(quiet)


def _print_outcome(outcome: PostOutcome, as_json: bool) -> None:
    from carrier_cli.output import print_json

    record = outcome.record
    if as_json:
        print_json({**record.to_dict(), "already_published": outcome.already_published})
        return
    parts = [record.permalink, f"media id {record.media_id}" if record.media_id else None]
    where = " ".join(p for p in parts if p) or (
        f"container {record.container_id} (media id unknown: the previous run stopped right "
        "after publishing)"
    )
    if outcome.already_published:
        typer.echo(
            f"Already published as post {record.id}: {where}. Use --force to publish it again."
        )
    else:
        typer.echo(f"Published post {record.id} ({record.kind}): {where}")


@app.command("post")
def post(
    files: Annotated[
        list[Path],
        typer.Argument(help="1 image (post), 2-10 files (carousel), or a video (Reel)."),
    ],
    caption: Annotated[str | None, typer.Option("--caption", "-c", help="Caption text.")] = None,
    alt_text: Annotated[str | None, typer.Option("--alt-text", help="Alt text for images.")] = None,
    generate_caption: Annotated[
        bool,
        typer.Option(
            "--generate-caption", help="Let the character write the caption (shown for approval)."
        ),
    ] = False,
    character: Annotated[
        str | None,
        typer.Option(
            "--character",
            help="Character (name or file): writes a generated caption; posts as its own "
            "account when it has one (clients.instagram.account_key).",
        ),
    ] = None,
    story: Annotated[bool, typer.Option("--story", help="Publish as a story.")] = False,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="image, carousel, reel or story; checked against the files."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and prepare only; no upload, no API call.")
    ] = False,
    fit: Annotated[
        str | None,
        typer.Option("--fit", help="pad or crop images whose aspect ratio Instagram refuses."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask to approve a generated caption.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Publish again even if this exact post was published.")
    ] = False,
    cleanup: Annotated[
        bool,
        typer.Option(
            "--cleanup", help="Delete the uploaded files from the FTP server after publishing."
        ),
    ] = False,
    collaborator: Annotated[
        list[str] | None,
        typer.Option("--collaborator", help="Invite a collaborator (repeatable, at most 3)."),
    ] = None,
    user_tag: Annotated[
        list[str] | None,
        typer.Option(
            "--user-tag", help="Tag USER or USER@x,y (x, y from 0 to 1); images and stories."
        ),
    ] = None,
    location_id: Annotated[
        str | None, typer.Option("--location-id", help="Facebook Page id of a location.")
    ] = None,
    cover: Annotated[
        Path | None, typer.Option("--cover", help="Cover image of a Reel (uploaded with it).")
    ] = None,
    thumb_offset: Annotated[
        int | None,
        typer.Option("--thumb-offset", help="Reel cover frame: milliseconds into the video."),
    ] = None,
    share_to_feed: Annotated[
        bool | None,
        typer.Option(
            "--share-to-feed/--no-share-to-feed", help="Show the Reel in the feed (default yes)."
        ),
    ] = None,
    audio_name: Annotated[
        str | None, typer.Option("--audio-name", help="Name of the Reel's original audio.")
    ] = None,
    no_transcode: Annotated[
        bool,
        typer.Option(
            "--no-transcode", help="Refuse an out-of-spec video instead of converting it."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help='Queue the post for later: +30m, +2h, "2026-12-24 09:00" (in --tz), ISO 8601.',
        ),
    ] = None,
    tz: Annotated[
        str | None, typer.Option("--tz", help="Time zone of a local --at (e.g. Europe/Paris).")
    ] = None,
    draft: Annotated[
        bool,
        typer.Option("--draft", help="Wait for `carrier instagram approve ID` before posting."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Publish one post. Running the same command again continues or reports it as done.

    Example: carrier instagram post photo.png --caption "hello"
    Later:   carrier instagram post photo.png --caption "hello" --at +2h
    """
    import asyncio

    from carrier_cli.clients.instagram import publish_options, service
    from carrier_cli.output import warn

    options = publish_options.build(
        collaborators=collaborator,
        user_tags=user_tag,
        location_id=location_id,
        cover=cover,
        thumb_offset_ms=thumb_offset,
        share_to_feed=share_to_feed,
        audio_name=audio_name,
    )
    request = service.post_request(
        files,
        caption=caption,
        generate_caption=generate_caption,
        alt_text=alt_text,
        story=story,
        fit=fit,
        force=force,
        cleanup=cleanup,
        character=character,
        warn=warn,
        kind=kind,
        publish=options,
        transcode=not no_transcode,
    )

    def confirm(text: str) -> bool:
        from rich.panel import Panel

        from carrier_cli.output import err, plain

        err().print(Panel(plain(text), title="Generated caption", expand=False))
        return True if yes else typer.confirm("Publish with this caption?", default=True)

    if at is not None or draft or tz is not None:
        from carrier_cli.cli.instagram_queue import schedule_post

        if dry_run:
            raise typer.BadParameter("--dry-run does not queue anything; drop --at/--draft.")
        schedule_post(
            request,
            at=at,
            tz=tz,
            draft=draft,
            generate=generate_caption,
            as_json=as_json,
            confirm=None if draft else confirm,  # a draft's caption is approved later
        )
        return

    result = asyncio.run(
        service.post(
            _settings(),
            request,
            dry_run=dry_run,
            generate=generate_caption,
            confirm=confirm,
            reporter=_reporter(quiet or as_json),
        )
    )
    if isinstance(result, service.DryRun):
        _print_dry_run(result, as_json)
    else:
        _print_outcome(result, as_json)


def _print_dry_run(result: DryRun, as_json: bool) -> None:
    from carrier_cli.output import print_json

    if as_json:
        print_json(result.to_dict())
        return
    rows = result.media_rows()
    typer.echo(f"Dry run: {result.kind} post, {len(rows)} file(s); nothing was uploaded.")
    for row in rows:
        size = f"{row['width']}x{row['height']}, {row['bytes']:,} bytes"
        typer.echo(f"  {row['source']} -> {row['upload']} ({size})")
        for note in row["notes"]:
            typer.echo(f"    {note}")
    if result.caption:
        typer.echo(f"Caption: {len(result.caption)} characters.")


@app.command("resume")
def resume(
    post_id: Annotated[int, typer.Argument(help="Journal id (see `carrier instagram status`).")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Continue a post from its last completed step."""
    import asyncio

    from carrier_cli.clients.instagram import service

    outcome = asyncio.run(
        service.resume(_settings(), post_id, reporter=_reporter(quiet or as_json))
    )
    _print_outcome(outcome, as_json)


def _table(records: list[PostRecord], title: str) -> None:
    from carrier_cli.clients.instagram.schedule import shown_status
    from carrier_cli.output import out
    from carrier_cli.output import table as Table

    table = Table(title=title)
    for column in ("id", "kind", "status", "files", "media / error", "updated"):
        table.add_column(column)
    for r in records:
        detail = r.permalink or r.media_id or (f"{r.error}" if r.error else "")
        status = r.status if r.status != "failed" else f"failed after {r.last_step}"
        status = shown_status(status, r.extra.get("schedule"))
        table.add_row(
            str(r.id),
            r.kind,
            status,
            str(len(r.items)),
            detail[:80],
            f"{r.updated_at:%Y-%m-%d %H:%M}",
        )
    out().print(table)


@app.command("status")
def status(
    post_id: Annotated[
        int | None, typer.Argument(help="Journal id; default: unfinished posts.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Where a post is in the pipeline (prepared → ... → published, or failed with why)."""
    import asyncio

    from carrier_cli.clients.instagram import service
    from carrier_cli.output import key_value_lines, print_json

    records = asyncio.run(service.status(_settings(), post_id))
    if as_json:
        print_json([r.to_dict() for r in records])
        return
    if not records:
        typer.echo("No Instagram posts in the journal yet.")
        return
    if post_id is None:
        _table(records, "Instagram posts")
        return
    from carrier_cli.clients.instagram.schedule import shown_status

    r = records[0]
    rows = [
        ("post", str(r.id)),
        ("kind", r.kind),
        ("status", shown_status(r.status, r.extra.get("schedule"))),
        ("last completed step", r.last_step),
        ("caption", r.caption[:200]),
        ("container", r.container_id or ""),
        ("media id", r.media_id or ""),
        ("permalink", r.permalink or ""),
        ("error", r.error or ""),
        ("attempts", str(r.attempts)),
        ("created", f"{r.created_at:%Y-%m-%d %H:%M:%S}"),
        ("published", f"{r.published_at:%Y-%m-%d %H:%M:%S}" if r.published_at else ""),
    ]
    for item in r.items:
        rows.append(("file", f"{item['source']} -> {item.get('url') or '(not uploaded)'}"))
    for line in key_value_lines(rows):
        typer.echo(line)


@app.command("history")
def history(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many posts.")] = 20,
    status_filter: Annotated[
        str | None,
        typer.Option("--status", help="Only posts in this state (published, failed, ...)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The journal: recent posts, newest first."""
    import asyncio

    from carrier_cli.clients.instagram import service
    from carrier_cli.output import print_json

    records = asyncio.run(service.history(_settings(), limit, status_filter))
    if as_json:
        print_json([r.to_dict() for r in records])
    elif not records:
        typer.echo("No Instagram posts in the journal yet.")
    else:
        _table(records, "Instagram history")


@app.command("limit")
def limit(as_json: JsonOpt = False) -> None:
    """Publishing quota: posts used in Instagram's rolling window, and when a slot frees."""
    import asyncio

    from carrier_cli.clients.instagram import service
    from carrier_cli.output import print_json

    info = asyncio.run(service.limit(_settings()))
    if as_json:
        print_json(info.to_dict())
        return
    q = info.quota
    typer.echo(
        f"{q.usage} of {q.total} posts used in the last {q.duration / 3600:.0f} h; "
        f"{q.remaining} left."
    )
    if q.remaining == 0:
        when = (
            f"{info.next_free:%Y-%m-%d %H:%M} UTC"
            if info.next_free
            else f"within {q.duration / 3600:.0f} h"
        )
        typer.echo(f"Next slot frees at {when}.")


@app.command("whoami")
def whoami(
    character: Annotated[
        str | None,
        typer.Option("--character", help="Check this character's own account (account_key)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the access token and the account id."""
    import asyncio

    from carrier_cli.clients.instagram import service
    from carrier_cli.output import print_json

    account = asyncio.run(service.whoami(_settings(), character))
    if as_json:
        print_json(account)
        return
    key = f" with key '{account['account_key']}'" if account.get("account_key") else ""
    typer.echo(
        f"@{account.get('username', '?')} (id {account.get('id')}) via {account['api']}{key}"
        " — token OK."
    )


def _register_queue() -> None:
    """`queue`, `approve` and `reject` live in cli/instagram_queue.py."""
    from carrier_cli.cli import instagram_queue

    app.add_typer(instagram_queue.app, name="queue")
    app.command("approve")(instagram_queue.approve)
    app.command("reject")(instagram_queue.reject)


_register_queue()


def _register_more() -> None:
    """Commands kept in their own modules (one concern per file)."""
    from carrier_cli.cli import instagram_insights

    instagram_insights.register(app)


_register_more()
