"""Usage totals as short text: `/usage` in chat and the `--verbose` footer after a reply."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from carrier_cli.usage.records import UsageTotals


def format_cost(usd: float) -> str:
    """Dollars, with enough digits that a cheap call does not read as $0.00."""
    if usd == 0:
        return "$0.00"
    if usd < 0.01:
        return f"${usd:.4f}"
    return f"${usd:.2f}"


def tokens_line(totals: UsageTotals) -> str:
    return (
        f"{totals.input_tokens:,} in ({totals.cached_tokens:,} cached), "
        f"{totals.output_tokens:,} out"
    )


def cost_text(totals: UsageTotals, unpriced: Sequence[str] = ()) -> str:
    """The cost, or why part of it is unknown (an unpriced model has no cost, not $0)."""
    if not totals.calls:
        return format_cost(0)
    if totals.unpriced_calls == totals.calls:
        names = ", ".join(unpriced) or "this model"
        return f"unknown price for {names}"
    text = format_cost(totals.cost_usd)
    if totals.unpriced_calls:
        names = ", ".join(unpriced) or "some models"
        text += f" + unknown price for {names}"
    return text


def session_report(
    totals: UsageTotals,
    by_model: Mapping[tuple[str, str], UsageTotals],
    unpriced: Sequence[str] = (),
) -> str:
    """`/usage`: the session's calls, tokens and cost, then one line per model."""
    if not totals.calls:
        return "No model calls yet in this session."
    plural = "call" if totals.calls == 1 else "calls"
    lines = [
        f"This session: {totals.calls} model {plural}, {tokens_line(totals)}; "
        f"cost {cost_text(totals, unpriced)}"
    ]
    for (provider, model), each in by_model.items():
        each_plural = "call" if each.calls == 1 else "calls"
        lines.append(
            f"  {provider} {model}: {each.calls} {each_plural}, {tokens_line(each)}; "
            f"{cost_text(each, [model] if each.unpriced_calls else [])}"
        )
    if totals.estimated_calls:
        lines.append(
            f"Tokens of {totals.estimated_calls} call(s) were estimated: the server reported none."
        )
    return "\n".join(lines)


def turn_footer(totals: UsageTotals, unpriced: Sequence[str] = ()) -> str:
    """One dim line after a reply with --verbose: that turn's tokens and cost."""
    if not totals.calls:
        return "no model calls"
    plural = "call" if totals.calls == 1 else "calls"
    estimated = " (estimated)" if totals.estimated_calls else ""
    return (
        f"{totals.calls} model {plural} · {tokens_line(totals)}{estimated} · "
        f"{cost_text(totals, unpriced)}"
    )
