"""The top k of a score array, exactly, without partitioning the whole array.

`np.argpartition` over all 100k scores of a full scan was the largest cost after the scan
itself: 0.2 ms idle and 0.77 ms at load 2.6 on the 2-core machine (k=10), where the
scan takes 2.5-9 ms. Here the scores are viewed as a `rows x groups` matrix (row-major,
so group g holds positions g, g + groups, g + 2 groups, ...), each group's maximum is
taken by one elementwise max down the rows (SIMD, 12-13 us at 100k), and only the
groups whose maximum reaches the k-th largest group maximum are partitioned.

Why that is exact. Let t be the k-th largest of the group maxima: k distinct groups each
hold a score >= t, so at least k scores are >= t and the k-th largest score s_k >= t.
A score in the top k is >= s_k >= t, so its group's maximum is >= t and the group is
kept. More: every score equal to s_k is kept, so the tie rule (equal scores at the k-th
hit go to the lowest positions) picks among the same scores as over the whole array,
and the kept positions are in ascending order (gathered row by row), so position order
among the candidates is position order in the array. The positions past the last full
row are always kept. NaN scores (never from unit vectors) take the plain path, where
argpartition ranks them as it always did.

Measured at 100k scores, k=10, load 2.6: argpartition 770-780 us, group maxima 12-13 us,
their partition ~10 us, the candidates' (~1k) a few us.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# Below this many scores (or fewer than GROUPS_PER_K groups a hit) argpartition over all
# of them is as quick: the grouping's fixed cost is a few numpy calls (~10 us).
MIN_SCORES = 8192
GROUPS_PER_K = 16


def layout(n: int, k: int) -> tuple[int, int] | None:
    """The grid `top` views n scores as for k hits, (rows, groups), or None when it takes
    the plain path. The scan computes the group maxima for this grid while each block of
    scores is still in the cache (vector_scan.scores_and_maxima)."""
    if k <= 0 or k >= n or n < MIN_SCORES:
        return None
    # rows x groups with rows ~ sqrt(n / k): the groups' partition (n / rows values)
    # and the candidates' (k * rows) then cost about the same.
    rows = max(8, math.isqrt(n // k))
    groups = n // rows
    if groups < GROUPS_PER_K * k:
        return None
    return rows, groups


def top(scores: np.ndarray, k: int, maxima: np.ndarray | None = None) -> np.ndarray:
    """Positions of the k highest scores (all of them when there are fewer), best first;
    equal scores by position, and among scores equal to the k-th the lowest positions.
    `maxima`: the group maxima of `layout(len(scores), k)`'s grid, when the scan has
    taken them already (computed here when None)."""
    n = len(scores)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.intp)
    if k >= n:
        return _ordered(scores, np.arange(n))
    grid_shape = layout(n, k)
    if grid_shape is None:
        return plain(scores, k)
    rows, groups = grid_shape
    if maxima is None:
        maxima = scores[: rows * groups].reshape(rows, groups).max(axis=0)
    elif maxima.shape != (groups,):
        raise ValueError(f"maxima of {maxima.shape} for a {rows} x {groups} grid")
    # Each numpy call right after a scan costs ~10-20 us, not 1-3 (the scan streamed the
    # matrix through every cache: numpy's and the interpreter's own data are cold), so
    # this path makes fewer of them. With the maxima taken by the scan, the step after a
    # 100k scan measured 311-354 -> 211-232 us (300 scans alternating, load 2.5-3.3).
    part = np.partition(maxima, groups - k)
    kth_max = part[groups - k]
    # NaN (never from unit vectors) ranks last in a partition, so a NaN anywhere is among
    # the k values from the k-th on (their sum is NaN; -inf with +inf too, harmlessly).
    if math.isnan(float(part[groups - k :].sum())):
        return plain(scores, k)
    kept = np.flatnonzero(maxima >= kth_max)
    # Row by row: positions r * groups + g, ascending (g < groups).
    candidates = (_row_starts(rows, groups) + kept).ravel()
    if rows * groups < n:
        candidates = np.concatenate([candidates, np.arange(rows * groups, n)])
    # (A stable argsort of the ~1k candidates instead of plain's partition: fewer calls
    # but no quicker cold, and 83 against 52 us hot.)
    return candidates[plain(scores[candidates], k)]


@functools.lru_cache(maxsize=8)
def _row_starts(rows: int, groups: int) -> np.ndarray:
    """The first position of each grid row, as a column (broadcast against the kept groups)."""
    starts = np.arange(rows, dtype=np.intp)[:, None] * groups
    starts.flags.writeable = False
    return starts


def plain(scores: np.ndarray, k: int) -> np.ndarray:
    """`top` by argpartition over every score."""
    count = len(scores)
    if k >= count:
        return _ordered(scores, np.arange(count))
    chosen = np.argpartition(scores, count - k)[count - k :]
    # Equal scores at the k-th hit (identical vectors: a fact stored twice, a fragment
    # repeated) go to the lowest positions: argpartition's pick among them depends on the
    # array's length, so the pruned scan (a few candidates) chose other rows than the full
    # scan. Every path's positions are in row order, so position order is row order.
    # Cost: the count over all scores, 100k scores, k=10: 118-120 -> 133-137 us CPU for
    # the top-k step (500 runs alternating, load 4.8); a few rows when pruned.
    kth = scores[chosen].min()
    if np.count_nonzero(scores[chosen] == kth) < np.count_nonzero(scores == kth):
        above = np.flatnonzero(scores > kth)
        chosen = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
    return _ordered(scores, chosen)


def _ordered(scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """`positions` by score descending, then position."""
    return positions[np.lexsort((positions, -scores[positions]))]
