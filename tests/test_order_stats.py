import numpy as np
import pytest

import soxs_mflat as sm
import twins


def test_window_pixels_exact_on_tiny_frame():
    # one vertical order at A = 3.0 on a 4x8 frame; window 3 -> columns 2, 3, 4
    img = np.tile(np.arange(8, dtype=np.float32), (4, 1))
    c = np.array([[3.0]])
    lay = sm.OrderLayout([1], [0], [3])
    s = sm.inner_order_stats(img, c, lay, window=3)
    assert s["n"] == 12
    assert s["mean"] == pytest.approx(3.0) and s["median"] == pytest.approx(3.0)
    assert s["p10"] == pytest.approx(2.0) and s["p90"] == pytest.approx(4.0)


def test_bad_pixels_and_ref_ratio():
    img = np.full((4, 8), 6.0, np.float32)
    ref = np.full((4, 8), 2.0, np.float32)
    mask = np.zeros((4, 8), bool)
    mask[0, 3] = True
    img[0, 3] = 1e6                       # masked, must not count
    s = sm.inner_order_stats(img, np.array([[3.0]]), sm.OrderLayout([1], [0], [3]), 3, ref=ref, mask=mask)
    assert s["n"] == 11 and s["mean"] == pytest.approx(3.0)


@pytest.mark.parametrize("a_is_x,bin_a,bin_b", [(True, 1, 1), (False, 1, 1), (True, 2, 2)])
def test_agrees_with_numpy_twin(a_is_x, bin_a, bin_b):
    rng = np.random.default_rng(3)
    img = rng.normal(100, 10, (120, 90)).astype(np.float32)
    img[rng.random(img.shape) < 0.01] = 1e4
    mask = rng.random(img.shape) < 0.02
    c = np.array([[10.0, 0.05], [40.0, 0.0]])
    lay = sm.OrderLayout([1, 2, 3], [0, 20, 0], [200, 150, 100], a_is_x, bin_a, bin_b)
    s = sm.inner_order_stats(img, c, lay, 7, mask=mask, clip_sigma=3, clip_iters=3)
    v = twins.inner_values(img, c, [1, 2, 3], [0, 20, 0], [200, 150, 100], 7, a_is_x, bin_a, bin_b, mask)
    assert s["n"] == v.size
    assert s["median"] == pytest.approx(np.median(v))
    assert s["p10"] == pytest.approx(np.percentile(v, 10)) and s["p90"] == pytest.approx(np.percentile(v, 90))
    assert s["mean"] == pytest.approx(twins.clipped_mean(v, 3, 3), rel=1e-9)


def test_no_pixels_is_a_processing_error():
    img = np.zeros((4, 8), np.float32)
    with pytest.raises(sm.ProcessingError, match="no good pixels"):
        sm.inner_order_stats(img, np.array([[300.0]]), sm.OrderLayout([1], [0], [3]), 3)
