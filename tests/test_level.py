import warnings

import numpy as np

from afmwatch.level import align_rows, level_array, plane_fit, polynomial_fit


def _surface(rng):
    y, x = np.mgrid[0:128, 0:160].astype(np.float32)
    bumps = np.sin(x / 7.0) * np.cos(y / 9.0)
    return bumps, x, y


def test_plane_fit_removes_a_known_tilt(rng):
    bumps, x, y = _surface(rng)
    tilted = bumps + 0.3 * x - 0.2 * y + 5.0
    residual = plane_fit(tilted) - plane_fit(bumps)
    assert np.abs(residual).max() < 1e-3


def test_align_rows_removes_row_offsets(rng):
    bumps, _, _ = _surface(rng)
    offsets = rng.normal(0, 5.0, size=(bumps.shape[0], 1)).astype(np.float32)
    aligned = align_rows(bumps + offsets)
    expected = align_rows(bumps)
    assert np.abs(aligned - expected).max() < 1e-4
    assert np.std(np.median(aligned, axis=1)) < 1e-5


def test_level_array_recovers_surface_under_plane_and_offsets(rng):
    bumps, x, y = _surface(rng)
    offsets = rng.normal(0, 2.0, size=(bumps.shape[0], 1))
    raw = bumps + 0.05 * x + 0.1 * y + offsets
    levelled = level_array(raw)
    reference = level_array(bumps)
    assert np.sqrt(np.mean((levelled - reference) ** 2)) < 0.02 * bumps.std()


def test_polynomial_fit_removes_bow(rng):
    bumps, x, y = _surface(rng)
    bow = 1e-3 * ((x - 80) ** 2 + (y - 64) ** 2)
    residual = polynomial_fit(bumps + bow, 2) - polynomial_fit(bumps, 2)
    assert np.abs(residual).max() < 1e-2


def test_nan_rows_do_not_break_levelling(rng):
    bumps, x, _ = _surface(rng)
    raw = bumps + 0.2 * x
    raw[100:] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an aborted scan is normal input, not a warning
        levelled = level_array(raw)
    assert np.isfinite(levelled[:100]).all() and np.isnan(levelled[100:]).all()


def test_fast_plane_fit_matches_the_general_least_squares_fit(rng):
    from afmwatch.level import _fit_surface

    z = rng.normal(size=(100, 173)) + 0.3 * np.arange(173) - 0.1 * np.arange(100)[:, None]
    assert np.abs(plane_fit(z) - (z - _fit_surface(z, 1))).max() < 1e-4
