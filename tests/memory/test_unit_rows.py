"""unit_rows (a batch of embedded vectors made unit-length, at ingest) must give what
unit() gives for each row, to the bit: the same text reaches the store both ways."""

from __future__ import annotations

import numpy as np

from carrier_cli.memory.rows import unit, unit_rows


def test_each_row_is_unit_of_that_row_to_the_bit() -> None:
    rng = np.random.default_rng(7)
    scale = rng.uniform(1e-3, 1e3, (300, 1)).astype(np.float32)
    array = rng.standard_normal((300, 256)).astype(np.float32) * scale
    array[3] = 0.0  # no direction
    array[7, 5] = np.nan
    array[9, 1] = np.inf
    rows = unit_rows(array)
    assert len(rows) == len(array)
    for row, got in zip(array, rows, strict=True):
        expected = unit(row)
        if expected is None:
            assert got is None
        else:
            assert got is not None and got.dtype == np.float32
            assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    assert rows[3] is None and rows[7] is None and rows[9] is None


def test_an_empty_batch_has_no_rows() -> None:
    assert unit_rows(np.zeros((0, 256), dtype=np.float32)) == []


def test_rows_of_any_width_and_scale_match_unit_to_the_bit() -> None:
    """The norms come from one batched matmul: for every width an embedder may have and
    for tiny and huge values (overflow to inf included), each must still be the norm
    unit() computes one vector at a time."""
    rng = np.random.default_rng(15)
    for width in (3, 64, 256, 384, 1536, 3072):
        for scale in (1e-20, 1e-3, 1.0, 1e3, 1e18):
            array = (rng.standard_normal((40, width)) * scale).astype(np.float32)
            with np.errstate(over="ignore"):
                rows = unit_rows(array)
                expected = [unit(row) for row in array]
            for got, want in zip(rows, expected, strict=True):
                if want is None:
                    assert got is None
                else:
                    assert got is not None
                    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
