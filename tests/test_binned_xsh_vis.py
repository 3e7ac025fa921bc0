"""2x2 X-shooter VIS: coordinates in soxspipe's order-table convention (binned pixel i is unbinned
coordinate 2i), edges against the simulator's truth, and no illuminated pixel set to 1."""
import numpy as np
import pytest
from astropy.io import fits
from scipy.ndimage import maximum_filter1d

from soxs_mflat.recipe import run_mflat
from soxs_mflat.simulate.evaluate import evaluate
from soxs_mflat.simulate.run import simulate_set

BIN = 2


@pytest.fixture(scope="module")
def run(module_tmp):
    root = module_tmp("xshvis2x2")
    w = simulate_set("xshooter", "vis", root / "set", nflats=3, binning="2x2", seed=5)
    res = run_mflat(w["sof"], root / "out")
    with fits.open(w["truth"]) as t:
        truth = {"illum": t["ILLUM_QTH"].data.astype(float), "orders": np.array(t["ORDERS"].data["order"]),
                 "b_min": np.array(t["ORDERS"].data["b_min"]), "b_max": np.array(t["ORDERS"].data["b_max"])}
    with fits.open(res.products["MFLAT"]) as hl:
        flux, qual = hl["FLUX"].data.astype(float), hl["QUAL"].data.copy()
    return dict(w=w, res=res, truth=truth, flux=flux, qual=qual)


def _power_series(row, prefix, dn, db, n, b):
    """sum_ij c_ij n^i b^j from an order table's columns (numpy only, not the package's evaluator)."""
    return sum(float(row[f"{prefix}{i}{j}"]) * n ** i * b ** j for i in range(dn + 1) for j in range(db + 1))


def _light_centroid(illum, order_centre_binned, half=20):
    """Flux-weighted centroid (binned px) of the truth illumination around a predicted centre on each line."""
    out = []
    for line, c in enumerate(order_centre_binned):
        a = np.arange(int(round(c)) - half, int(round(c)) + half + 1)
        v = illum[line, a]
        out.append(np.sum(a * v) / np.sum(v))
    return np.array(out)


@pytest.mark.parametrize("which", ["truth", "order_tab"])
def test_truth_and_centre_table_follow_soxspipe_convention(run, which):
    """The light of binned line i is centred where the polynomial at unbinned B = 2i, divided by 2, says
    (the old bin*i + (bin-1)/2 mapping is 0.25 binned px off along A)."""
    with fits.open(run["w"]["truth"] if which == "truth" else run["w"]["order_tab"][0]) as hl:
        if which == "truth":
            c = hl["CENTRE"].data
            centre = lambda n, b: sum(c[i, j] * n ** i * b ** j for i in range(c.shape[0])  # noqa: E731
                                      for j in range(c.shape[1]))
        else:
            row = hl[1].data[0]
            centre = lambda n, b: _power_series(row, "cent_", int(row["degorder_cent"]),  # noqa: E731
                                                int(row["degy_cent"]), n, b)
    illum = run["truth"]["illum"]
    for n, b0, b1 in zip(run["truth"]["orders"][2:12:3], run["truth"]["b_min"][2:12:3], run["truth"]["b_max"][2:12:3]):
        lines = np.arange(int(b0 / BIN) + 60, int(b1 / BIN) - 60, 40)
        predicted = centre(float(n), BIN * lines.astype(float)) / BIN
        measured = _light_centroid(illum[lines], predicted)
        assert np.abs(measured - predicted).max() < 0.05, (n, measured - predicted)


def test_edges_within_015_px_of_truth(run):
    ev = evaluate(run["res"].products["MFLAT"], run["res"].products["ORDER LOC"], run["w"]["truth"])
    worst = max(max(v) for v in ev["edge_rms"].values())
    assert worst <= 0.15, ev["edge_rms"]


def test_no_illuminated_pixel_is_one(run):
    """Illuminated: at least 30 % of the order's light on that line (and not a far tail). Before, the first
    detector line of orders that run off the detector and the lines where an order's light fades beyond
    its traced range were set to exactly 1."""
    illum, flux, qual = run["truth"]["illum"], run["flux"], run["qual"]
    local = maximum_filter1d(illum, size=61, axis=1)
    lit = (illum >= 0.3 * local) & (illum >= 1e-3 * illum.max())
    assert lit[0].any() and lit[-1].any()              # orders do reach both detector edges
    ones = lit & (flux == 1.0)
    assert not ones.any(), np.argwhere(ones)[:10]
    # light beyond an order's traced range keeps its flux and is flagged (QUAL bit 8), not set to 1
    beyond = (qual & 8) != 0
    assert beyond.any() and (lit & beyond).any()
    assert np.all(flux[beyond] != 1.0)
    # what is set to 1 receives (almost) no light
    assert illum[flux == 1.0].max() < 0.3 * illum.max()
