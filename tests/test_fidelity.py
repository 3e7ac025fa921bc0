"""Flat-field fidelity (issue 12): the simulator's stress options, the accuracy oracles, and the
recipe's accuracy under stress. Noise references come from the simulator's truth, never the ERRS."""
import numpy as np
import pytest
from astropy.io import fits

from soxs_mflat.cli import main as cli_main
from soxs_mflat.core import OrderLayout, in_order_mask, poly_eval
from soxs_mflat.prepare import prepare_raw
from soxs_mflat.instruments import get_arm
from soxs_mflat.simulate.evaluate import block_z, in_order_numpy
from soxs_mflat.simulate.run import simulate_set
from soxs_mflat.simulate.scene import make_geometry
from soxs_mflat.simulate.stress import Stress, tilt_pattern

STRESS = "scatter=0.02,level=0.08,tilt=0.04,cosmics=2000,stale=1"


@pytest.fixture(scope="module")
def stressed(module_tmp):
    return simulate_set("soxs", "vis", module_tmp("stress"), nflats=3, binning="2x2", seed=5,
                        stress=STRESS)


def _table_centre(path):
    row = fits.getdata(path, 1)[0]
    dn, db = row["degorder_cent"], row["degy_cent"]
    return np.array([[row[f"cent_{i}{j}"] for j in range(db + 1)] for i in range(dn + 1)])


def test_stress_parse_and_reject():
    s = Stress.parse(STRESS)
    assert (s.scatter, s.level, s.tilt, s.cosmics, s.stale) == (0.02, 0.08, 0.04, 2000, 1.0)
    assert Stress.parse("") == Stress() and Stress().n_cosmics(10**6) == 20
    for bad in ("scatter=0.5", "tilt=-0.1", "colour=1", "level", "cosmics=x"):
        with pytest.raises(ValueError, match="stress"):
            Stress.parse(bad)
    lev, tilt = s.frame_factors(5)
    assert list(lev) == [1, 1, 1.08, 1, 1] and list(tilt) == [0, 0, 0, 0, 0.04]


def test_cli_simulate_stress(tmp_path, capsys):
    assert cli_main(["simulate", "--instrument", "soxs", "--arm", "vis", "--out", str(tmp_path / "x"),
                     "--stress", "tilt=2"]) == 2
    assert "tilt=2" in capsys.readouterr().err and not (tmp_path / "x" / "truth.fits").exists()


def test_analytic_geometry_is_the_defining_formula():
    arm = get_arm("xshooter", "vis")
    geo = make_geometry(arm, 1, 1)
    o = np.asarray(arm.orders, float)
    bm = 0.5 * (arm.science_shape[0] - 1)
    mid = np.polynomial.polynomial.Polynomial.fit(o, arm.centres, 3)
    for n in (16, 23, 30):
        b = np.linspace(0, 3999, 7)
        want = mid(n) + (0.01 + 0.002 * (n - o.mean())) * (b - bm) + 1.2e-5 * (b - bm) ** 2
        assert np.abs(poly_eval(geo.centre, n, b) - want).max() < 1e-9


def test_stressed_frames_follow_their_truth(stressed):
    with fits.open(stressed["truth"]) as hl:
        t = {h.name: h.data for h in hl[1:]}
        h = hl[0].header
    drifts = [float(v) for v in h["DRIFTQTH"].split(",")]
    tilts = [float(v) for v in h["TILTQTH"].split(",")]
    assert tilts == [0, 0, 0.04] and h["STSTALE"] == 1.0
    bias = fits.getdata(stressed["bias"])
    frames = [prepare_raw(p)[0] - bias for p in stressed["raw"]]
    illum = t["ILLUM_QTH"]
    sel = (illum > 0.5 * illum.max()) & (t["DEFECTS"] == 0)
    ratios = [np.median(f[sel] / frames[0][sel]) for f in frames]
    assert ratios[1] / ratios[0] == pytest.approx(drifts[1] / drifts[0], abs=2e-3)
    assert 0.98 <= drifts[1] / 1.08 <= 1.02 and all(0.98 <= d <= 1.02 for d in (drifts[0], drifts[2]))
    pat = tilt_pattern(illum.shape, True)
    q = frames[2][sel] / frames[0][sel] * drifts[0] / drifts[2] - 1
    slope = np.polyfit(pat[sel], q, 1)[0]
    assert slope == pytest.approx(0.04, abs=0.002)
    scat = t["SCATTER_QTH"]
    assert np.median(scat[illum > 0.5 * illum.max()] / illum[illum > 0.5 * illum.max()]) == pytest.approx(0.02, rel=1e-3)
    assert np.percentile(scat[sel] / illum[sel], 95) < 0.04
    ncr = (t["COSMICS_QTH"] > 0).sum()
    assert 3 * 2000 * 0.9 < ncr < 3 * 2000 * 1.6          # half the events hit two pixels


def test_stale_table_tilt_and_wider_slit(stressed, tmp_path):
    nominal = simulate_set("soxs", "vis", tmp_path, nflats=1, binning="2x2", seed=5)
    b = np.array([0.0, 2047.5, 4095.0])
    old, new = _table_centre(stressed["order_tab"][0]), _table_centre(nominal["order_tab"][0])
    d = poly_eval(old, 2, b) - poly_eval(new, 2, b)
    assert d[0] == pytest.approx(-1, abs=0.1) and d[1] == pytest.approx(0, abs=0.1) and d[2] == pytest.approx(1, abs=0.1)
    width = {}
    for name, w in (("stale", stressed), ("nominal", nominal)):
        p = fits.getdata(w["truth"], "EDGE_POLY")
        lo, up = (p["coeffs"][(p["level"] == 0.5) & (p["side"] == s)][0] for s in ("lower", "upper"))
        width[name] = poly_eval(up, 2, b) - poly_eval(lo, 2, b)
    assert np.allclose(width["stale"] - width["nominal"], 1.0, atol=1e-9)


@pytest.mark.parametrize("shape,a_is_x,bins", [((203, 77), True, (1, 1)), ((77, 203), False, (1, 1)),
                                              ((101, 45), True, (2, 2)), ((45, 101), False, (2, 1))])
def test_in_order_twin_matches_core(shape, a_is_x, bins):
    la, lb = (shape[1], shape[0]) if a_is_x else (shape[0], shape[1])
    ua, ub = la * bins[0], lb * bins[1]
    lower = np.array([[0.1 * ua, 0.003], [0.12 * ua, 1e-4]])
    upper = lower + np.array([[0.08 * ua, 0.001], [0.0, 0.0]])
    orders, b_min, b_max = [1, 3], [3.3, 0.0], [ub - 10.7, ub - 1.0]
    twin = in_order_numpy(shape, lower, upper, orders, b_min, b_max, a_is_x, *bins)
    core = in_order_mask(shape, lower, upper, OrderLayout(orders, b_min, b_max, a_is_x, *bins)).astype(bool)
    assert twin.sum() > 100 and np.array_equal(twin, core)


def test_block_z_is_unit_on_pure_noise():
    rng = np.random.default_rng(3)
    sigma = rng.uniform(0.5, 2.0, (320, 320))
    resid = rng.normal(0, sigma)
    sel = rng.random(sigma.shape) < 0.5
    z = block_z(resid, sigma ** 2, sel)
    assert z.size == 100 and 0.85 < np.std(z) < 1.15
    z = block_z(resid + 0.1, sigma ** 2, sel)           # a smooth error of ~1.8 block sigma shows
    assert np.sqrt(np.mean(z ** 2)) > 1.6
