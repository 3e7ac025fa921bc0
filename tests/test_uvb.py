"""X-shooter UVB: D2 + QTH masters, crossover, scaling, stitching (simulated set with truth)."""
import numpy as np
import pytest
from astropy.io import fits

import soxs_mflat as sm
import synth_orders as so
from soxs_mflat import uvb
from soxs_mflat.recipe import run_mflat
from soxs_mflat.simulate.evaluate import evaluate
from soxs_mflat.simulate.run import simulate_set


@pytest.fixture(scope="module")
def run(module_tmp):
    root = module_tmp("uvb")
    w = simulate_set("xshooter", "uvb", root / "set", nflats=3, seed=21)
    res = run_mflat(w["sof"], root / "out")
    c = fits.getval(res.products["MFLAT"], "ESO QC CROSSOVER ORDER")
    return dict(w=w, res=res, c=c)


def test_distinct_per_lamp_and_final_products(run):
    p = run["res"].products
    for label in ("MFLAT", "MFLAT DLAMP", "MFLAT QLAMP", "ORDER LOC", "ORDER LOC DLAMP", "ORDER LOC QLAMP",
                  "ORDER LOC RES", "ORDER LOC RES DLAMP", "ORDER LOC RES QLAMP", "BKGROUND DLAMP", "BKGROUND QLAMP"):
        assert p[label].exists(), label
    assert len({str(v) for v in p.values()}) == len(p)
    assert fits.getval(p["MFLAT DLAMP"], "ESO PRO CATG") == "MASTER_FLAT_UVB"
    assert fits.getval(p["ORDER LOC QLAMP"], "ESO PRO CATG") == "ORDER_TAB_UVB"
    raws = [v for k, v in fits.getheader(p["MFLAT"]).items() if "RAW" in k and k.endswith("NAME")]
    assert len(raws) == 6


def test_crossover_has_usable_flux_in_both_lamps(run):
    c = run["c"]
    assert 19 <= c <= 22
    for label in ("ORDER LOC DLAMP", "ORDER LOC QLAMP"):
        with fits.open(run["res"].products[label]) as hl:
            meta = hl[2].data
            k = list(meta["order"]).index(c)
            assert meta["n_edges_used"][k] >= 0.5 * meta["n_slices"][k]
    scale = fits.getval(run["res"].products["MFLAT"], "ESO QC D2 SCALE")
    d = fits.getdata(run["res"].products["MFLAT DLAMP"])
    q = fits.getdata(run["res"].products["MFLAT QLAMP"])
    f = fits.getdata(run["res"].products["MFLAT"])
    with fits.open(run["w"]["truth"]) as truth:
        illum_d2, centre_c = truth["ILLUM_D2"].data, truth["CENTRE"].data
    inside = illum_d2 > 0.5 * illum_d2.max()
    centre = sm.poly_eval(centre_c, c, np.arange(3000.0))
    band = (np.abs(np.arange(2048)[None, :] - centre[:, None]) < 10) & inside
    # the scaled D2 crossover order equals the QTH master there (continuity of the two lamps)
    assert np.median(f[band] / q[band]) == pytest.approx(1.0, abs=0.01)
    assert np.median(f[band] / d[band]) == pytest.approx(scale, rel=1e-4)


def test_stitched_flat_accuracy_in_every_order(run):
    lamps = {o: ("D2" if o >= run["c"] else "QTH") for o in range(13, 25)}
    ev = evaluate(run["res"].products["MFLAT"], run["res"].products["ORDER LOC"], run["w"]["truth"], lamps)
    assert set(ev["response_rms_per_order"]) == set(range(13, 25))
    for o, (rms, noise) in ev["response_rms_per_order"].items():
        assert rms <= 1.2 * noise, (o, rms, noise)
    assert max(max(v) for v in ev["edge_rms"].values()) <= 0.15
    assert ev["low_recall"] >= 0.95 and ev["false_rate"] <= 0.0005
    assert ev["max_abs_z_cosmics"] < 5 and ev["inter_order_values"] == [1.0]


