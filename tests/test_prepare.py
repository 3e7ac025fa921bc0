import numpy as np
import pytest

from soxs_mflat import _core


@pytest.mark.parametrize("shape", [(37, 53), (150, 131)])   # one tile; several tiles, partial at the ends
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_prepare_frame_matches_numpy_rot90_trim_gain(k, shape):
    rng = np.random.default_rng(k)
    raw = rng.integers(0, 65535, shape).astype(np.float32)
    rot = np.rot90(raw, k)
    r0, r1, c0, c1 = 2, rot.shape[0] - 3, 4, rot.shape[1] - 1
    out = _core.prepare_frame(raw, k, r0, r1, c0, c1, 1.61)
    np.testing.assert_array_equal(out, rot[r0:r1, c0:c1] * np.float32(1.61))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype,bzero", [(">i2", 32768.0), ("<i2", 32768.0), (">i2", 0.0), (">i2", -1000.0),
                                         (">i4", 2147483648.0), ("<i4", 5.0), ("u1", -128.0), ("u1", 0.0)])
def test_prepare_frame_int_matches_numpy(dtype, bzero, k):
    """A stored integer data unit: float32(raw + BZERO) (exact in float64), rotated, trimmed, times the gain."""
    rng = np.random.default_rng(k)
    info = np.iinfo(np.dtype(dtype).newbyteorder("="))
    raw = rng.integers(info.min, info.max, (150, 131), endpoint=True).astype(dtype)
    phys = (raw.astype(np.float64) + bzero).astype(np.float32)
    rot = np.rot90(phys, k)
    r0, r1, c0, c1 = 2, rot.shape[0] - 3, 4, rot.shape[1] - 1
    out = _core.prepare_frame_int(raw, bzero, k, r0, r1, c0, c1, 1.61)
    np.testing.assert_array_equal(out, rot[r0:r1, c0:c1] * np.float32(1.61))


def test_prepare_frame_int_refuses_what_it_cannot_read_exactly():
    raw = np.zeros((10, 20), ">i2")
    for bad, match in [(np.zeros((10, 20), ">f4"), "uint8, int16 or int32"), (np.zeros((10, 20), ">i8"), "uint8"),
                       (np.zeros((4, 10, 20), ">i2"), "2-D"), (raw[:, ::2], "C-contiguous")]:
        with pytest.raises(ValueError, match=match):
            _core.prepare_frame_int(bad, 0.0, 0, 0, 5, 0, 5, 1.0)
    for bzero in (0.5, 2.0 ** 32, float("nan")):
        with pytest.raises(ValueError, match="BZERO"):
            _core.prepare_frame_int(raw, bzero, 0, 0, 5, 0, 5, 1.0)
    with pytest.raises(ValueError, match="does not fit the rotated frame"):
        _core.prepare_frame_int(raw, 0.0, 0, 0, 15, 0, 10, 1.0)


@pytest.mark.parametrize("bitpix,bzero,cards", [(16, 32768, {}), (16, 0, {}), (32, 2 ** 31, {}), (8, 0, {}),
                                                (16, 100, {}), (16, 32768, {"BSCALE": 2.0}),
                                                (16, 0, {"BLANK": -1}), (-32, 0, {})])
