"""`carrier usage`: calls, tokens and cost per character, model, client, purpose or day,
and a bar chart of the days (logic in carrier_cli.memory.call_reports)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

import typer

if TYPE_CHECKING:
    from carrier_cli.memory.call_reports import UsageReport
    from carrier_cli.memory.calls import GroupBy
    from carrier_cli.usage.records import UsageTotals

BAR_WIDTH = 32
_EIGHTHS = " ▏▎▍▌▋▊▉"


def register(app: typer.Typer) -> None:
    @app.command("usage")
    def usage(
        by: Annotated[
            str | None,
            typer.Option("--by", help="character (default), model, client, purpose or day."),
        ] = None,
        since: Annotated[
            str, typer.Option("--since", help="30m, 12h, 1d, 2w or an ISO date.")
        ] = "30d",
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Totals of the recorded model calls (calls, tokens, cost) and, by default or
        with --by day, a bar chart of the days."""
        import asyncio

        from carrier_cli.errors import InputError
        from carrier_cli.memory.call_reports import parse_since, usage_report
        from carrier_cli.memory.calls import GROUPS
        from carrier_cli.output import notice, print_json
        from carrier_cli.state import STATE

        group = (by or "character").lower()
        if group not in GROUPS:
            raise InputError(f"--by {by!r} is not a grouping.", hint=f"Use {', '.join(GROUPS)}.")
        moment = parse_since(since, flag="--since")
        report = asyncio.run(
            usage_report(
                STATE.settings().settings,
                by=cast("GroupBy", group),
                since=moment,
                chart=by is None,
            )
        )
        if as_json:
            print_json(report.to_json())
        elif not report.rows:
            notice(f"No model calls recorded (--since {since}).")
        else:
            print_report(report)


def cost_cell(totals: UsageTotals) -> str:
    from carrier_cli.cli.logs import UNKNOWN_PRICE, money

    if totals.unpriced_calls == totals.calls:
        return UNKNOWN_PRICE
    text = money(totals.cost_usd)
    return f"{text} + {totals.unpriced_calls} {UNKNOWN_PRICE}" if totals.unpriced_calls else text


def print_report(report: UsageReport) -> None:
    from rich.text import Text

    from carrier_cli.cli.logs import UNKNOWN_PRICE
    from carrier_cli.output import out, table

    grid = table(show_footer=len(report.rows) > 1)
    total = report.total
    grid.add_column(report.by, footer="total")
    grid.add_column("calls", justify="right", footer=str(total.calls))
    grid.add_column("tokens in", justify="right", footer=str(total.input_tokens))
    grid.add_column("tokens out", justify="right", footer=str(total.output_tokens))
    grid.add_column("cached", justify="right", footer=str(total.cached_tokens))
    grid.add_column("cost", justify="right", footer=cost_cell(total))
    for key, row in report.rows:
        grid.add_row(
            key,
            str(row.calls),
            ("~" if row.estimated_calls else "") + str(row.input_tokens),
            ("~" if row.estimated_calls else "") + str(row.output_tokens),
            str(row.cached_tokens),
            cost_cell(row),
        )
    out().print(grid)
    notes = []
    if total.unpriced_calls:
        notes.append(
            f"{UNKNOWN_PRICE} unknown price: {total.unpriced_calls} calls to models without "
            "a price (not counted in the cost; set model_prices: in config.yaml)"
        )
    if total.estimated_calls:
        notes.append(f"~ includes {total.estimated_calls} calls with locally estimated tokens")
    for note in notes:
        out().print(note, style="dim", markup=False)
    if report.days:
        out().print()
        out().print(Text("per day", style="bold"))
        out().print(day_chart(report.days))


def bar(value: float, top: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of `value` against `top`, in eighths of a character."""
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def _day_cost(totals: UsageTotals) -> str:
    from carrier_cli.cli.logs import UNKNOWN_PRICE, money

    if not totals.calls:
        return ""
    return UNKNOWN_PRICE if totals.unpriced_calls == totals.calls else money(totals.cost_usd)


def day_chart(days: list[tuple[str, UsageTotals]]) -> object:
    """One row per day: the date, a bar (cost when any day has a known cost, else
    tokens), the tokens and the cost."""
    from rich.text import Text

    from carrier_cli.output import table

    by_cost = any(t.cost_usd > 0 for _, t in days)
    values = [(t.cost_usd if by_cost else float(t.input_tokens + t.output_tokens)) for _, t in days]
    top = max(values, default=0.0)
    grid = table(show_header=False, box=None, padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True, min_width=BAR_WIDTH)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    for (day, totals), value in zip(days, values, strict=True):
        tokens = totals.input_tokens + totals.output_tokens
        grid.add_row(
            day,
            Text(bar(value, top), style="cyan"),
            f"{tokens} tokens",
            _day_cost(totals),
        )
    return grid
