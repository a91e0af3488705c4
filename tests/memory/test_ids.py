"""memory/ids.py: memory ids are UUIDv7s, strictly increasing within a process (also
within one ms and when the clock steps back), unique, made from a pooled urandom that a
forked child does not share; and a short id is resolved back from a listing."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid

import pytest

from carrier_cli.memory import ids
from carrier_cli.memory.ids import new_id, short
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind
from carrier_cli.runtime.turn.ids import message_id, reply_id
from tests.memory.conftest import HashEmbedder


def test_the_ids_are_version_7_rfc_variant_uuids_in_the_usual_form() -> None:
    made = [new_id() for _ in range(2000)]
    for value in made:
        assert type(value) is uuid.UUID
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert uuid.UUID(str(value)) == value and hash(uuid.UUID(str(value))) == hash(value)
        assert len(str(value)) == 36 and str(value).count("-") == 4
        assert value.is_safe is uuid.SafeUUID.unknown
    # The time in the first 48 bits is now's, in ms.
    assert abs((made[-1].int >> 80) - time.time_ns() // 1_000_000) < 10_000


def test_the_default_memory_id_is_one() -> None:
    memory = Memory(agent_id=uuid.uuid4(), content={"text": "x"})
    assert memory.id.version == 7
    assert Memory(agent_id=memory.agent_id, content={}).id > memory.id


def test_ids_increase_strictly_within_one_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = time.time_ns()
    monkeypatch.setattr(ids.time, "time_ns", lambda: frozen)
    made = [new_id() for _ in range(5000)]
    assert len({m.int >> 80 for m in made}) == 1, "all in the same ms"
    assert made == sorted(made) and len(set(made)) == len(made)
    assert [str(m) for m in made] == sorted(str(m) for m in made)  # as text, as SQLite has them


def test_ids_keep_increasing_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time_ns()
    before = new_id()
    monkeypatch.setattr(ids.time, "time_ns", lambda: now - 5_000_000_000)  # 5 s back
    after = [new_id() for _ in range(100)]
    assert [before, *after] == sorted([before, *after])


def test_a_full_ms_moves_to_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = time.time_ns()
    monkeypatch.setattr(ids.time, "time_ns", lambda: frozen)
    first = new_id()
    ids._last_rand = ids._RAND_MASK  # no room left in this ms (not restored: new_id sets it)
    after = new_id()
    assert after > first and (after.int >> 80) == (first.int >> 80) + 1


def test_ids_are_unique_across_threads() -> None:
    made: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def make(out: list[uuid.UUID]) -> None:
        out.extend(new_id() for _ in range(5000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [m for out in made for m in out]
    assert len(set(every)) == len(every) == 20_000
    for out in made:
        assert out == sorted(out), "one thread's ids in order"


def test_one_urandom_call_makes_many_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.urandom

    def counted(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(ids.os, "urandom", counted)
    ids._pool = b""  # a fresh pool (not restored: bytes once used are not used again)
    for _ in range(1000):
        new_id()
    per_call = ids.POOL_BYTES // ids.CHUNK
    assert per_call == 409
    assert calls == [ids.POOL_BYTES] * -(-1000 // per_call)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_draws_its_own_random_bits() -> None:
    ids._pool = b""
    new_id()  # a fresh pool, with 408 ids' bytes left in it
    assert ids._offset == ids.CHUNK
    pending = ids._pool[ids._offset : ids._offset + ids.CHUNK]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once
        try:
            was_reset = ids._pool == b"" and ids._last_ms == -1
            child = new_id()
            os.write(write, f"{int(was_reset)} {child.hex} {ids._pool.hex()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        reset, child_hex, child_pool = pipe.read().split()
    os.waitpid(pid, 0)
    parent = new_id()
    assert reset == "1", "the child kept its parent's pool"
    assert bytes.fromhex(child_pool)[: ids.CHUNK] != pending
    assert uuid.UUID(child_hex) != parent
    assert uuid.UUID(child_hex).int & ((1 << 62) - 1) != parent.int & ((1 << 62) - 1)


def test_turn_ids_without_a_platform_message_id_are_v7() -> None:
    from carrier_cli.runtime.types import IncomingMessage

    message = IncomingMessage(
        text="hi", source="terminal", room_key="r", sender_key="s", sender_name="S"
    )
    agent = uuid.uuid4()
    assert message_id(message, agent).version == 7
    assert reply_id(message, agent).version == 7


def test_short_is_the_last_8_hex_digits() -> None:
    value = uuid.UUID("0190f3c2-7a1b-7c3d-8e4f-a1b2c3d4e5f6")
    assert short(value) == "c3d4e5f6"


async def test_memories_made_together_are_told_apart_by_their_short_ids(db_url: str) -> None:
    """Their first 8 hex digits are the same (the time); the listing's last 8 resolve."""
    store = await MemoryStore.open(db_url, embedder=HashEmbedder())
    try:
        agent = await store.ensure_agent("tester")
        made = await store.add_many(
            [
                Memory(agent_id=agent, content={"text": f"fact {i}"}, kind=MemoryKind.FACT)
                for i in range(20)
            ]
        )
        assert len({m.id.hex[:8] for m in made}) < len(made)
        for memory in made:
            assert await store.resolve_id(short(memory.id)) == memory.id
            assert await store.resolve_id(str(memory.id)) == memory.id
            assert await store.resolve_id(memory.id.hex[-12:].upper()) == memory.id
        # A start shared by several is ambiguous, as before; an unshared start resolves.
        from carrier_cli.errors import InputError

        with pytest.raises(InputError, match="several memories"):
            await store.resolve_id(made[0].id.hex[:8])
        own = uuid.UUID("5f0c9e3c-1111-4222-8333-444455556666")  # a uuid4 stored before
        await store.add(Memory(agent_id=agent, content={"text": "older"}, id=own))
        assert await store.resolve_id("5f0c9e3c") == own
        assert await store.resolve_id(short(own)) == own
    finally:
        await store.close()


def test_the_module_is_cheap_to_import() -> None:
    import subprocess

    code = "import sys, carrier_cli.memory.types; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
