import warnings
from pathlib import Path

import numpy as np
import pytest

from afmwatch.level import _fit_surface, align_rows, level, level_array, plane_fit, polynomial_fit
from afmwatch.scan import Scan


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


def test_a_scan_is_levelled_once_and_shares_read_only_heights(monkeypatch):
    """The input pipeline, the preview and the denoiser level the same scan: once, not three times, and
    a bow-removing model's input shares the plane + row levelling with the preview."""
    import afmwatch.level as level_module
    from afmwatch.networks.pipeline import make_pipeline, to_tensor

    calls = []
    real = level_module.level_array
    monkeypatch.setattr(level_module, "level_array", lambda z, order=0: calls.append(order) or real(z, order))
    rng = np.random.default_rng(5)
    z = rng.normal(0, 1, (64, 64)).astype(np.float32) + np.linspace(0, 30, 64, dtype=np.float32)
    scan = Scan(height=z, pixel_size_nm=2.0, channel="Height", path=Path("a.tif"), format="tiff")
    to_tensor(scan, make_pipeline(1, "standardise", resize=64, crop=48))
    shown = level(scan)
    assert calls == [0]
    assert np.array_equal(shown.height, real(z, 0))
    assert not shown.height.flags.writeable
    bowless = level(scan, 2)  # the polynomial is fitted on the cached plane + rows: not levelled again
    assert calls == [0]
    assert np.allclose(bowless.height, real(z, 2), atol=1e-5)
    assert not bowless.height.flags.writeable
    level(scan.with_height(z + 1))  # new heights: levelled afresh
    assert calls == [0, 0]


@pytest.mark.parametrize("shape", [(256, 256), (128, 512), (7, 5)])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_the_fast_polynomial_fit_of_a_complete_grid_is_the_least_squares_one(shape, order):
    """The normal-equations path for grids without gaps gives lstsq's polynomial on the full design."""
    rng = np.random.default_rng(order)
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    x, y = x / (cols - 1) * 2 - 1, y / (rows - 1) * 2 - 1
    z = (rng.random(shape) + 3 * x * x - 2 * x * y + y).astype(np.float32)
    terms = [x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)]
    design = np.stack([t.ravel() for t in terms], axis=1)
    coeffs, *_ = np.linalg.lstsq(design, z.ravel().astype(np.float64), rcond=None)
    expected = sum(c * t for c, t in zip(coeffs, terms))
    assert np.allclose(_fit_surface(z, order), expected, atol=1e-9)
