"""`carrier instagram insights [POST_ID] [--since 30d] [--json]`: a table of what each post
achieved and a per-day chart (logic in carrier_cli.clients.instagram.insights)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.insights import InsightsReport

CHART_WIDTH = 28
# (Meta's metric name, the column's label)
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("reach", "reach"),
    ("views", "views"),
    ("likes", "likes"),
    ("comments", "comments"),
    ("saved", "saves"),
    ("shares", "shares"),
)


def register(app: typer.Typer) -> None:
    @app.command("insights")
    def insights(
        post_id: Annotated[
            str | None,
            typer.Argument(help="A journal id (see `history`) or a media id; default: all."),
        ] = None,
        since: Annotated[
            str, typer.Option("--since", help="30m, 12h, 1d, 2w or an ISO date.")
        ] = "30d",
        character: Annotated[
            str | None,
            typer.Option("--character", help="The character's own account (account_key)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
    ) -> None:
        """Reach, views, likes, comments, saves and shares per post, and per day."""
        import asyncio

        from carrier_cli.clients.instagram.service import insights as collect
        from carrier_cli.memory.call_reports import parse_since
        from carrier_cli.output import notice, print_json
        from carrier_cli.state import STATE

        moment = parse_since(since, flag="--since")
        result = asyncio.run(
            collect(STATE.settings().settings, since=moment, post=post_id, character=character)
        )
        if as_json:
            print_json(result.to_dict())
        elif not result.posts:
            notice(f"No posts on the account since {moment:%Y-%m-%d %H:%M} UTC (--since {since}).")
        else:
            print_report(result)


def _number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def print_report(result: InsightsReport) -> None:
    from rich.text import Text

    from carrier_cli.cli.usage import bar
    from carrier_cli.output import out, table

    grid = table(show_footer=len(result.posts) > 1)
    totals = result.totals
    grid.add_column("post", footer="total")
    grid.add_column("date", no_wrap=True)
    grid.add_column("caption", max_width=32, no_wrap=True, overflow="ellipsis")
    for name, label in _COLUMNS:
        grid.add_column(label, justify="right", footer=_number(totals[name]))
    for p in result.posts:
        who = str(p.journal_id) if p.journal_id is not None else p.media_id
        when = f"{p.timestamp:%Y-%m-%d}" if p.timestamp else ""
        caption = Text(p.caption.replace("\n", " ") or f"({p.media_type.lower()})")
        if p.error:
            grid.add_row(who, when, caption, Text(f"no insights: {p.error}", style="dim"))
            continue
        grid.add_row(who, when, caption, *(_number(p.metrics.get(n)) for n, _ in _COLUMNS))
    out().print(grid)
    days = result.days()
    if len(days) < 2:
        return
    from carrier_cli.clients.instagram.insights import sparkline

    out().print()
    out().print(Text("per day (posts published that day): views", style="bold"))
    views = [d.metrics.get("views", 0) for d in days]
    out().print(Text(f"{days[0].day:%m-%d} {sparkline(views)} {days[-1].day:%m-%d}"))
    top = max(views, default=0)
    chart = table(show_header=False, box=None, padding=(0, 1))
    chart.add_column(no_wrap=True)
    chart.add_column(no_wrap=True, min_width=CHART_WIDTH)
    chart.add_column(justify="right", no_wrap=True)
    chart.add_column(justify="right", no_wrap=True, style="dim")
    for d, value in zip(days, views, strict=True):
        if d.posts:
            posts = f"{d.posts} post{'s' if d.posts > 1 else ''}"
            chart.add_row(f"{d.day:%Y-%m-%d}", bar(value, top, CHART_WIDTH), f"{value:,}", posts)
    out().print(chart)
