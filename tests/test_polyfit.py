import numpy as np
import pytest

import soxs_mflat as sm
import twins


def _grid(seed=0):
    rng = np.random.default_rng(seed)
    n = np.repeat(np.arange(13, 25), 60).astype(float)
    b = np.tile(np.linspace(0, 2999, 60), 12) + rng.uniform(-5, 5, n.size)
    return n, b


def test_exact_polynomial_is_recovered():
    n, b = _grid()
    c = np.zeros((7, 5))
    c[0, 0], c[1, 0], c[2, 0], c[0, 1], c[0, 2], c[1, 1], c[0, 4] = 2300, -95, 1.2, 0.03, -2e-6, 1e-4, 1e-14
    a = twins.poly(c, n, b)
    f = sm.fit_global_poly(n, b, a, 6, 4, clip_sigma=5, max_iters=2)
    assert np.abs(f["residuals"]).max() < 1e-6
    assert not f["clipped"].any()
    np.testing.assert_allclose(sm.poly_eval(f["coeffs"], n, b), a, atol=1e-6)


def test_outliers_are_clipped():
    n, b = _grid(1)
    rng = np.random.default_rng(1)
    a = 100 + 50 * n + 0.01 * b + rng.normal(0, 0.05, n.size)
    bad = rng.choice(n.size, 20, replace=False)
    a[bad] += 5.0
    f = sm.fit_global_poly(n, b, a, 1, 1, clip_sigma=5, max_iters=3)
    assert set(np.flatnonzero(f["clipped"])) == set(bad)
    assert f["rms"] < 0.06


@pytest.mark.parametrize("seed", [2, 3])
def test_agrees_with_numpy_twin(seed):
    n, b = _grid(seed)
    rng = np.random.default_rng(seed)
    a = 500 + 30 * n - 0.4 * n**2 + 0.02 * b + 1e-6 * b**2 + rng.standard_t(3, n.size) * 0.2
    f = sm.fit_global_poly(n, b, a, 3, 3, clip_sigma=4, max_iters=3)
    res, clipped = twins.fit_poly(n, b, a, 3, 3, 4, 3)
    assert np.array_equal(f["clipped"].astype(bool), clipped)
    np.testing.assert_allclose(f["residuals"], res, atol=1e-7)


def test_too_few_points_is_a_processing_error():
    with pytest.raises(sm.ProcessingError, match="3 points for 16 coefficients"):
        sm.fit_global_poly([1, 2, 3], [0, 1, 2], [0, 0, 0], 3, 3)
