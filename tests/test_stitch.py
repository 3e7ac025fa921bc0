import numpy as np
import pytest

import soxs_mflat as sm
import synth_orders as so

LAY = sm.OrderLayout([1, 2, 3, 4], [0] * 4, [599] * 4)


def _frames(shape=(600, 420)):
    d = {"flux": np.full(shape, 2.0, np.float32), "error": np.full(shape, 0.2, np.float32),
         "quality": np.zeros(shape, np.uint8)}
    q = {"flux": np.full(shape, 1.0, np.float32), "error": np.full(shape, 0.1, np.float32),
         "quality": np.ones(shape, np.uint8)}
    return d, q


def test_d_side_from_scaled_d2_elsewhere_qth():
    # orders 1..4 at increasing A: crossover 3 -> D2 holds orders 3, 4 (larger A); line below order 3
    d, q = _frames()
    lo, up = so.edge_coeffs()
    out = sm.stitch(d, q, lo, up, crossover=3, layout=LAY, offset=5, scale=0.5)
    assert out["d_below"] is False
    b = np.arange(600)
    line = sm.poly_eval(lo, 3, b) - 5
    np.testing.assert_allclose(out["line"], line)
    a = np.arange(420)[None, :]
    from_d = a > line[:, None]
    assert np.all(out["flux"][from_d] == 1.0) and np.all(out["error"][from_d] == pytest.approx(0.1))
    assert np.all(out["quality"][from_d] == 0) and np.all(out["quality"][~from_d] == 1)
    assert np.all(out["flux"][~from_d] == 1.0)


def test_reversed_orientation():
    d, q = _frames()
    flo, fup = so.edge_coeffs(flip_la=420)   # order numbers now decrease with A (X-shooter-like)
    out = sm.stitch(d, q, flo, fup, crossover=3, layout=LAY, offset=5, scale=2.0)
    assert out["d_below"] is True
    b = np.arange(600)
    np.testing.assert_allclose(out["line"], sm.poly_eval(fup, 3, b) + 5)
    a = np.arange(420)[None, :]
    from_d = a < out["line"][:, None]
    assert np.all(out["flux"][from_d] == 4.0) and np.all(out["flux"][~from_d] == 1.0)
    assert np.allclose(out["error"][from_d], 0.4)


def test_shape_mismatch_is_input_error():
    d, q = _frames()
    d["flux"] = d["flux"][:10]
    lo, up = so.edge_coeffs()
    with pytest.raises(sm.InputError, match="expected"):
        sm.stitch(d, q, lo, up, 3, LAY)


def test_quality_bits_survive():
    d, q = _frames()
    d["quality"][:] = 2
    q["quality"][:] = 5
    lo, up = so.edge_coeffs()
    out = sm.stitch(d, q, lo, up, crossover=3, layout=LAY)
    assert set(np.unique(out["quality"])) == {2, 5}
