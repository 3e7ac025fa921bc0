import numpy as np
import pytest

import soxs_mflat as sm
import synth_orders as so
import twins

LAY = sm.OrderLayout([1, 2, 3, 4], [0] * 4, [599] * 4)
PARAMS = dict(stacked_clipping_sigma=5, stacked_clipping_iterations=5, centre_order_window=10,
              slice_length_for_edge_detection=70, order_deg=2, disp_axis_deg=3, gaussian_blur_sigma=20,
              low_sensitivity_clipping_sigma=5)


@pytest.fixture(scope="module")
def run():
    rng = np.random.default_rng(9)
    illum = so.frame(level=20000.0)
    scatter = so.frame(level=0.0, scatter=0.01) + 200.0 * (1 + np.arange(420)[None, :] / 420)
    resp = rng.normal(1, 0.01, illum.shape).astype(np.float32)
    lo, up = so.edge_coeffs()
    inside = sm.in_order_mask(illum.shape, lo, up, LAY).astype(bool)
    dead = rng.choice(np.flatnonzero(inside), 60, replace=False)
    resp.flat[dead] = 0.3
    levels = np.array([1.0, 1.02, 0.98, 1.01, 0.99])
    frames, errors, crs = [], [], []
    for k, s in enumerate(levels):
        f = rng.poisson(s * (illum + scatter) * resp).astype(np.float32)
        cr = rng.choice(f.size, 200, replace=False)
        f.flat[cr] += 5e4
        crs.append(cr)
        frames.append(f)
        errors.append(np.sqrt(np.maximum(f, 0) + 9.0).astype(np.float32))
    bpm = np.zeros(illum.shape, bool)
    bpm[50, 100] = bpm[300, 200] = True
    res = sm.master_flat(frames, so.centre_coeffs(), LAY, errors=errors, bpm=bpm, params=PARAMS)
    return dict(res=res, illum=illum, resp=resp, inside=inside, dead=dead, levels=levels, frames=frames, bpm=bpm, crs=crs)


def test_inter_order_pixels_are_exactly_one(run):
    r = run["res"]
    lo, up = r["edges"]["lower"]["coeffs"], r["edges"]["upper"]["coeffs"]
    inside = sm.in_order_mask(r["flux"].shape, lo, up, LAY).astype(bool)
    assert np.all(r["flux"][~inside] == 1.0)
    assert inside.mean() > 0.3


def test_edges_match_truth(run):
    e = run["res"]["edges"]
    b = np.linspace(0, 599, 50)
    for n in (1, 2, 3, 4):
        lo_t, up_t = so.true_edges(n, b)
        assert np.sqrt(np.mean((sm.poly_eval(e["lower"]["coeffs"], n, b) - lo_t) ** 2)) < 0.05
        assert np.sqrt(np.mean((sm.poly_eval(e["upper"]["coeffs"], n, b) - up_t) ** 2)) < 0.05


def test_exposure_levels_follow_the_lamp(run):
    r = run["res"]
    for norms in (r["norm_first"], r["norm_second"]):
        np.testing.assert_allclose(norms / norms[0], run["levels"] / run["levels"][0], rtol=2e-3)


def test_flat_reproduces_pixel_response(run):
    r, illum, resp = run["res"], run["illum"], run["resp"]
    core = (run["inside"] & (illum > 0.8 * illum.max() * 0.7)) & (r["quality"] == 0)
    ratio = r["flux"][core] / illum[core]
    ratio /= np.median(ratio)
    rel = ratio - resp[core]
    photon = 1 / np.sqrt(5 * 20000.0 * 0.75)     # photon-noise limit of the 5-frame stack
    assert np.std(rel) < 2.5 * photon


def test_dead_pixels_flagged_and_cosmics_gone(run):
    r = run["res"]
    q = r["quality"]
    assert np.all(q.flat[run["dead"]] & 2)
    assert np.all(q[run["bpm"]] & 1)
    assert r["qc"]["N LOW SENS"] >= 60
    assert r["qc"]["N LOW SENS"] < 60 + 0.0005 * run["inside"].sum()
    # clear of the true edges by the edge tolerance (0.05 px, test_edges_match_truth): a pixel centred
    # on an edge may fall just outside the fitted order, where the flat is 1 with no error by design
    lo, up = so.edge_coeffs()
    lo[0, 0] += 0.05
    up[0, 0] -= 0.05
    clear = sm.in_order_mask(q.shape, lo, up, LAY).astype(bool)
    good = clear & (q == 0) & (run["illum"] > 0.1 * run["illum"].max())
    expected = run["illum"] * run["resp"]
    scale = np.median(r["flux"][good] / expected[good])
    z = (r["flux"][good] - scale * expected[good]) / r["error"][good]
    assert np.abs(z).max() < 5.0        # no cosmic (or anything else) survives above 5 sigma
    hit = np.zeros(q.shape, bool)
    for cr in run["crs"]:
        hit.flat[cr] = True
    assert (hit & good).sum() > 100     # cosmics did land on good in-order pixels


def test_qc_values(run):
    r = run["res"]
    qc = r["qc"]
    pct = []
    for f in run["frames"]:
        v = twins.inner_values(f, so.centre_coeffs(), [1, 2, 3, 4], [0] * 4, [599] * 4, 10, mask=run["bpm"])
        pct.append(np.percentile(v, [10, 50, 90]))
    np.testing.assert_allclose([qc["ORDEXP10"], qc["ORDEXP50"], qc["ORDEXP90"]], np.median(pct, axis=0), rtol=1e-9)
    assert qc["COLDPIX NUM"] == np.count_nonzero(r["quality"])
    assert qc["COLDPIX FRAC"] == pytest.approx(qc["COLDPIX NUM"] / r["quality"].size)
    assert 0.9 < qc["INNER ORDER PIX MEAN"] < 1.1
    assert 0 < qc["X RES SD"] < 0.2 and qc["X RES MIN"] < 0 < qc["X RES MAX"]


def test_per_order_edge_statistics_are_medians_of_the_detected_slices(run):
    """The order table's meta columns (both front ends write them from these)."""
    e = run["res"]["edges"]
    pts = e["points"]
    for k, o in enumerate(LAY.orders):
        sel = pts["order"] == o
        assert sel.sum() > 10
        assert e["peak_per_order"][k] == np.median(pts["peak"][sel])
        assert e["level_pct_per_order"][k] == np.median(pts["level_pct"][sel])
        np.testing.assert_allclose(e["min_threshold"][k], e["peak_per_order"][k] * 0.20, rtol=1e-15)
        np.testing.assert_allclose(e["max_threshold"][k], e["peak_per_order"][k] * 0.50, rtol=1e-15)
    assert list(e["n_used_per_order"]) == [int((pts["order"][~(e["lower"]["clipped"] | e["upper"]["clipped"])
                                                  .astype(bool)] == o).sum()) for o in LAY.orders]
