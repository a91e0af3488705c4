"""The metric families Carrier exposes, in a registry of their own.

A dedicated `CollectorRegistry` instead of prometheus_client's global one: an application
that embeds Carrier and has its own /metrics does not find Carrier's series there unasked
(nor its own in ours), and every test gets a fresh, isolated set of counters.

Labels are kept to what is bounded by configuration: character, client, provider, model,
purpose, outcome, decision, backend. Never a room, user or message id: those grow without
bound and would make every scrape, and the Prometheus server, slower each day.

This module imports prometheus_client; `carrier_cli.metrics` imports it only when metrics
are enabled, so `carrier --help` and library users without metrics never load it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from carrier_cli.usage.records import CallRecord

# Turns wait for a model: from a fast IGNORE (tens of ms) to a long reply (a minute).
TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# One provider attempt: a small-model decision (~0.3 s) to a slow large reply.
MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
# The database's part of a vector search: sub-millisecond (SQLite, small) to a slow scan.
SEARCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Reads one watched thing (a bot, a runtime) when scraped: {label values: value}.
GaugeCallback = Callable[[], dict[tuple[str, ...], float]]


class _CallbackGauges(Collector):
    """Queue depths read at scrape time instead of updated on every change: a gauge set on
    each enqueue and dequeue would cost the hot path for a number read once a minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # scrapes run on the HTTP server's thread
        # name -> (help, label names, {owner: callback}); an owner is what `watch` was given.
        self._gauges: dict[str, tuple[str, tuple[str, ...], dict[object, GaugeCallback]]] = {}

    def declare(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        with self._lock:
            self._gauges.setdefault(name, (documentation, labels, {}))

    def add(self, name: str, owner: object, callback: GaugeCallback) -> None:
        with self._lock:
            self._gauges[name][2][owner] = callback

    def remove(self, owner: object) -> None:
        with self._lock:
            for _, _, callbacks in self._gauges.values():
                callbacks.pop(owner, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            gauges = [
                (n, d, labels, list(cbs.values())) for n, (d, labels, cbs) in self._gauges.items()
            ]
        for name, documentation, labels, callbacks in gauges:
            family = GaugeMetricFamily(name, documentation, labels=list(labels))
            values: dict[tuple[str, ...], float] = {}
            for callback in callbacks:
                try:
                    read = callback()
                except Exception:  # a watched object going away must not break the scrape
                    continue
                for key, value in read.items():
                    values[key] = values.get(key, 0.0) + value  # two owners, one label set
            for key, value in values.items():
                family.add_metric(list(key), value)
            yield family


class CarrierMetrics:
    """Every Carrier metric, and the calls that move them. One per process (see
    `carrier_cli.metrics.enable`); tests make their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}  # see _series
        r = self.registry
        self.turns = Counter(
            "carrier_turns",
            "Turns the runtime ran, by the decision they ended with (respond, direct, "
            "mentioned, ignore, stop, replayed; error and cancelled when they did not finish).",
            ["character", "client", "decision"],
            registry=r,
        )
        self.turn_seconds = Histogram(
            "carrier_turn_duration_seconds",
            "Time from a message reaching the runtime to its turn's end: waiting for the "
            "room's earlier turns and the client's delivery of the reply included.",
            ["character", "client"],
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self.model_calls = Counter(
            "carrier_model_calls",
            "Model call attempts (ok; retried: failed, another attempt followed; failed).",
            ["character", "provider", "model", "purpose", "outcome"],
            registry=r,
        )
        self.model_tokens = Counter(
            "carrier_model_tokens",
            "Tokens as the provider reported them (or as counted locally when it did not); "
            "cached is the part of input served from the provider's prompt cache.",
            ["character", "model", "purpose", "kind"],
            registry=r,
        )
        self.model_cost = Counter(
            "carrier_model_cost_usd",
            "Cost in US dollars of the calls whose model has a known price (others are not "
            "counted: an unknown price is not a zero price).",
            ["character", "model", "purpose"],
            registry=r,
        )
        self.model_seconds = Histogram(
            "carrier_model_call_duration_seconds",
            "Duration of one model call attempt, to its last token.",
            ["provider", "model", "purpose"],
            buckets=MODEL_BUCKETS,
            registry=r,
        )
        self.search_seconds = Histogram(
            "carrier_memory_search_duration_seconds",
            "The database's part of a memory vector search (embedding the query excluded).",
            ["backend"],
            buckets=SEARCH_BUCKETS,
            registry=r,
        )
        self.discord_reconnects = Counter(
            "carrier_discord_gateway_reconnects",
            "Discord gateway sessions resumed or re-established after the first connection.",
            ["character"],
            registry=r,
        )
        self.discord_send_retries = Counter(
            "carrier_discord_send_retries",
            "Messages sent to Discord that were answered 429 or 5xx and retried by discord.py.",
            ["character"],
            registry=r,
        )
        self.instagram_posts = Counter(
            "carrier_instagram_posts",
            "Instagram posts by how they ended (published, already_published, failed, stopped).",
            ["outcome"],
            registry=r,
        )
        self.gauges = _CallbackGauges()
        self.gauges.declare(
            "carrier_discord_queued_messages",
            "Discord messages whose turn is queued behind its channel's or running.",
            ("character",),
        )
        self.gauges.declare(
            "carrier_usage_queue_depth",
            "Model call records waiting to be written to the memory database.",
            ("character",),
        )
        r.register(self.gauges)

    # -- recording ----------------------------------------------------------------------------
    def _series(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: prometheus_client validates and locks on
        every `labels()` call (~3 us); the label sets are few, so the children are kept."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_call(self, record: CallRecord) -> None:
        """The CallObserver a model carries (`model.observers`): one record per attempt."""
        context = record.context
        character = context.character or ""
        purpose = context.purpose
        model = record.model
        series = self._series
        series(self.model_calls, character, record.provider, model, purpose, record.outcome).inc()
        usage = record.usage
        if usage.input_tokens:
            series(self.model_tokens, character, model, purpose, "input").inc(usage.input_tokens)
        if usage.output_tokens:
            series(self.model_tokens, character, model, purpose, "output").inc(usage.output_tokens)
        if usage.cached_tokens:
            series(self.model_tokens, character, model, purpose, "cached").inc(usage.cached_tokens)
        if record.cost_usd is not None:
            series(self.model_cost, character, model, purpose).inc(record.cost_usd)
        series(self.model_seconds, record.provider, model, purpose).observe(
            record.total_ms / 1000.0
        )

    def turn_finished(self, character: str, client: str, decision: str, seconds: float) -> None:
        self._series(self.turns, character, client, decision).inc()
        self._series(self.turn_seconds, character, client).observe(seconds)

    def search_finished(self, backend: str, seconds: float) -> None:
        self._series(self.search_seconds, backend).observe(seconds)

    def instagram_post_finished(self, outcome: str) -> None:
        self._series(self.instagram_posts, outcome).inc()

    def watch(self, gauge: str, owner: object, callback: GaugeCallback) -> None:
        """Read `callback` at every scrape into `gauge`, until `unwatch(owner)`."""
        self.gauges.add(gauge, owner, callback)

    def unwatch(self, owner: object) -> None:
        self.gauges.remove(owner)

    # -- exposition ---------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of every metric, for a scrape."""
        return bytes(generate_latest(self.registry))
