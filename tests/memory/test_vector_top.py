"""vector_top.top: the top k by group maxima equals a full stable sort of the scores,
ties included (issue 15: exact search stays exact)."""

from __future__ import annotations

import numpy as np
import pytest

from carrier_cli.memory.sqlite import vector_top


def expected(scores: np.ndarray, k: int) -> list[int]:
    """Score descending, then position: what every search path has to give."""
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize("n", [0, 1, 9, 10, 11, 8191, 8192, 10_007, 100_000])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_equals_a_stable_sort_on_random_scores(n: int, k: int) -> None:
    rng = np.random.default_rng(n * 1000 + k)
    for _ in range(3):
        scores = rng.standard_normal(n).astype(np.float32)
        assert vector_top.top(scores, k).tolist() == expected(scores, k)


@pytest.mark.parametrize("n", [10_000, 100_003])
def test_ties_at_the_kth_go_to_the_lowest_positions(n: int) -> None:
    """Few distinct values: the k-th score is shared by thousands of positions in many
    groups, and the lowest of them must be chosen (as the full path chooses)."""
    rng = np.random.default_rng(n)
    for k in (1, 10, 50):
        scores = rng.integers(0, 20, n).astype(np.float32)
        assert vector_top.top(scores, k).tolist() == expected(scores, k)
        # One duplicated best vector (a fact stored twice) beside random scores.
        scores = rng.standard_normal(n).astype(np.float32)
        scores[[n - 1, 5, n // 2]] = 9.0
        assert vector_top.top(scores, k).tolist() == expected(scores, k)


def test_the_grouped_path_is_taken_and_agrees_with_the_plain_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 100k scores only the candidate groups are partitioned (not all 100k), and the
    answer is the plain path's."""
    rng = np.random.default_rng(5)
    scores = rng.standard_normal(100_000).astype(np.float32)
    sizes: list[int] = []
    plain = vector_top.plain

    def counting(values: np.ndarray, k: int) -> np.ndarray:
        sizes.append(len(values))
        return plain(values, k)

    monkeypatch.setattr(vector_top, "plain", counting)
    assert vector_top.top(scores, 10).tolist() == plain(scores, 10).tolist()
    assert sizes and max(sizes) < 5_000


def test_minus_infinity_and_nan() -> None:
    rng = np.random.default_rng(9)
    scores = rng.standard_normal(50_000).astype(np.float32)
    scores[::3] = -np.inf
    assert vector_top.top(scores, 10).tolist() == expected(scores, 10)
    scores[123] = np.nan  # takes the plain path: ranked as argpartition ranks NaN
    assert vector_top.top(scores, 10).tolist() == vector_top.plain(scores, 10).tolist()


@pytest.mark.parametrize("n", [8192, 10_007, 100_000, 250_013])
@pytest.mark.parametrize("k", [1, 10])
@pytest.mark.parametrize("split", [False, True])
def test_maxima_taken_by_the_scan_give_the_same_top(
    n: int, k: int, split: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vector_scan.scores_and_maxima (the group maxima taken block by block during the
    scan, on one thread or two) gives the scores of a plain matmul and the maxima top
    would take itself, so the same top k."""
    from carrier_cli.memory.sqlite import vector_scan

    if split:
        monkeypatch.setattr(vector_scan, "SPLIT_ROWS", 0)
        monkeypatch.setattr(vector_scan, "SPLIT_VALUES", 0)
        monkeypatch.setattr(vector_scan, "BLOCK_SCORES", 1000)  # many blocks, ragged last
    rng = np.random.default_rng(n + k)
    matrix = rng.standard_normal((n, 16)).astype(np.float32)
    query = rng.standard_normal(16).astype(np.float32)
    grid = vector_top.layout(n, k)
    assert grid is not None
    rows, groups = grid
    out = np.full(n, np.nan, dtype=np.float32)
    maxima = vector_scan.scores_and_maxima(matrix, query, out, rows, groups)
    # Equal to a matmul's up to BLAS's rounding (its kernel for a block's last few rows
    # sums in another order: the last bit, as for the two halves of vector_scan.scores);
    # the maxima are exactly those of the scores written, which is what top relies on.
    np.testing.assert_allclose(out, np.matmul(matrix, query), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(maxima, out[: rows * groups].reshape(rows, groups).max(axis=0))
    assert vector_top.top(out, k, maxima).tolist() == expected(out, k)
    with pytest.raises(ValueError):
        vector_top.top(out, k, maxima[:-1])
