"""`carrier instagram queue list|show|cancel|reschedule|run`, `approve`, `reject`, and the
printing of `carrier instagram post --at/--draft` (the logic is in
clients/instagram/queueing.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from collections.abc import Callable

    from carrier_cli.clients.instagram.pipeline import PostRequest
    from carrier_cli.clients.instagram.queueing import QueueItem

app = typer.Typer(
    help="Scheduled and drafted Instagram posts: list (the default), show, cancel, "
    "reschedule, run (publish what is due).",
)


@app.callback(invoke_without_command=True)
def queue(ctx: typer.Context) -> None:
    """`carrier instagram queue` alone lists the waiting posts."""
    if ctx.invoked_subcommand is None:
        list_queue(every=False, as_json=False)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
PostId = Annotated[int, typer.Argument(help="Post id (see `carrier instagram queue list`).")]
AtOpt = Annotated[
    str,
    typer.Option(
        "--at",
        help='When: +30m, +2h, +1d, "2026-12-24 09:00" (in --tz) or ISO 8601 with an offset.',
    ),
]
TzOpt = Annotated[
    str | None,
    typer.Option(
        "--tz", help="Time zone of a local --at, e.g. Europe/Paris (default: this machine's)."
    ),
]


def _settings() -> Any:
    from carrier_cli.state import STATE

    return STATE.settings().settings


def _run(work: Any) -> Any:
    import asyncio

    return asyncio.run(work)


def schedule_post(
    request: PostRequest,
    *,
    at: str | None,
    tz: str | None,
    draft: bool,
    generate: bool,
    as_json: bool,
    confirm: Callable[[str], bool] | None = None,
) -> None:
    """`carrier instagram post ... --at WHEN` / `--draft`: journal, schedule, print."""
    from carrier_cli.cli.instagram_progress import rich_reporter
    from carrier_cli.clients.instagram import queueing

    moment, zone = queueing.parse_at(at, tz)
    item = _run(
        queueing.schedule(
            _settings(),
            request,
            at=moment,
            zone=zone,
            draft=draft,
            generate=generate,
            confirm=confirm,
            reporter=rich_reporter(as_json),
        )
    )
    if as_json:
        from carrier_cli.output import print_json

        print_json(item.to_dict())
        return
    record = item.record
    if item.already_published:
        typer.echo(
            f"Already published as post {record.id}: {record.permalink or record.media_id}. "
            "Use --force to publish it again."
        )
    elif item.entry.state == "draft":
        when = "" if item.entry.scheduled_at is None else f" at {item.when_text()}"
        typer.echo(
            f"Draft post {record.id} ({record.kind}, {len(record.items)} file(s)) waits for "
            f"approval; it goes out{when} once approved."
        )
        typer.echo(
            f"Approve: carrier instagram approve {record.id}   "
            f"Reject: carrier instagram reject {record.id}"
        )
    else:
        typer.echo(
            f"Queued post {record.id} ({record.kind}, {len(record.items)} file(s)); it goes "
            f"out at {item.when_text()}."
        )
        typer.echo(
            "`carrier run --client instagram` or `carrier serve` publishes it when due "
            "(or `carrier instagram queue run`)."
        )
    if (replaced := item.replaced_text()) is not None:
        typer.echo(replaced)


def _show(item: QueueItem) -> None:
    from carrier_cli.output import key_value_lines

    e, r = item.entry, item.record
    rows: list[tuple[str, object]] = [
        ("post", r.id),
        ("state", e.state),
        ("goes out", item.when_text()),
        ("kind", r.kind),
        ("character", r.character or ""),
        ("caption", r.caption),
    ]
    rows += [("media", path) for path in item.media()]
    rows.append(("asked", e.prompt or "(caption written by hand)"))
    if e.reason:
        rows.append(("reason", e.reason))
    if r.permalink or r.media_id:
        rows.append(("published", r.permalink or r.media_id))
    for line in key_value_lines(rows):
        typer.echo(line)


@app.command("list")
def list_queue(
    every: Annotated[
        bool, typer.Option("--all", help="Also published, failed, rejected and cancelled.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Scheduled and drafted posts, the next due first.

    Example: carrier instagram queue list --json
    """
    from carrier_cli.clients.instagram import queueing
    from carrier_cli.output import out, print_json
    from carrier_cli.output import table as Table

    found = _run(queueing.items(_settings(), every=every))
    if as_json:
        print_json([i.to_dict() for i in found])
        return
    if not found:
        typer.echo(
            "No scheduled or drafted Instagram posts"
            + ("." if every else " waiting (--all shows every state).")
        )
        return
    table = Table(title="Instagram queue")
    for column in ("id", "state", "goes out (UTC)", "local", "kind", "caption / reason"):
        table.add_column(column)
    for i in found:
        at = i.entry.scheduled_at
        local = i.zone.show(at) if at else None
        detail = i.entry.reason if i.entry.state in ("failed", "rejected") else i.record.caption
        table.add_row(
            str(i.entry.post_id),
            i.entry.state,
            f"{at:%Y-%m-%d %H:%M}" if at else "when approved",
            f"{local:%m-%d %H:%M} {local.tzname() or ''}" if local else "",
            i.record.kind,
            (detail or "")[:40],
        )
    out().print(table)


