"""memory/heap.py: the heap frozen for a bulk load, counted, and always unfrozen at the
end, and never unfreezing a freeze that is not the load's."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from carrier_cli import startup_gc
from carrier_cli.memory import heap
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind
from tests.memory.conftest import HashEmbedder


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    assert heap.depth() == 0, "a frozen() body was left open"
    gc.unfreeze()


def test_the_outermost_body_freezes_and_only_its_exit_unfreezes() -> None:
    assert gc.get_freeze_count() == 0
    with heap.frozen():
        assert gc.get_freeze_count() > 0
        with heap.frozen():
            assert heap.depth() == 2
        assert gc.get_freeze_count() > 0, "an inner exit unfroze the outer load's heap"
    assert gc.get_freeze_count() == 0
    assert heap.depth() == 0


def test_overlapping_bodies_share_one_freeze() -> None:
    # Two loads as two coroutines would run them: started and ended in either order.
    heap.enter()
    heap.enter()
    heap.leave()  # the first one started ends first
    assert gc.get_freeze_count() > 0
    heap.leave()
    assert gc.get_freeze_count() == 0


def test_a_failure_in_the_body_unfreezes() -> None:
    with pytest.raises(ValueError), heap.frozen(), heap.frozen():
        raise ValueError("the load failed")
    assert gc.get_freeze_count() == 0 and heap.depth() == 0


def test_leave_without_enter_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        heap.leave()
    assert heap.depth() == 0


def test_a_freeze_made_before_the_load_is_left_alone() -> None:
    gc.freeze()  # what `carrier run` does once started (startup_gc.resume)
    frozen = gc.get_freeze_count()
    with heap.frozen():
        pass
    # An unfreeze empties the permanent generation; frozen objects freed meanwhile (by
    # this or another thread: the count is of live objects) only shave a few off it.
    assert gc.get_freeze_count() > frozen // 2 > 0, "the load unfroze a freeze not its own"


def test_a_freeze_for_good_during_the_load_survives_its_end() -> None:
    with heap.frozen():
        startup_gc.pause()
        startup_gc.resume()  # collects, then freezes for the process's life
    assert gc.get_freeze_count() > 0


def test_objects_made_during_the_load_are_not_frozen() -> None:
    import weakref

    class Node:
        other: object = None

    with heap.frozen():
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the collector frees it
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None, "a cycle made during the load was not collected"


async def test_a_bulk_load_freezes_the_heap_and_unfreezes_it_even_when_it_fails(
    db_url: str,
) -> None:
    store = await MemoryStore.open(db_url, embedder=HashEmbedder())
    try:
        agent = await store.ensure_agent("tester")
        async with store.bulk_load(rows=3):
            assert gc.get_freeze_count() > 0 and heap.depth() == 1
            await store.add_many(
                [
                    Memory(agent_id=agent, content={"text": f"fact {i}"}, kind=MemoryKind.FACT)
                    for i in range(3)
                ]
            )
        assert gc.get_freeze_count() == 0 and heap.depth() == 0
        with pytest.raises(ZeroDivisionError):
            async with store.bulk_load(rows=1):
                assert heap.depth() == 1
                raise ZeroDivisionError
        assert gc.get_freeze_count() == 0 and heap.depth() == 0
        assert await store.count(agent_id=agent) == 3
    finally:
        await store.close()
