import numpy as np
import pytest

import soxs_mflat as sm
import twins


def test_outlier_frame_is_clipped_and_mean_is_exact():
    # six 3x3 frames: 0, +10, -10, 0, +10, +1000 -> the +1000 frame is rejected
    vals = [0.0, 10.0, -10.0, 0.0, 10.0, 1000.0]
    frames = [np.full((3, 3), v, np.float32) for v in vals]
    r = sm.clip_and_stack(frames, sigma_lower=3, sigma_upper=3, max_iters=5)
    assert np.all(r.n_used == 5)
    assert np.allclose(r.mean, 2.0)  # (0+10-10+0+10)/5


def test_error_is_mean_sigma_over_sqrt_n_used():
    frames = [np.full((2, 2), v, np.float32) for v in (1.0, 2.0, 3.0, 500.0)]
    errors = [np.full((2, 2), e, np.float32) for e in (1.0, 2.0, 3.0, 4.0)]
    r = sm.clip_and_stack(frames, errors=errors, sigma_lower=5, sigma_upper=5)
    assert np.all(r.n_used == 3)
    assert np.allclose(r.error, 2.0 / np.sqrt(3))


def test_input_masks_are_honoured_and_all_masked_is_flagged():
    frames = [np.full((2, 2), v, np.float32) for v in (1.0, 2.0, 9.0)]
    masks = [np.zeros((2, 2), bool) for _ in range(3)]
    masks[2][0, 0] = True                      # the 9 is excluded by its mask, not by clipping
    for m in masks:
        m[1, 1] = True                         # bad everywhere
    r = sm.clip_and_stack(frames, masks=masks, sigma_lower=100, sigma_upper=100)
    assert r.mean[0, 0] == pytest.approx(1.5)
    assert r.mean[0, 1] == pytest.approx(4.0)
    assert r.quality[1, 1] == 1 and r.n_used[1, 1] == 0 and r.mean[1, 1] == 0
    assert r.quality[0, 0] == 0


def test_scales_normalise_without_copies():
    frames = [np.full((2, 2), v, np.float32) for v in (2.0, 4.0, 8.0)]
    r = sm.clip_and_stack(frames, scales=[0.5, 0.25, 0.125])
    assert np.allclose(r.mean, 1.0)


@pytest.mark.parametrize("seed,n,floor", [(0, 3, False), (1, 5, False), (2, 8, False), (3, 12, False), (4, 5, True),
                                          (5, 9, True)])
def test_agrees_with_numpy_twin(seed, n, floor):
    rng = np.random.default_rng(seed)
    frames = rng.normal(100, 3, (n, 40, 30)).astype(np.float32)
    frames[rng.random(frames.shape) < 0.02] += 500          # cosmics
    frames[rng.random(frames.shape) < 0.005] = np.nan       # NaNs are ignored
    errors = rng.uniform(1, 4, frames.shape).astype(np.float32)
    masks = rng.random(frames.shape) < 0.05
    scales = rng.uniform(0.9, 1.1, n)
    r = sm.clip_and_stack(list(frames), errors=list(errors), masks=list(masks), scales=scales,
                          sigma_lower=2.5, sigma_upper=3.0, max_iters=4, error_floor=floor)
    mean, err, qual, nused = twins.clip_and_stack(frames, masks, errors, scales, 2.5, 3.0, 4, floor)
    assert np.array_equal(r.n_used, nused)
    assert np.array_equal(r.quality, qual)
    np.testing.assert_allclose(r.mean, mean, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(r.error, err, rtol=1e-5, atol=1e-6)


def test_matches_astropy_sigma_clip():
    astropy_stats = pytest.importorskip("astropy.stats")
    rng = np.random.default_rng(7)
    cube = rng.normal(0, 1, (5, 50, 60)).astype(np.float32)
    cube[2, ::7, ::5] += 40
    c = astropy_stats.sigma_clip(cube, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std", axis=0)
    r = sm.clip_and_stack(list(cube), sigma_lower=3, sigma_upper=3, max_iters=5)
    assert np.array_equal(r.n_used, (~c.mask).sum(0))
    np.testing.assert_allclose(r.mean, c.mean(axis=0).filled(0), atol=1e-5)


def test_bad_input_raises_clear_errors():
    a = np.zeros((4, 4), np.float32)
    with pytest.raises(sm.InputError, match="no frames"):
        sm.clip_and_stack([])
    with pytest.raises(sm.InputError, match=r"frame 1 has shape \(4, 5\), expected \(4, 4\)"):
        sm.clip_and_stack([a, np.zeros((4, 5), np.float32)])
    with pytest.raises(sm.InputError, match="2-D"):
        sm.clip_and_stack([np.zeros(4)])
    with pytest.raises(sm.InputError, match="scales"):
        sm.clip_and_stack([a, a], scales=[1.0])


def test_error_floor_clips_a_cosmic_that_mad_of_five_misses():
    # the case measured on a simulated X-shooter VIS stack: MAD sigma 3x the photon noise
    vals = [24005.0, 24021.0, 24512.0, 28013.0, 24613.0]
    frames = [np.full((1, 8), v, np.float32) for v in vals]
    errors = [np.full((1, 8), 157.0, np.float32) for _ in vals]
    plain = sm.clip_and_stack(frames, errors=errors, sigma_lower=5, sigma_upper=5)
    floor = sm.clip_and_stack(frames, errors=errors, sigma_lower=5, sigma_upper=5, error_floor=True)
    assert np.all(plain.n_used == 5)
    assert np.all(floor.n_used == 4)
    assert floor.mean[0, 0] == pytest.approx(np.mean([24005.0, 24021.0, 24512.0, 24613.0]))
