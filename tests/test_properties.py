"""Property tests (hypothesis) of the kernels against their NumPy twins (tests/twins.py): random
shapes (sizes that are no multiple of 16), masks, NaN and inf, one frame and more than 16 frames
(the vector and the scalar path of the stack). Derandomized and without an example database, so
that CI runs the same examples every time and writes nothing into the checkout."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import soxs_mflat as sm
import twins

PROFILE = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def stacks(draw, max_frames=24):
    """Frames on a 1/8 grid (so float32 sums and midpoints are exact), with outliers, NaN, inf and masks."""
    n = draw(st.integers(1, max_frames))
    ny, nx = draw(st.integers(1, 4)), draw(st.integers(1, 37))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    frames = (np.round(rng.normal(0, 40, (n, ny, nx)) * 8) / 8 + 1000).astype(np.float32)
    frames[rng.random(frames.shape) < draw(st.sampled_from([0.0, 0.05, 0.3]))] += 5000      # cosmics
    bad = rng.random(frames.shape) < draw(st.sampled_from([0.0, 0.05, 0.5]))
    frames[bad] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), bad.sum())
    masks = rng.random(frames.shape) < draw(st.sampled_from([0.0, 0.1, 0.9])) if draw(st.booleans()) else None
    errors = (rng.integers(8, 64, frames.shape) / 8).astype(np.float32) if draw(st.booleans()) else None
    scales = draw(st.sampled_from([None, "pow2"]))
    scales = None if scales is None else 2.0 ** rng.integers(-2, 3, n)
    sigma = draw(st.sampled_from([2.5, 3.0, 5.0]))
    iters = draw(st.integers(0, 5))
    floor = draw(st.booleans())   # without error maps there is no floor: plain MAD clipping in both paths
    return frames, errors, masks, scales, sigma, iters, floor


def _case(n, ny, nx, with_err, floor, seed=1):
    """A fixed stack (for @example): the paths random draws may miss."""
    rng = np.random.default_rng(seed)
    frames = (np.round(rng.normal(0, 40, (n, ny, nx)) * 8) / 8 + 1000).astype(np.float32)
    frames[rng.random(frames.shape) < 0.05] += 5000
    frames[rng.random(frames.shape) < 0.05] = np.nan
    errors = (rng.integers(8, 64, frames.shape) / 8).astype(np.float32) if with_err else None
    return frames, errors, rng.random(frames.shape) < 0.1, 2.0 ** rng.integers(-2, 3, n), 3.0, 5, floor


@PROFILE
@given(stacks())
@example(_case(20, 3, 37, True, True))      # scalar path (> 16 frames), block + padded tail, error floor
@example(_case(24, 2, 21, False, True))     # scalar path without error maps (MAD clip, spread error)
@example(_case(9, 4, 35, False, False))     # vector path without error maps, tail of 3
@example(_case(16, 1, 16, True, False))     # exactly one full block, 16 frames, MAD clip with errors
def test_stack_agrees_with_twin(case):
    frames, errors, masks, scales, sigma, iters, floor = case
    r = sm.clip_and_stack(list(frames), errors=None if errors is None else list(errors),
                          masks=None if masks is None else list(masks), scales=scales, sigma_lower=sigma,
                          sigma_upper=sigma, max_iters=iters, error_floor=floor, threads=3)
    mean, err, qual, nused = twins.clip_and_stack(frames, masks, errors, scales, sigma, sigma, iters,
                                                  floor and errors is not None)
    np.testing.assert_array_equal(r.n_used, nused)
    np.testing.assert_array_equal(r.quality, qual)
    np.testing.assert_allclose(r.mean, mean, rtol=2e-6, atol=1e-4)
    np.testing.assert_allclose(r.error, err, rtol=2e-5, atol=1e-5)


@PROFILE
@given(stacks(max_frames=1))
def test_one_frame_stack_is_the_frame(case):
    frames, errors, masks, scales, sigma, iters, floor = case
    r = sm.clip_and_stack(list(frames), errors=None if errors is None else list(errors),
                          masks=None if masks is None else list(masks), max_iters=iters, error_floor=floor)
    good = np.isfinite(frames[0]) & (True if masks is None else ~masks[0])
    assert np.array_equal(r.n_used, good.astype(np.uint8)) and np.array_equal(r.quality, (~good).astype(np.uint8))
    assert np.array_equal(r.mean[good], frames[0][good]) and np.all(r.mean[~good] == 0)
    assert np.array_equal(r.error[good], errors[0][good] if errors is not None else np.zeros(good.sum(), np.float32))


@PROFILE
@given(stacks(), st.sampled_from([2, 4, 7, 16]))
def test_stack_bits_do_not_depend_on_threads(case, threads):
    frames, errors, masks, scales, sigma, iters, floor = case
    kw = dict(errors=None if errors is None else list(errors), masks=None if masks is None else list(masks),
              scales=scales, sigma_lower=sigma, sigma_upper=sigma, max_iters=iters, error_floor=floor)
    a, b = sm.clip_and_stack(list(frames), threads=1, **kw), sm.clip_and_stack(list(frames), threads=threads, **kw)
    for x, y in zip((a.mean, a.error, a.n_used), (b.mean, b.error, b.n_used)):
        assert x.tobytes() == y.tobytes()


@PROFILE
@given(st.integers(0, 2**32 - 1), st.integers(5, 60), st.integers(5, 45), st.integers(1, 9), st.booleans(),
       st.sampled_from([1, 2]), st.sampled_from([0.0, 0.05]))
def test_inner_order_stats_agree_with_twin(seed, ny, nx, window, a_is_x, binning, nan_frac):
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 10, (ny, nx)).astype(np.float32)
    img[rng.random(img.shape) < nan_frac] = np.nan
    mask = rng.random(img.shape) < 0.05
    la = nx if a_is_x else ny
    c = np.array([[rng.uniform(0, la * binning), rng.uniform(-0.05, 0.05)], [rng.uniform(2, 6) * binning, 0.0]])
    orders, bmin, bmax = [1, 2, 3], [0, 3, 0], [200, 150, 100]
    lay = sm.OrderLayout(orders, bmin, bmax, a_is_x, binning, binning)
    v = twins.inner_values(img, c, orders, bmin, bmax, window, a_is_x, binning, binning, mask)
    if v.size == 0:
        with pytest.raises(sm.ProcessingError):
            sm.inner_order_stats(img, c, lay, window, mask=mask)
        return
    s = sm.inner_order_stats(img, c, lay, window, mask=mask, clip_sigma=3, clip_iters=3)
    assert s["n"] == v.size
    assert s["median"] == pytest.approx(np.median(v), rel=1e-12)
    assert s["p10"] == pytest.approx(np.percentile(v, 10), rel=1e-12)
    assert s["p90"] == pytest.approx(np.percentile(v, 90), rel=1e-12)
    assert s["mean"] == pytest.approx(twins.clipped_mean(v, 3, 3), rel=1e-9)


@PROFILE
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(0, 3), st.integers(0, 3))
def test_global_fit_agrees_with_twin(seed, n_orders, dn, db):
    rng = np.random.default_rng(seed)
    dn = min(dn, n_orders - 1)
    n = np.repeat(np.arange(n_orders) + rng.integers(1, 20), 40).astype(float)
    b = np.tile(np.linspace(0, rng.uniform(100, 4000), 40), n_orders)
    a = 300 + 40 * n + 0.01 * b + rng.standard_t(3, n.size)
    f = sm.fit_global_poly(n, b, a, dn, db, clip_sigma=4, max_iters=2)
    res, clipped = twins.fit_poly(n, b, a, dn, db, 4, 2)
    np.testing.assert_array_equal(f["clipped"].astype(bool), clipped)
    np.testing.assert_allclose(f["residuals"], res, atol=1e-6)
