"""`carrier logs` and `carrier logs show ID`: the recorded model calls (logic in
carrier_cli.memory.call_reports; this module parses the flags and prints)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from datetime import datetime

    from rich.text import Text

    from carrier_cli.config import Settings
    from carrier_cli.usage.records import CallRecord

app = typer.Typer(
    help="Recent model calls with tokens, latency and cost (`carrier logs show ID` for one).",
    invoke_without_command=True,
)

UNKNOWN_PRICE = "—"
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _settings() -> Settings:
    from carrier_cli.state import STATE

    return STATE.settings().settings


def _since(value: str | None) -> datetime | None:
    from carrier_cli.memory.call_reports import parse_since

    return parse_since(value, flag="--since") if value is not None else None


def money(cost: float | None) -> str:
    """A cost in dollars, with the digits a fraction of a cent needs; "—" when unknown."""
    if cost is None:
        return UNKNOWN_PRICE
    if cost == 0:
        return "$0"
    if cost >= 1:
        return f"${cost:,.2f}"
    if cost >= 0.01:
        return f"${cost:.4f}"
    if cost < 0.000001:
        return "<$0.000001"
    return "$" + f"{cost:.6f}".rstrip("0")


def tokens_cell(record: CallRecord, *, cached: bool = True) -> str:
    """in/out, or in/out/cached; "~" in front when they were counted locally."""
    usage = record.usage

    def count(value: int | None) -> str:
        return "?" if value is None else str(value)

    text = f"{count(usage.input_tokens)}/{count(usage.output_tokens)}"
    if cached and usage.cached_tokens:
        text += f"/{usage.cached_tokens}"
    return ("~" if usage.estimated else "") + text


def local_time(moment: datetime, *, year: bool = False, short: bool = False) -> str:
    """Local time; `short`: the hour today, else the day (for a narrow list)."""
    from datetime import datetime

    local = moment.astimezone()
    if short:
        return local.strftime("%H:%M" if local.date() == datetime.now().date() else "%m-%d")
    return local.strftime("%Y-%m-%d %H:%M:%S" if year else "%m-%d %H:%M")


def outcome_cell(record: CallRecord, *, short: bool = False) -> Text:
    """The attempt number and outcome (with the error code): "2 retried 429"; `short`
    says retry/fail, for the list."""
    from rich.text import Text

    style = {"ok": "green", "retried": "yellow", "failed": "red"}.get(record.outcome, "")
    word = {"retried": "retry", "failed": "fail"}.get(record.outcome, record.outcome)
    label = (word if short else record.outcome) + (
        f" {record.error_code}" if record.error_code else ""
    )
    return Text.assemble(f"{record.attempt} ", (label, style))


def _print_table(records: list[CallRecord]) -> None:
    from rich import box

    from carrier_cli.output import out, table

    # Compact (no inner rules; the box's one space between columns, no padding): ten
    # columns fit a terminal of 110 columns; a narrower one drops `client` (--client
    # still filters by it) and the cached tokens (`logs show` has them) and shows the
    # time of day or the day, so that 80 still show every number. Names fold; the
    # numbers and the id never do.
    wide = out().width >= 110
    grid = table(box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    grid.add_column("id", style="dim", no_wrap=True, min_width=8)
    grid.add_column("time", no_wrap=True)
    grid.add_column("character", overflow="fold", min_width=9)
    if wide:
        grid.add_column("client", overflow="fold", min_width=5)
    grid.add_column("purpose", overflow="fold", min_width=7)
    grid.add_column("model", overflow="fold", min_width=8)
    grid.add_column("attempt", no_wrap=True, max_width=11)
    grid.add_column("tokens", justify="right", no_wrap=True)
    grid.add_column("ms", justify="right", no_wrap=True)
    grid.add_column("cost", justify="right", no_wrap=True)
    for record in records:
        context = record.context
        client = [context.client or "-"] if wide else []
        grid.add_row(
            record.id.hex[:8],
            local_time(record.created_at, short=not wide),
            context.character or "-",
            *client,
            context.purpose,
            record.model,
            outcome_cell(record, short=True),
            tokens_cell(record, cached=wide),
            f"{record.total_ms:.0f}",
            money(record.cost_usd),
        )
    out().print(grid)
    legend = []
    if any(r.cost_usd is None for r in records):
        legend.append(f"{UNKNOWN_PRICE} unknown price (set model_prices: in config.yaml)")
    if any(r.usage.estimated for r in records):
        legend.append("~ tokens estimated locally (the server reported none)")
    legend.append(
        "tokens: in/out/cached (cached: input served from the provider's cache)"
        if wide and any(r.usage.cached_tokens for r in records)
        else "tokens: in/out"
    )
    for line in legend:
        out().print(line, style="dim", markup=False)


@app.callback()
def logs(
    ctx: typer.Context,
    character: Annotated[
        str | None, typer.Option("--character", "-c", help="Only this character's calls.")
    ] = None,
    room: Annotated[
        str | None,
        typer.Option("--room", help="Room id, or a room's external id or name."),
    ] = None,
    client: Annotated[
        str | None, typer.Option("--client", help="terminal, discord, instagram or api.")
    ] = None,
    purpose: Annotated[
        str | None,
        typer.Option("--purpose", help="reply, should_respond, facts, post, embedding..."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="30m, 12h, 1d, 2w or an ISO date.")
    ] = None,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="How many.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent model calls, newest first: tokens, milliseconds and cost of each attempt."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from carrier_cli.memory.call_reports import call_json, recent_calls
    from carrier_cli.output import notice, print_json

    moment = _since(since)
    records = asyncio.run(
        recent_calls(
            _settings(),
            character=character,
            room=room,
            client=client,
            purpose=purpose,
            since=moment,
            limit=limit,
        )
    )
    filtered = any(v is not None for v in (character, room, client, purpose, since))
    if as_json:
        print_json([call_json(r) for r in records])
    elif not records:
        notice(
            "No model calls match."
            if filtered
            else "No model calls recorded yet: chat with a character and they show up here."
        )
    else:
        _print_table(records)


@app.command("show")
def show(
    call_id: Annotated[str, typer.Argument(help="A call id or its first characters.")],
    as_json: JsonOpt = False,
) -> None:
    """One call in full: context, tokens, timings, cost, and the prompt and output when
    they were stored (log_prompts: true)."""
    import asyncio

    from carrier_cli.memory.call_reports import call_json, find_call
    from carrier_cli.output import key_value_table, out, plain, print_json

    found = asyncio.run(find_call(_settings(), call_id))
    record = found.record
    if as_json:
        print_json({**call_json(record, full=True), "feedback": found.feedback})
        return
    context = record.context
    usage = record.usage
    first = f"{record.first_token_ms:.0f}" if record.first_token_ms is not None else "-"
    rows: list[tuple[str, str | Text]] = [
        ("id", str(record.id)),
        ("time", local_time(record.created_at, year=True)),
        ("character", context.character or "-"),
        ("client", context.client or "-"),
        ("room", _room(context.room_id, found.room)),
        ("turn", str(context.turn_id) if context.turn_id else "-"),
        ("purpose", context.purpose),
        ("model", f"{record.provider}:{record.model}"),
        ("attempt", outcome_cell(record)),
        ("input tokens", _count(usage.input_tokens, usage.estimated)),
        ("output tokens", _count(usage.output_tokens, usage.estimated)),
        ("cached tokens", _count(usage.cached_tokens, usage.estimated)),
        ("first token ms", first),
        ("total ms", f"{record.total_ms:.0f}"),
        ("cost", money(record.cost_usd) if record.cost_usd is not None else "unknown price"),
        ("feedback", feedback_cell(found.feedback)),
    ]
    out().print(key_value_table(rows))
    if record.prompt is None and record.output is None:
        out().print(
            "The prompt and output were not stored (`log_prompts: true` in config.yaml "
            "stores them).",
            style="dim",
            markup=False,
        )
        return
    from rich.panel import Panel

    for title, body in (("prompt", record.prompt), ("output", record.output)):
        text = body if body is not None else "(not stored)"
        out().print(Panel(plain(text), title=title, title_align="left"))


def feedback_cell(feedback: list[dict[str, object]]) -> str:
    """ "1 positive, 1 negative (👍 4000…, 👎 4001…)"; "-" when nobody reacted."""
    if not feedback:
        return "-"
    positive = sum(1 for f in feedback if f.get("feedback") == "positive")
    who = ", ".join(f"{f.get('reaction')} {f.get('person_key')}" for f in feedback[:5])
    more = " …" if len(feedback) > 5 else ""
    return f"{positive} positive, {len(feedback) - positive} negative ({who}{more})"


def _room(room_id: object, name: str | None) -> str:
    if room_id is None:
        return "-"
    return f"{name} ({room_id})" if name else str(room_id)


def _count(value: int | None, estimated: bool) -> str:
    if value is None:
        return "not reported"
    return f"~{value} (estimated)" if estimated else str(value)
