"""The metric families and the model-call observer, fed hand-built CallRecords (what the
providers emit once ucore's observers are in), read back through the Prometheus parser."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from carrier_cli import metrics
from carrier_cli.metrics.collectors import CarrierMetrics
from carrier_cli.usage.records import CallContext, CallRecord, TokenUsage, notify
from tests.metrics.scrape import SERIES_TYPES, families, label_sets, value


def record(
    *,
    purpose: str = "reply",
    outcome: str = "ok",
    cost: float | None = 0.002,
    model: str = "gpt-4o-mini",
    usage: TokenUsage | None = None,
    total_ms: float = 420.0,
) -> CallRecord:
    return CallRecord(
        provider="openai",
        model=model,
        context=CallContext(
            purpose=purpose,
            character="Eliza",
            room_id=uuid.uuid4(),  # never a label
            client="discord",
            turn_id=uuid.uuid4(),
        ),
        outcome=outcome,  # type: ignore[arg-type]
        usage=usage or TokenUsage(input_tokens=120, output_tokens=30, cached_tokens=100),
        total_ms=total_ms,
        cost_usd=cost,
    )


@pytest.fixture
def fresh() -> Iterator[CarrierMetrics]:
    made = metrics.enable()
    try:
        yield made
    finally:
        metrics.disable()


def test_every_family_is_exposed_with_its_type(fresh: CarrierMetrics) -> None:
    parsed = families(fresh.exposition())
    assert {name: parsed[name].type for name in SERIES_TYPES} == SERIES_TYPES
    assert all(parsed[name].documentation for name in SERIES_TYPES)


def test_the_registry_is_carriers_own(fresh: CarrierMetrics) -> None:
    fresh.observe_call(record())
    global_names = {m.name for m in REGISTRY.collect()}
    assert not any(name.startswith("carrier_") for name in global_names)
    assert metrics.enable() is fresh, "enable() is idempotent"
    assert metrics.exposition() == fresh.exposition()
    metrics.disable()
    assert metrics.active() is None
    assert families(metrics.enable().exposition())["carrier_model_calls"].samples == []


def test_observer_counts_calls_tokens_cost_and_latency(fresh: CarrierMetrics) -> None:
    observers = [fresh.observe_call]
    notify(observers, record())
    notify(observers, record(outcome="retried", cost=0.001, total_ms=5000))
    notify(observers, record(purpose="should_respond", cost=0.0001, total_ms=300))
    notify(observers, record(model="local-llama", cost=None))  # no known price
    parsed = families(fresh.exposition())
    calls = "carrier_model_calls_total"
    reply = {"character": "Eliza", "provider": "openai", "model": "gpt-4o-mini"}
    assert value(parsed, calls, **reply, purpose="reply", outcome="ok") == 1
    assert value(parsed, calls, **reply, purpose="reply", outcome="retried") == 1
    assert value(parsed, calls, **reply, purpose="should_respond", outcome="ok") == 1
    tokens = "carrier_model_tokens_total"
    mini = {"character": "Eliza", "model": "gpt-4o-mini"}
    assert value(parsed, tokens, **mini, purpose="reply", kind="input") == 240
    assert value(parsed, tokens, **mini, purpose="reply", kind="output") == 60
    assert value(parsed, tokens, **mini, purpose="reply", kind="cached") == 200
    assert value(parsed, tokens, **mini, purpose="should_respond", kind="input") == 120
    cost = "carrier_model_cost_usd_total"
    assert value(parsed, cost, **mini, purpose="reply") == pytest.approx(0.003)
    assert value(parsed, cost, **mini, purpose="should_respond") == pytest.approx(0.0001)
    # An unpriced model has calls and tokens, and no cost series at all (not a zero cost).
    assert value(parsed, calls, character="Eliza", model="local-llama", outcome="ok") == 1
    assert not [s for s in label_sets(parsed, cost) if s["model"] == "local-llama"]
    duration = "carrier_model_call_duration_seconds"
    where = {"provider": "openai", "model": "gpt-4o-mini", "purpose": "reply"}
    assert value(parsed, duration + "_count", **where) == 2
    assert value(parsed, duration + "_sum", **where) == pytest.approx(5.42)
    assert value(parsed, duration + "_bucket", **where, le="0.5") == 1
    assert value(parsed, duration + "_bucket", **where, le="8.0") == 2


def test_labels_are_bounded(fresh: CarrierMetrics) -> None:
    fresh.observe_call(record())
    fresh.turn_finished("Eliza", "discord", "respond", 1.2)
    parsed = families(fresh.exposition())
    names = {key for family in parsed.values() for s in family.samples for key in s.labels}
    allowed = {"character", "client", "decision", "provider", "model", "purpose", "outcome"}
    assert names <= allowed | {"kind", "backend", "le"}


def test_missing_and_estimated_tokens(fresh: CarrierMetrics) -> None:
    fresh.observe_call(record(usage=TokenUsage(), outcome="failed", cost=None))
    fresh.observe_call(record(usage=TokenUsage(input_tokens=7, output_tokens=3, estimated=True)))
    parsed = families(fresh.exposition())
    tokens = "carrier_model_tokens_total"
    assert value(parsed, tokens, purpose="reply", kind="input") == 7
    assert value(parsed, tokens, purpose="reply", kind="cached") == 0
    assert value(parsed, "carrier_model_calls_total", outcome="failed") == 1


def test_an_anonymous_call_has_empty_character(fresh: CarrierMetrics) -> None:
    fresh.observe_call(CallRecord(provider="anthropic", model="claude", context=CallContext()))
    parsed = families(fresh.exposition())
    assert value(parsed, "carrier_model_calls_total", character="", purpose="small") == 1


def test_turns_searches_and_posts(fresh: CarrierMetrics) -> None:
    fresh.turn_finished("Eliza", "discord", "respond", 0.8)
    fresh.turn_finished("Eliza", "discord", "ignore", 0.04)
    fresh.search_finished("sqlite", 0.002)
    fresh.instagram_post_finished("published")
    parsed = families(fresh.exposition())
    assert value(parsed, "carrier_turns_total", decision="respond", client="discord") == 1
    assert value(parsed, "carrier_turn_duration_seconds_count", character="Eliza") == 2
    assert value(parsed, "carrier_turn_duration_seconds_bucket", le="0.05") == 1
    assert value(parsed, "carrier_memory_search_duration_seconds_count", backend="sqlite") == 1
    assert value(parsed, "carrier_instagram_posts_total", outcome="published") == 1


def test_callback_gauges_are_read_at_scrape_time(fresh: CarrierMetrics) -> None:
    queue = [1, 2, 3]
    owner, other = object(), object()
    fresh.watch("carrier_discord_queued_messages", owner, lambda: {("Eliza",): len(queue)})
    fresh.watch("carrier_discord_queued_messages", other, lambda: {("Eliza",): 1.0})
    fresh.watch("carrier_usage_queue_depth", other, lambda: 1 / 0)  # type: ignore[arg-type, return-value]
    gauge = "carrier_discord_queued_messages"
    assert value(families(fresh.exposition()), gauge, character="Eliza") == 4
    queue.clear()
    fresh.unwatch(other)
    parsed = families(fresh.exposition())
    assert value(parsed, gauge, character="Eliza") == 0
    assert label_sets(parsed, gauge) == [{"character": "Eliza"}]
    fresh.unwatch(owner)
    assert label_sets(families(fresh.exposition()), gauge) == []
