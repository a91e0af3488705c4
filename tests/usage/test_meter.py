"""UsageMeter: prices and sums records, drops prompts unless asked, writes in batches in
the background, never blocks or fails a turn."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

import pytest

from carrier_cli.redact import register_secret
from carrier_cli.usage.meter import UsageMeter
from carrier_cli.usage.prices import ModelPrice
from carrier_cli.usage.records import CallContext, CallRecord, TokenUsage


class ListSink:
    """A store stand-in with the agreed `record_calls`."""

    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[CallRecord]] = []
        self.failures = failures

    async def record_calls(self, records: Sequence[CallRecord]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("database is locked")
        self.batches.append(list(records))

    @property
    def records(self) -> list[CallRecord]:
        return [r for batch in self.batches for r in batch]


def record(
    model: str = "gpt-4o-mini",
    *,
    turn: uuid.UUID | None = None,
    tokens: tuple[int, int, int] = (1000, 100, 0),
    prompt: str | None = "the prompt",
) -> CallRecord:
    return CallRecord(
        provider="openai",
        model=model,
        context=CallContext(purpose="reply", turn_id=turn),
        usage=TokenUsage(*tokens),
        prompt=prompt,
        output="the output",
    )


async def test_observe_prices_sums_and_flushes_in_the_background() -> None:
    sink = ListSink()
    meter = UsageMeter(sink, character="Eliza")
    meter.flush_interval = 0.01
    turn = uuid.uuid4()
    meter.observe(record(turn=turn))
    meter.observe(record("llama3.1", turn=turn))
    first = meter.turn_totals(turn)
    assert first.calls == 2 and first.unpriced_calls == 1
    assert first.cost_usd == pytest.approx((1000 * 0.15 + 100 * 0.60) / 1e6)
    assert meter.unpriced_models(turn) == ["llama3.1"]
    assert meter.totals().input_tokens == 2000
    for _ in range(100):
        if sink.records:
            break
        await asyncio.sleep(0.01)
    assert len(sink.records) == 2  # written without aclose
    stored = sink.records[0]
    assert stored.cost_usd is not None and stored.context.character == "Eliza"
    assert stored.prompt is None and stored.output is None  # log_prompts is off
    await meter.aclose()


async def test_log_prompts_keeps_them_scrubbed() -> None:
    secret = "sk-meter-secret-0123456789abcdef"
    register_secret(secret)
    sink = ListSink()
    meter = UsageMeter(sink, log_prompts=True)
    meter.observe(record(prompt=f"my key is {secret}"))
    await meter.aclose()
    [stored] = sink.records
    assert stored.prompt is not None and "my key is" in stored.prompt
    assert secret not in stored.prompt
    assert stored.output == "the output"


async def test_overrides_price_any_model() -> None:
    meter = UsageMeter(None, prices={"llama3.1": ModelPrice(1.0, 2.0)})
    meter.observe(record("llama3.1", tokens=(1_000_000, 1_000_000, 0)))
    assert meter.totals().cost_usd == pytest.approx(3.0)
    assert meter.totals().unpriced_calls == 0


async def test_batches_are_bounded_and_aclose_writes_the_rest() -> None:
    sink = ListSink()
    meter = UsageMeter(sink)
    meter.flush_interval = 60.0  # only a full batch or aclose writes
    for _ in range(450):
        meter.observe(record())
    await asyncio.sleep(0.05)
    assert sum(len(b) for b in sink.batches) >= 200
    assert all(len(b) <= meter.batch_size for b in sink.batches)
    await meter.aclose()
    assert len(sink.records) == 450
    assert meter.pending == 0


async def test_a_full_queue_drops_and_warns_once_without_blocking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = ListSink()
    meter = UsageMeter(sink)
    meter.queue_limit = 5
    with caplog.at_level(logging.WARNING, logger="carrier.usage"):
        for _ in range(8):  # no await in between: the writer cannot run
            meter.observe(record())
    assert meter.pending == 5 and meter.dropped == 3
    assert meter.totals().calls == 8  # the session's totals still count every call
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 1
    await meter.aclose()
    assert len(sink.records) == 5


async def test_a_failing_sink_is_retried_then_reported(caplog: pytest.LogCaptureFixture) -> None:
    flaky = ListSink(failures=2)
    meter = UsageMeter(flaky)
    meter.retry_delay = 0.001
    meter.observe(record())
    await meter.aclose()
    assert len(flaky.records) == 1  # the third attempt went through

    broken = ListSink(failures=100)
    meter = UsageMeter(broken)
    meter.retry_delay = 0.001
    with caplog.at_level(logging.WARNING, logger="carrier.usage"):
        meter.observe(record())
        await meter.aclose()  # never raises
    assert meter.lost == 1
    assert any("could not store 1 model call" in r.getMessage() for r in caplog.records)


async def test_turn_totals_are_kept_for_the_last_64_turns() -> None:
    meter = UsageMeter(None)
    turns = [uuid.uuid4() for _ in range(70)]
    for turn in turns:
        meter.observe(record(turn=turn))
    assert meter.turn_totals(turns[0]).calls == 0
    assert meter.turn_totals(turns[-1]).calls == 1
    assert meter.turn_totals(uuid.uuid4()).calls == 0


def test_observe_outside_a_loop_queues_for_aclose() -> None:
    sink = ListSink()
    meter = UsageMeter(sink)
    meter.observe(record())
    assert meter.pending == 1
    asyncio.run(meter.aclose())
    assert len(sink.records) == 1


async def test_a_sink_without_record_calls_keeps_totals_only() -> None:
    meter = UsageMeter(object())
    meter.observe(record())
    assert meter.pending == 0 and meter.totals().calls == 1
    await meter.aclose()