def test_prepare_raw_stored_and_scaled_paths_agree(tmp_path, bitpix, bzero, cards):
    """prepare_raw reads exact-integer frames as stored (prepare_frame_int) and the rest through astropy's
    scaling (prepare_frame): the physical values and the prepared frame are astropy's either way."""
    from astropy.io import fits

    from soxs_mflat.instruments import get_arm
    from soxs_mflat.prepare import _exact_integer, prepare_raw
    arm = get_arm("soxs", "vis")
    rng = np.random.default_rng(abs(bitpix) + bzero)
    phys = rng.integers(0, 200 if bitpix == 8 else 60000, arm.full_shape)
    h = fits.Header({"INSTRUME": "SOXS", "HIERARCH ESO SEQ ARM": "VIS", "EXPTIME": 1.0})
    hdu = fits.PrimaryHDU(phys.astype(np.float32 if bitpix < 0 else np.int64), h)
    path = tmp_path / "raw.fits"
    if bitpix > 0:
        hdu.scale({8: "uint8", 16: "int16", 32: "int32"}[bitpix], bzero=bzero, bscale=cards.get("BSCALE", 1))
    for k, v in cards.items():
        if k != "BSCALE":
            hdu.header[k] = v
    hdu.writeto(path)
    stored = _exact_integer(fits.getheader(path))
    assert stored == (bitpix > 0 and not cards)
    with fits.open(path) as hl:   # the oracle: astropy's physical values, rotated and trimmed by numpy
        expect = np.rot90(np.asarray(hl[0].data, np.float32), arm.rotation // 90)
    r0, r1, c0, c1 = arm.science
    gain = np.float32(arm.gain)
    np.testing.assert_array_equal(prepare_raw(path)[0], expect[r0:r1, c0:c1] * gain)


def test_prepare_frame_rejects_a_window_outside_the_frame():
    with pytest.raises(ValueError, match="does not fit the rotated frame"):
        _core.prepare_frame(np.zeros((10, 20), np.float32), 0, 0, 15, 0, 10, 1.0)


def test_detrend_frame_formula():
    data = np.array([[10.0, -4.0, 100.0]], np.float32)
    cal = np.array([[1.0, 1.0, 1.0]], np.float32)
    cal_err = np.array([[0.5, 0.5, 2.0]], np.float32)
    err = _core.detrend_frame(data, cal, cal_err, 2.0, 3.0)
    np.testing.assert_array_equal(data, [[8.0, -6.0, 98.0]])          # in place: data - 2 * cal
    expect = np.sqrt(np.maximum(data, 0) + np.float32(9.0) + (cal_err * np.float32(2.0)) ** 2)
    np.testing.assert_array_equal(err, expect.astype(np.float32))


def _pair_twin(flat_t, off_t):
    """The rule in plain Python: nearest in time, each off frame once while unused ones remain."""
    unused, out = list(range(len(off_t))), []
    for t in flat_t:
        pool = unused or list(range(len(off_t)))
        best = min(pool, key=lambda j: (off_t[j] - t) ** 2)
        out.append(best)
        if best in unused:
            unused.remove(best)
    return out


def test_pair_by_time_exact_cases():
    assert _core.pair_by_time([1.0, 2.0, 3.0], [3.1, 1.1, 2.1]) == [1, 2, 0]
    # two flats nearest to the same off frame: the second takes the next nearest unused one
    assert _core.pair_by_time([1.0, 1.01], [1.0, 5.0]) == [0, 1]
    # more flats than off frames: reuse the nearest once all are used
    assert _core.pair_by_time([1.0, 2.0, 2.1], [1.0, 2.0]) == [0, 1, 1]
    with pytest.raises(ValueError, match="no lamp-off frames"):
        _core.pair_by_time([1.0], [])


def test_pair_by_time_matches_its_twin():
    rng = np.random.default_rng(3)
    for _ in range(50):
        f, o = rng.uniform(0, 1, rng.integers(1, 8)).tolist(), rng.uniform(0, 1, rng.integers(1, 8)).tolist()
        assert _core.pair_by_time(f, o) == _pair_twin(f, o)


@pytest.mark.parametrize("q", [0, 1, 37.5, 50, 99, 99.9, 100])
@pytest.mark.parametrize("step", [1, 3])
def test_sample_percentile_matches_numpy(q, step):
    rng = np.random.default_rng(int(q * 10) + step)
    img = rng.normal(1000, 300, (61, 47)).astype(np.float32)
    expect = np.percentile(img[::step, ::step].astype(np.float64), q)
    assert _core.sample_percentile(img, step, q) == pytest.approx(expect, rel=1e-12)


def test_sample_percentile_exact_and_nan():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)        # sample at step 2: 0, 2, 8, 10
    assert _core.sample_percentile(img, 2, 50) == 5.0
    assert _core.sample_percentile(img, 2, 100) == 10.0
    img[0, 0] = np.nan
    assert np.isnan(_core.sample_percentile(img, 1, 50))       # as numpy.percentile


def test_gain_from_the_header_per_instrument():
    from astropy.io import fits

    from soxs_mflat.keywords import gain_e_per_adu
    h = fits.Header({"HIERARCH ESO DET OUT1 CONAD": 1.2, "HIERARCH ESO DET OUT1 GAIN": 1.5})
    assert gain_e_per_adu(h, "SOXS", 9.0) == 1.5          # soxspipe: the larger of CONAD and GAIN
    assert gain_e_per_adu(h, "XSHOOTER", 9.0) == 1.2      # X-shooter: CONAD only
    assert gain_e_per_adu(fits.Header(), "SOXS", 9.0) == 9.0   # no CONAD: the arm's nominal gain
