"""The scan behind SQLite vector search: `matrix @ query` (BLAS sgemv), split in two
halves on two threads of our own, with OpenBLAS itself kept to one thread.

Why not let OpenBLAS use its own threads: after each call its worker threads spin for a
while before sleeping. Measured on the 2-core development machine, a 100k x 256 matmul
left ~9 ms of CPU burnt in the 50 ms that followed (einsum: 0.1 ms), taken from the
event loop and the SQLite writer thread: with it the runtime's per-turn CPU rose. Our
own worker waits on a queue instead. The split also scans faster than OpenBLAS's own
two threads on a loaded machine (100k x 256, p50 of 60 queries at load 8: 34-44 ms
split, 60-64 ms OpenBLAS with 2 threads, 55-59 ms with 1).

Where OpenBLAS cannot be found (another BLAS, another platform), nothing is changed and
the scan is one plain matmul: correct either way, only the timing differs.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

# Below this many rows one call is quicker than handing half to the worker (~0.1 ms).
SPLIT_ROWS = 20_000
# ... and below this many values (20k rows of 256-d): the pruned knowledge scan's prefix
# (vector_prune, 30k x 64 at 100k memories) measured 0.33-0.34 -> 0.27-0.28 ms CPU and
# 0.34-0.39 -> 0.29-0.35 ms wall as one call (2-core machine at load 3).
SPLIT_VALUES = SPLIT_ROWS * 256

_state: dict[str, Any] = {}
_once = threading.Lock()


def set_blas_threads(count: int) -> bool:
    """Set the loaded OpenBLAS's thread count (the bench gives its numpy floor back the
    default); False when there is no OpenBLAS to set."""
    setter = _setter()
    if setter is None:
        return False
    setter(count)
    return True


def _setter() -> Callable[[int], Any] | None:
    if "setter" not in _state:
        _state["setter"] = _find_setter()
    setter: Callable[[int], Any] | None = _state["setter"]
    return setter


def _find_setter() -> Callable[[int], Any] | None:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in (
            "scipy_openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_",
            "openblas_set_num_threads",
        ):
            setter: Callable[[int], Any] | None = getattr(library, name, None)
            if setter is not None:
                return setter
    return None


def _pool() -> ThreadPoolExecutor | None:
    """The worker for the second half, or None when the scan stays one plain call."""
    if "pool" not in _state:
        with _once:
            if "pool" not in _state:
                _state["pool"] = (
                    ThreadPoolExecutor(1, thread_name_prefix="carrier-vector-scan")
                    if set_blas_threads(1)
                    else None
                )
    pool = _state["pool"]
    return pool if isinstance(pool, ThreadPoolExecutor) else None


def scores(matrix: np.ndarray, query: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """`matrix @ query` into `out` (allocated when None): dot products with unit vectors
    are cosine similarities."""
    if out is None:
        out = np.empty(len(matrix), dtype=np.float32)
    pool = _pool()  # first: OpenBLAS to one thread, even for a small scan (it would thread)
    if pool is None or len(matrix) < SPLIT_ROWS or matrix.size < SPLIT_VALUES:
        return np.matmul(matrix, query, out=out)
    half = len(matrix) // 2
    second = pool.submit(np.matmul, matrix[half:], query, out=out[half:])
    np.matmul(matrix[:half], query, out=out[:half])
    second.result()
    return out


# Scores a block of the fused scan holds (64 KB of float32): its group maxima are taken
# right after its matmul, from the cache. Each block costs two calls (~5 us), so a
# 1M-row scan (~20 ms) makes ~60 of them.
BLOCK_SCORES = 16_384


def scores_and_maxima(
    matrix: np.ndarray, query: np.ndarray, out: np.ndarray, rows: int, groups: int
) -> np.ndarray:
    """`scores(matrix, query, out)`, and the group maxima of its first `rows * groups`
    scores viewed as `rows x groups` (vector_top.layout's grid: group g holds positions
    g, g + groups, ...), taken block by block while each block's scores are in the cache.

    Why: taken after the whole scan, the maxima read the scores back from memory (the
    scan streamed the matrix through the cache since): vector_top.top measured ~0.3 ms
    after a 100k scan on the loaded 2-core machine against ~0.05 ms alone."""
    n = len(matrix)
    if rows * groups > n or rows <= 0 or groups <= 0:
        raise ValueError(f"a {rows} x {groups} grid over {n} scores")
    per = max(1, BLOCK_SCORES // groups)  # grid rows a block
    pool = _pool()
    if pool is None or n < SPLIT_ROWS or matrix.size < SPLIT_VALUES:
        return _blocks(matrix, query, out, 0, rows, groups, per, n)
    half = rows // 2
    second = pool.submit(_blocks, matrix, query, out, half, rows, groups, per, n)
    maxima = _blocks(matrix, query, out, 0, half, groups, per, half * groups)
    return np.maximum(maxima, second.result(), out=maxima)


def _blocks(
    matrix: np.ndarray,
    query: np.ndarray,
    out: np.ndarray,
    first: int,
    last: int,
    groups: int,
    per: int,
    end: int,
) -> np.ndarray:
    """Score grid rows first..last-1 block by block, keeping their group maxima, then
    the positions from grid row `last` to `end` (no maxima)."""
    maxima = np.full(groups, -np.inf, dtype=np.float32)
    for row in range(first, last, per):
        upto = min(row + per, last)
        a, b = row * groups, upto * groups
        block = np.matmul(matrix[a:b], query, out=out[a:b])
        np.maximum(maxima, block.reshape(upto - row, groups).max(axis=0), out=maxima)
    if end > last * groups:
        np.matmul(matrix[last * groups : end], query, out=out[last * groups : end])
    return maxima