@app.command("show")
def show(post_id: PostId, as_json: JsonOpt = False) -> None:
    """One scheduled or drafted post: caption, media, and what the character was asked."""
    from carrier_cli.clients.instagram import queueing
    from carrier_cli.output import print_json

    item = _run(queueing.item(_settings(), post_id))
    if as_json:
        print_json(item.to_dict())
    else:
        _show(item)


@app.command("cancel")
def cancel(post_id: PostId, as_json: JsonOpt = False) -> None:
    """Cancel a scheduled or drafted post before it goes out."""
    _decide(post_id, "cancel", None, as_json, "Cancelled")


@app.command("reschedule")
def reschedule(post_id: PostId, at: AtOpt, tz: TzOpt = None, as_json: JsonOpt = False) -> None:
    """Move a waiting post (or queue a failed one again) to another time.

    Example: carrier instagram queue reschedule 3 --at "2026-12-24 09:00" --tz Europe/Paris
    """
    from carrier_cli.clients.instagram import queueing
    from carrier_cli.output import print_json

    moment, zone = queueing.parse_at(at, tz)
    assert moment is not None
    item = _run(queueing.reschedule(_settings(), post_id, moment, zone))
    if as_json:
        print_json(item.to_dict())
    else:
        typer.echo(f"Post {post_id} ({item.entry.state}) now goes out at {item.when_text()}.")


@app.command("run")
def run(as_json: JsonOpt = False) -> None:
    """Publish the posts that are due now, in this process, and exit (for cron).

    `carrier run --client instagram` and `carrier serve` do this on their own.
    """
    from carrier_cli.clients.instagram import queueing
    from carrier_cli.output import print_json

    result = _run(queueing.run_due(_settings()))  # steps go to the log, as for the client
    if as_json:
        print_json(
            {
                "published": result.published,
                "retrying": result.retrying,
                "failed": result.failed,
                "waiting_for_quota": result.waiting_for_quota,
            }
        )
        return
    typer.echo(
        f"Published {len(result.published)} due post(s)"
        + (f": {', '.join(map(str, result.published))}" if result.published else "")
        + "."
    )
    if result.retrying:
        typer.echo(f"To retry later: {', '.join(map(str, result.retrying))}.")
    if result.failed:
        typer.echo(f"Failed: {', '.join(map(str, result.failed))} (see `queue show ID`).")
    if result.quota is not None:
        typer.echo(
            f"Publishing limit reached ({result.quota.usage} of {result.quota.total}); "
            "the other due posts wait for a free slot."
        )
    if result.failed:
        raise typer.Exit(1)


def _decide(post_id: int, decision: str, reason: str | None, as_json: bool, done: str) -> None:
    from carrier_cli.clients.instagram import queueing
    from carrier_cli.output import print_json

    item = _run(queueing.decide(_settings(), post_id, decision, reason))
    if as_json:
        print_json(item.to_dict())
        return
    if decision != "cancel":
        _show(item)
    when = f"; it goes out at {item.when_text()}" if decision == "approve" else ""
    typer.echo(f"{done} post {post_id}{when}.")


def approve(post_id: PostId, as_json: JsonOpt = False) -> None:
    """Approve a drafted post (its caption, media and the character's prompt are shown).

    Example: carrier instagram approve 3
    """
    _decide(post_id, "approve", None, as_json, "Approved")


def reject(
    post_id: PostId,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, kept with the post.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject a drafted post: it is never published.

    Example: carrier instagram reject 3 --reason "wrong photo"
    """
    _decide(post_id, "reject", reason, as_json, "Rejected")
