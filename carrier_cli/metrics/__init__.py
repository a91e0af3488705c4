"""Prometheus metrics: opt-in, one set per process, off by default.

`carrier run --metrics-port N` calls `enable()` and `serve_metrics(N)` before it opens any
runtime; every part that has something to count (the runtime, its models and memory
store, the Discord bot, the Instagram publisher) asks `active()` once when it is built and
does nothing more when it says None. So without metrics the hot path pays one attribute
check per turn, and prometheus_client is never imported (this module is light: the
families live in `collectors`, imported by `enable()`).

A library user embedding Carrier does the same: `metrics.enable()` before
`AgentRuntime.create(...)`, then serves `metrics.exposition()` (with
`metrics.CONTENT_TYPE_HEADER`) at its own /metrics, or calls `serve_metrics(port)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from carrier_cli.metrics.collectors import CarrierMetrics
    from carrier_cli.metrics.server import MetricsServer

__all__ = [
    "CONTENT_TYPE_HEADER",
    "active",
    "disable",
    "enable",
    "exposition",
    "serve_metrics",
]

# The Content-Type of `exposition()`: the classic text format every Prometheus version
# reads (our names need none of the 1.0.0 format's escaping), and what prometheus_client's
# own server answers a plain scrape with. Here so a web app needs no prometheus_client.
CONTENT_TYPE_HEADER = "text/plain; version=0.0.4; charset=utf-8"

_active: CarrierMetrics | None = None


def active() -> CarrierMetrics | None:
    """The process's metrics when enabled, else None (the default)."""
    return _active


def enable() -> CarrierMetrics:
    """Turn metrics on for what is built from now on (idempotent: returns the same set).
    Runtimes created before this call are not counted."""
    global _active
    if _active is None:
        from carrier_cli.metrics.collectors import CarrierMetrics

        _active = CarrierMetrics()
    return _active


def disable() -> None:
    """Turn metrics off again for what is built from now on (tests)."""
    global _active
    _active = None


def exposition() -> bytes:
    """The Prometheus text exposition of this process's metrics (enabling them if they
    were not: asking for metrics means wanting them). For `carrier serve`'s /metrics."""
    return enable().exposition()


def serve_metrics(port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve the metrics at http://HOST:PORT/metrics on a daemon thread until `close()`
    (or the process ends). Raises InputError (exit 2) naming --metrics-port when the port
    is in use or cannot be bound."""
    from carrier_cli.metrics.server import start

    return start(enable(), port, host)
