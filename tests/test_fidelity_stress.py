"""End-to-end accuracy against the simulator's truth, nominal and under the combined stresses of
issue 12 (scattered light, a lamp-level step, a colour tilt, 2000 cosmics per frame, a stale order
table). Every reference is the truth: the photon limit is the variance the simulator injected
(stack_truth), cosmic residuals are in that sigma, never in the product's own ERRS; the ERRS are
checked against the same truth. Bounds are two-sided where a too-good figure would mean a bug."""
import shutil

import numpy as np
import pytest
from astropy.io import fits

from soxs_mflat.recipe import run_mflat
from soxs_mflat.simulate.evaluate import evaluate
from soxs_mflat.simulate.run import simulate_set

STRESS = "scatter=0.02,level=0.08,tilt=0.04,cosmics=2000,stale=1"
# (instrument, arm, binning, stress): SOXS VIS nominal and stressed, X-shooter VIS and UVB stressed
# (UVB at 2x2 to stay fast: its D2 master under stress was the worst case, ratio 7 and NaN z)
# SOXS NIR stressed: its background model was 1-6 % high in the orders (resp/limit 1.07); X-shooter
# NIR stressed: seed 5 puts cosmics on one pixel in 3 of its 5 frames (a 162-sigma residual before)
CASES = [("soxs", "vis", "1x1", ""), ("soxs", "vis", "1x1", STRESS), ("xshooter", "vis", "1x1", STRESS),
         ("xshooter", "uvb", "2x2", STRESS), ("soxs", "nir", "1x1", STRESS), ("xshooter", "nir", "1x1", STRESS)]


def _products(inst, arm, binning, stress, root):
    w = simulate_set(inst, arm, root / "set", nflats=5, binning=binning, seed=5, stress=stress)
    res = run_mflat(w["sof"], root / "out", plots=False)
    p = res.products
    if arm != "uvb":
        return {"": evaluate(p["MFLAT"], p["ORDER LOC"], w["truth"])}, w
    cross = int(next(r.value for r in res.qc if r.name == "CROSSOVER ORDER"))
    orders = fits.getdata(w["truth"], "ORDERS")["order"]
    stitched = {int(o): "D2" if o >= cross else "QTH" for o in orders}
    return {"D2": evaluate(p["MFLAT DLAMP"], p["ORDER LOC DLAMP"], w["truth"], lamp="D2"),
            "QTH": evaluate(p["MFLAT QLAMP"], p["ORDER LOC QLAMP"], w["truth"], lamp="QTH"),
            "stitched": evaluate(p["MFLAT"], p["ORDER LOC"], w["truth"], lamp=stitched)}, w


@pytest.fixture(scope="module", params=CASES, ids=[f"{i}-{a}-{b}-{'stress' if s else 'nominal'}" for i, a, b, s in CASES])
def case(request, tmp_path_factory):
    inst, arm, binning, stress = request.param
    root = tmp_path_factory.mktemp(f"{inst}{arm}")
    evs, w = _products(inst, arm, binning, stress, root)
    yield dict(evs=evs, binning=binning, stress=bool(stress), w=w)
    shutil.rmtree(root, ignore_errors=True)   # ~0.3 GB a case, not kept to the session's end


def test_errs_calibrated_against_truth(case):
    for name, ev in case["evs"].items():
        # the z-score (flat - truth) / ERRS over the well-exposed pixels: finite (no zero ERRS inside
        # the orders) and of unit spread; the ERRS themselves match the truth's noise
        assert ev["n_zero_errs"] == 0 and np.isfinite(ev["errs_z_std"]), name
        assert 0.95 <= ev["errs_z_std"] <= 1.05, (name, ev["errs_z_std"])
        assert 0.97 <= ev["noise_rms"] / ev["photon_limit"] <= 1.03, (name, ev["noise_rms"], ev["photon_limit"])


def test_pixel_response_at_the_photon_limit(case):
    for name, ev in case["evs"].items():
        assert 0.98 <= ev["response_ratio"] <= 1.05, (name, ev["response_ratio"], ev["response_rms_per_order"])
        worst = max(a / b for a, b in ev["response_rms_per_order"].values())
        assert worst <= 1.08, (name, ev["response_rms_per_order"])
        if not case["stress"]:
            assert ev["block_z_rms"] <= 2.0, (name, ev["block_z_rms"])    # no smooth error on nominal sets


def test_cosmics_removed_against_truth(case):
    for name, ev in case["evs"].items():
        assert ev["n_cosmic_pixels"] > (500 if case["stress"] else 20), name     # cosmics did land in the orders
        assert ev["max_z_cosmics_truth"] < 5.0, (name, ev["max_z_cosmics_truth"])
        assert ev["n_cosmics_over_5"] == 0


def test_edges_and_low_sensitivity(case):
    limit = 0.05 if case["binning"] == "1x1" else 0.15      # issue 12's target is for 1x1
    for name, ev in case["evs"].items():
        worst = max(max(v) for v in ev["edge_rms"].values())
        assert worst <= limit, (name, ev["edge_rms"])
        assert ev["n_low"] > 20 and ev["low_recall"] >= 0.99, name
        assert ev["false_rate"] <= 1e-4, name