def _master(flip, levels):
    """A lamp master as the core returns it, built from the synthetic 4-order frame (orders 1..4)."""
    la = 420
    img = sum(so.frame(orders=(n,), flip=flip, level=1000.0 * levels[n]) for n in (1, 2, 3, 4)).astype(np.float32)
    lo, up = so.edge_coeffs(flip_la=la if flip else None)
    centre = so.centre_coeffs() if not flip else np.array([[la - 1 - 40.0, -0.01, -2e-5], [-80.0, -0.002, 0.0]])
    lay = sm.OrderLayout([1, 2, 3, 4], [0] * 4, [599] * 4)
    omf = [float(np.median(img[295:306, int(round(float(c))) - 5:int(round(float(c))) + 6]))
           for c in (sm.poly_eval(centre, n, 300.0) for n in (1, 2, 3, 4))]
    return {"stacked": img, "background": None, "error": np.sqrt(img + 1).astype(np.float32),
            "quality": np.zeros(img.shape, np.uint8), "order_median_flux": omf, "norm_second": [1.0],
            "qc": {"ORDEXP10": 1.0, "ORDEXP50": 2.0, "ORDEXP90": 3.0},
            "edges": {"lower": {"coeffs": lo}, "upper": {"coeffs": up}, "n_used_per_order": [24] * 4,
                      "points": {"n_slices_per_order": [24] * 4}}}, centre, lay


def test_reversed_orientation_gives_the_mirrored_stitch():
    levels_d = {1: 0.05, 2: 0.08, 3: 1.0, 4: 0.9}
    levels_q = {n: 1.05 - v for n, v in levels_d.items()}
    out = {}
    for flip in (False, True):
        d, centre, lay = _master(flip, levels_d)
        q, _, _ = _master(flip, levels_q)
        p = dict(slice_length_for_edge_detection=70, order_deg=1, disp_axis_deg=2, edge_min_snr=0)
        out[flip] = uvb.combine(d, q, centre, lay, p)
    a, b = out[False], out[True]
    assert a["crossover"] == b["crossover"] == 3
    assert a["d_below"] is False and b["d_below"] is True
    assert a["scale"] == pytest.approx(b["scale"], rel=1e-6)
    np.testing.assert_allclose(b["flux"][:, ::-1], a["flux"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(b["line"], 419 - a["line"], atol=1e-6)
    assert uvb.choose_crossover([1, 2, 3, 4], [24] * 4, [24] * 4, [24] * 4, [50, 80, 1000, 900], [1000, 970, 50, 150]) == 3
    with pytest.raises(sm.ProcessingError, match="no UVB order"):
        uvb.choose_crossover([1, 2], [24, 24], [0, 0], [24, 24], [1, 1], [1, 1])


def test_nominal_set_passes_qc_and_qc_json_has_each_lamp(run):
    import json
    from soxs_mflat.qc import failures
    res = run["res"]
    assert not failures(res.qc), [(r.name, r.value, r.low, r.high) for r in failures(res.qc)]
    rec = json.loads(res.products["QC JSON"].read_text())
    assert rec["passed"] and set(rec["per_lamp"]) == {"DLAMP", "QLAMP"} == set(res.qc_per_lamp)   # API: " DLAMP"
    assert [r.flag for r in res.qc_per_lamp["DLAMP"]] == [r["flag"] for r in rec["per_lamp"]["DLAMP"]]   # "-"
    crossover = next(r for r in rec["qc"] if r["name"] == "CROSSOVER ORDER")
    assert crossover["value"] == run["c"]
    for lamp in ("DLAMP", "QLAMP"):
        h = fits.getheader(res.products[f"MFLAT {lamp}"])
        assert all(r["value"] == pytest.approx(h[f"ESO QC {r['name']}"]) for r in rec["per_lamp"][lamp])
