"""Exact pruning for the knowledge subset's scan (issue 15 goal 7a): most rows are ruled
out by a bound computed from a quarter to three eighths of each vector, and only the rest
are scored in full.

The scan is memory-bound: the runtime's knowledge search reads every fact, fragment and
lore vector on every turn (30k x 256 float32, 30 MB at 100k memories, ~1.3 ms of CPU).
Cosine scores do not change under a rotation (q.x = Rq.Rx for orthogonal R), and the
rotation onto the rows' principal axes puts most of each vector's length in its first
components. So for every row this keeps `prefix` (the first `width` rotated components)
and `rest` (the length of the remaining ones); by Cauchy-Schwarz

    q.x <= prefix(q).prefix(x) + |rest(q)| |rest(x)|

and a row whose bound is below the k-th best exact score found so far (or the threshold)
cannot be a hit. The rows left are scored on their original vectors, by the same scan as
before, so the hits and their scores are the unpruned scan's. When the bound rules out too
little (vectors whose length is spread over all components) the whole subset is scanned as
before; a run of such searches pauses the pruning for a while, so the price of trying stays
a fraction of the prefix scan.

Measured on the bench's data (bench/runtime_bench.py, 30k knowledge rows at 100k
memories): 99% of the length in 64 of 256 components, ~7 candidates per search; on varied
prose (this repository's docs and code as sentences) 96 components, a median of ~270 of
20k rows left.
"""

from __future__ import annotations

import numpy as np

from carrier_cli.memory.sqlite import vector_scan

# Fewer rows than this are scanned whole: 4k x 256 is ~0.1 ms, not worth a bound.
PRUNE_MIN_ROWS = 4096
# The prefix's width: the fewest components (in steps of STEP) holding ENERGY of the
# fitted rows' squared length, at most MAX_WIDTH_SHARE of the dimension, so a failed
# prune costs at most that share of a scan on top of the scan itself.
STEP = 16
ENERGY = 0.99
MAX_WIDTH_SHARE = 3 / 8
# The axes are fitted on at most this many rows (evenly spread); refitted when the subset
# has doubled since, as its content may have moved.
FIT_SAMPLE = 8192
# Rows are rotated this many at a time (a float64 copy of 16k x 256 is 32 MB).
APPEND_CHUNK = 16_384
# More candidates than this share of the rows: scan them all instead (gathering rows
# one by one costs more per row than the contiguous scan).
MAX_CANDIDATE_SHARE = 0.25
# After MISSES_TO_PAUSE such searches in a row, skip the bound for PAUSE searches.
MISSES_TO_PAUSE = 8
PAUSE = 56
# Slack on the bound for rounding (float32 scans, a float32 copy of the rotation): the
# errors are ~1e-5 at 256-d; a row this close to the cut is scored, not dropped.
MARGIN = 1e-3


class Pruner:
    """The rotated prefixes and rest lengths of one subset's rows, grown as rows arrive."""

    def __init__(self, sample: np.ndarray) -> None:
        dim = sample.shape[1]
        fit = sample.astype(np.float64)
        values, vectors = np.linalg.eigh(fit.T @ fit)
        order = np.argsort(values)[::-1]
        energy = np.cumsum(np.clip(values[order], 0.0, None))
        share = energy / energy[-1] if energy[-1] > 0 else np.ones(dim)
        cap = max(STEP, int(dim * MAX_WIDTH_SHARE) // STEP * STEP)
        self.width = next((w for w in range(STEP, cap + 1, STEP) if share[w - 1] >= ENERGY), cap)
        self.rotation = np.ascontiguousarray(vectors[:, order[: self.width]].T)  # width x dim
        self.prefix = np.zeros((0, self.width), dtype=np.float32)
        self.rest = np.zeros(0, dtype=np.float32)
        self.count = 0
        self.longest = 0.0  # the largest row length, for the margin
        self.misses = 0
        self.paused = 0

    @staticmethod
    def usable(dim: int, count: int) -> bool:
        return count >= PRUNE_MIN_ROWS and dim >= 4 * STEP

    @classmethod
    def fitted(cls, matrix: np.ndarray) -> Pruner:
        """Axes fitted on an even sample of `matrix`, every row of it taken."""
        stride = max(1, len(matrix) // FIT_SAMPLE)
        pruner = cls(matrix[::stride])
        pruner.append(matrix)
        return pruner

    def append(self, vectors: np.ndarray) -> None:
        end = self.count + len(vectors)
        if end > len(self.rest):
            capacity = max(end, 2 * len(self.rest), 1024)
            self.prefix = _grow(self.prefix, capacity)
            self.rest = _grow(self.rest, capacity)
        for start in range(0, len(vectors), APPEND_CHUNK):  # float64 copies stay small
            # float64 for the lengths: rest = sqrt(|x|^2 - |prefix|^2) loses everything
            # to cancellation in float32 when the rest is short.
            exact = vectors[start : start + APPEND_CHUNK].astype(np.float64)
            prefix = exact @ self.rotation.T
            squared = (exact * exact).sum(1)
            rest = np.sqrt(np.clip(squared - (prefix * prefix).sum(1), 0.0, None))
            at = self.count + start
            self.prefix[at : at + len(exact)] = prefix
            self.rest[at : at + len(exact)] = rest
            self.longest = max(self.longest, float(np.sqrt(squared.max())))
        self.count = end

    def candidates(
        self, matrix: np.ndarray, query: np.ndarray, k: int, threshold: float
    ) -> np.ndarray | None:
        """Positions (ascending) of the rows of `matrix` that may be among the top k
        scoring at least `threshold`; None when the bound rules out too few (scan all)."""
        n = self.count
        if self.paused:
            self.paused -= 1
            return None
        exact = query.astype(np.float64)
        q_prefix = self.rotation @ exact
        squared = float(exact @ exact)
        q_length = squared**0.5
        q_rest = max(0.0, squared - float(q_prefix @ q_prefix)) ** 0.5
        bound = vector_scan.scores(self.prefix[:n], q_prefix.astype(np.float32))
        bound += np.float32(q_rest) * self.rest[:n]
        cut = threshold
        if k < n:  # the k best bounds' exact scores: the k-th best is at least their least
            seed = np.argpartition(bound, n - k)[n - k :]
            cut = max(cut, float(vector_scan.scores(matrix[np.sort(seed)], query).min()))
        cut -= MARGIN * max(q_length, 1.0) * max(self.longest, 1.0)
        chosen = np.flatnonzero(bound >= cut)
        if len(chosen) > MAX_CANDIDATE_SHARE * n:
            self.misses += 1
            if self.misses >= MISSES_TO_PAUSE:
                self.misses, self.paused = 0, PAUSE
            return None
        self.misses = 0
        return chosen


def _grow(array: np.ndarray, capacity: int) -> np.ndarray:
    bigger = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger
