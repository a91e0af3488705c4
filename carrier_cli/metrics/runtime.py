"""What the metrics watch on an AgentRuntime: its turns, its models' calls, its memory
store's searches and its usage queue. `AgentRuntime` calls `attach` when metrics are on
and `detach` when it closes; nothing here runs when they are off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from time import perf_counter
from typing import Any

from carrier_cli.metrics.collectors import CarrierMetrics
from carrier_cli.runtime.types import TurnEvent


def attach(metrics: CarrierMetrics, runtime: Any) -> None:
    """Observe the runtime's model calls (large/small model and a remote embedder: every
    one that carries `observers`), time its memory searches and watch its usage queue."""
    for observers in _observer_lists(runtime):
        if metrics.observe_call not in observers:  # a model shared by two runtimes: once
            observers.append(metrics.observe_call)
    store = runtime.store
    searches = getattr(store, "search_observers", None)
    if searches is not None and _search_observer(metrics, store) not in searches:
        searches.append(_search_observer(metrics, store))
    character = runtime.character.name

    def usage_depth() -> dict[tuple[str, ...], float]:
        depth = _pending(getattr(runtime, "usage", None))
        return {} if depth is None else {(character,): float(depth)}

    metrics.watch("carrier_usage_queue_depth", runtime, usage_depth)


def detach(metrics: CarrierMetrics, runtime: Any) -> None:
    """Stop observing a closed runtime (its model or store may outlive it)."""
    for observers in _observer_lists(runtime):
        while metrics.observe_call in observers:
            observers.remove(metrics.observe_call)
    metrics.unwatch(runtime)


async def observe_turn(
    metrics: CarrierMetrics, events: AsyncGenerator[TurnEvent, None], character: str, client: str
) -> AsyncGenerator[TurnEvent, None]:
    """`events` (one turn) passed through, counted when it ends: by the decision of its
    `done` event, or as error / cancelled when it never got there."""
    started = perf_counter()
    decision = "error"
    try:
        async for event in events:
            if event.kind == "done" and event.result is not None:
                result = event.result
                decision = "replayed" if result.replayed else result.decision.lower()
            yield event
    except (asyncio.CancelledError, GeneratorExit):
        if decision == "error":
            decision = "cancelled"
        raise
    finally:
        await events.aclose()
        metrics.turn_finished(character, client, decision, perf_counter() - started)


class _SearchObserver:
    """Times searches into the histogram, labelled with the store's backend. Equal for the
    same metrics and store, so a store shared by several runtimes is observed once."""

    def __init__(self, metrics: CarrierMetrics, backend: str) -> None:
        self.metrics = metrics
        self.backend = backend

    def __call__(self, seconds: float) -> None:
        self.metrics.search_finished(self.backend, seconds)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _SearchObserver)
            and other.metrics is self.metrics
            and other.backend == self.backend
        )

    def __hash__(self) -> int:
        return hash((id(self.metrics), self.backend))


def _search_observer(metrics: CarrierMetrics, store: Any) -> _SearchObserver:
    return _SearchObserver(metrics, str(getattr(store, "backend", "unknown")))


def _observer_lists(runtime: Any) -> list[list[Any]]:
    """The `observers` lists of the runtime's model and its store's embedder."""
    from carrier_cli.usage.records import observer_lists

    return list(observer_lists(runtime.model, getattr(runtime.store, "embedder", None)))


def _pending(usage: Any) -> int | None:
    """Records a UsageMeter holds that are not written yet: its `pending` (an int, or a
    method returning one). None when there is no meter or it does not say."""
    if usage is None:
        return None
    pending = getattr(usage, "pending", None)
    if callable(pending):
        pending = pending()
    return pending if isinstance(pending, int) else None
