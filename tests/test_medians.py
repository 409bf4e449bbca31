"""The fast medians give NumPy's medians bit for bit: the metrics and levelling that use them must not
change a sidecar value."""

import numpy as np
import pytest

from afmwatch.medians import nanmedian_rows, row_medians, small_median


def _arrays(dtype, seed):
    rng = np.random.default_rng(seed)
    for _ in range(300):
        shape = (int(rng.integers(1, 40)), int(rng.integers(1, 300)))
        z = (rng.standard_normal(shape) * 10 ** rng.uniform(-4, 4)).astype(dtype)
        if rng.random() < 0.3:
            z = np.round(z)  # ties
        yield z


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_medians_are_numpys_bit_for_bit(dtype):
    for z in _arrays(dtype, 1):
        expected = np.median(z, axis=1)
        got = row_medians(z)
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_median_is_numpys_bit_for_bit(dtype):
    for z in _arrays(dtype, 2):
        expected = np.median(z)
        got = small_median(z)
        assert got.dtype == expected.dtype
        assert got == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nanmedian_rows_is_numpys_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    for z in _arrays(dtype, 3):
        z[rng.random(z.shape) < rng.uniform(0, 0.7)] = np.nan
        z = z[np.isfinite(z).any(axis=1)]
        if not z.size:
            continue
        expected = np.nanmedian(z, axis=1)
        got = nanmedian_rows(z)
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected)


def test_a_row_that_differs_changes_only_its_median():
    """Not a tautology of the comparisons above: the medians follow the data row by row."""
    z = np.tile(np.arange(7, dtype=np.float32), (3, 1))
    z[1] += 10
    assert row_medians(z).tolist() == [3.0, 13.0, 3.0]
    z[2, :3] = np.nan
    assert nanmedian_rows(z).tolist() == [3.0, 13.0, 4.5]
