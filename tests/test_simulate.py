import numpy as np
import pytest
from astropy.io import fits
from scipy.interpolate import CubicSpline

from soxs_mflat.core import poly_eval
from soxs_mflat.instruments import get_arm
from soxs_mflat.prepare import prepare_raw
from soxs_mflat.simulate.run import simulate_set


def _load(path):
    with fits.open(path, memmap=False) as hl:
        return fits.HDUList([h.copy() for h in hl])


@pytest.fixture(scope="module")
def soxs_vis(module_tmp):
    return simulate_set("soxs", "vis", module_tmp("svis"), nflats=3, seed=1)


@pytest.fixture(scope="module")
def xsh_uvb(module_tmp):
    return simulate_set("xshooter", "uvb", module_tmp("xuvb"), nflats=2, binning="1x2", seed=2)


@pytest.fixture(scope="module")
def soxs_nir(module_tmp):
    return simulate_set("soxs", "nir", module_tmp("snir"), nflats=2, seed=3)


def test_headers_classify(soxs_vis, xsh_uvb, soxs_nir):
    h = fits.getheader(soxs_vis["raw"][0])
    assert (h["INSTRUME"], h["ESO SEQ ARM"], h["ESO DPR CATG"]) == ("SOXS", "VIS", "CALIB")
    assert (h["ESO DPR TYPE"], h["ESO DPR TECH"]) == ("LAMP,FLAT", "ECHELLE,SLIT")
    assert h["ESO INS QTH NAME"] == "Qth_Lamp" and "ESO INS TEMP104 VAL" in h
    types = sorted({fits.getval(p, "ESO DPR TYPE") for p in xsh_uvb["raw"]})
    assert types == ["LAMP,DFLAT", "LAMP,QFLAT"]
    hx = fits.getheader(xsh_uvb["raw"][0])
    assert (hx["CDELT1"], hx["CDELT2"], hx["ESO DET WIN1 BINY"]) == (1.0, 2.0, 2)
    off = [fits.getheader(p) for p in soxs_nir["off"]]
    assert all(o["ESO DPR TYPE"] == "FLAT,LAMP" and o["ESO DPR TECH"] == "IMAGE" for o in off)
    assert fits.getval(xsh_uvb["bias"], "ESO PRO CATG", ext=0) == "MASTER_BIAS_UVB"
    objs = sorted(fits.getval(p, "OBJECT") for p in xsh_uvb["order_tab"])
    assert objs == ["LAMP,DORDERDEF", "LAMP,QORDERDEF"]


def test_raw_formats_and_orientation(soxs_vis, xsh_uvb, soxs_nir):
    assert fits.getdata(soxs_vis["raw"][0]).dtype.byteorder in ">=" and fits.getdata(soxs_vis["raw"][0]).dtype.kind == "u"
    assert fits.getdata(soxs_nir["raw"][0]).dtype.kind == "f"
    raw = fits.getdata(xsh_uvb["raw"][0])
    assert raw.shape == (1500, 2144)               # 3000 rows binned by 2
    # UVB raw is stored rotated by 180 deg: the prescan (48 px) sits on the right in raw
    assert abs(np.median(raw[:, -40:]) - 1000) < 5 and abs(np.median(raw[:, :40]) - 1000) < 5
    sci, _ = prepare_raw(xsh_uvb["raw"][0])
    assert sci.shape == (1500, 2048)


def test_prepared_frames_round_trip_to_truth(soxs_vis):
    truth = _load(soxs_vis["truth"])
    drift = float(truth[0].header["DRIFTQTH"].split(",")[0])
    expected = drift * (truth["ILLUM_QTH"].data + truth["SCATTER_QTH"].data) * truth["RESPONSE"].data
    bias = fits.getdata(soxs_vis["bias"])
    sci, _ = prepare_raw(soxs_vis["raw"][0])
    good = truth["DEFECTS"].data == 0
    z = ((sci - bias - expected) / np.sqrt(expected + 3.8**2 + 1))[good]
    z = z[np.abs(z) < 10]                           # cosmics
    assert abs(np.mean(z)) < 0.02 and 0.95 < np.std(z) < 1.08
    assert 20000 < sci.max() / 1.0 - 1000 < 60000


@pytest.mark.parametrize("fixture", ["soxs_vis", "xsh_uvb", "soxs_nir"])
def test_truth_edges_sit_at_their_level(fixture, request):
    w = request.getfixturevalue(fixture)
    t = _load(w["truth"])
    a_is_x = bool(t[0].header["AISX"])
    bin_a = t[0].header["BINX"] if a_is_x else t[0].header["BINY"]
    bin_b = t[0].header["BINY"] if a_is_x else t[0].header["BINX"]
    illum = t["ILLUM_QTH"].data if a_is_x else t["ILLUM_QTH"].data.T   # as (B, A)
    polys = t["EDGE_POLY"].data
    orders = t["ORDERS"].data
    centre = t["CENTRE"].data
    for lev in (0.2, 0.3, 0.4, 0.5):
        for side in ("lower", "upper"):
            c = polys["coeffs"][(polys["level"] == lev) & (polys["side"] == side)][0]
            for o, b0, b1 in orders[len(orders) // 3: len(orders) // 3 + 2]:
                for bu in np.linspace(b0 + 100, b1 - 100, 4):
                    bb = int(round(bu / bin_b))   # soxspipe's convention: binned pixel i is unbinned bin * i
                    bu = bin_b * bb
                    a = poly_eval(c, o, bu) / bin_a
                    ac = poly_eval(centre, o, bu) / bin_a
                    line = illum[bb].astype(float)
                    k = np.arange(int(a) - 3, int(a) + 5)
                    val = CubicSpline(k, line[k])(a)
                    plateau = line[int(round(ac)) - 3:int(round(ac)) + 4].mean()
                    assert val / plateau == pytest.approx(lev, abs=0.01)


def test_order_centre_table_is_close_but_not_exact(soxs_vis):
    t = _load(soxs_vis["truth"])
    tab = _load(soxs_vis["order_tab"][0])
    row = tab[1].data[0]
    dn, db = row["degorder_cent"], row["degy_cent"]
    c = np.array([[row[f"cent_{i}{j}"] for j in range(db + 1)] for i in range(dn + 1)])
    assert tab[0].header["ESO PRO CATG"] == "ORDER_TAB_VIS"
    b = np.linspace(100, 4000, 30)
    d = poly_eval(c, 2, b) - poly_eval(t["CENTRE"].data, 2, b)
    assert 0 < np.abs(d).max() < 0.1
    assert list(tab[2].data["order"]) == [1, 2, 3, 4]


def test_sof_lists_existing_files(xsh_uvb):
    lines = xsh_uvb["sof"].read_text().split("\n")
    entries = [ln.split() for ln in lines if ln]
    assert len(entries) == 4 + 1 + 2 + 1
    assert all(fits.getheader(p) is not None for p, _ in entries)
    assert {t for _, t in entries} == {"LAMP,DFLAT_UVB", "LAMP,QFLAT_UVB", "MASTER_BIAS_UVB", "ORDER_TAB_UVB",
                                       "BP_MAP_RP_UVB"}
    import re
    assert re.fullmatch(r"20251012T\d{6}_UVB_1X2_FAST_MFLAT_DQ_1_0X11_4_0S_XSHOOTER\.sof", xsh_uvb["sof"].name)


def test_bad_options():
    with pytest.raises(ValueError, match="not binned"):
        simulate_set("soxs", "nir", "/nonexistent", binning="2x2")
    with pytest.raises(ValueError, match="unknown instrument/arm"):
        simulate_set("soxs", "uvb", "/nonexistent")


@pytest.mark.parametrize("inst, arm", [("soxs", "vis"), ("soxs", "nir")])
def test_clean_copy_is_the_frame_less_its_cosmics(inst, arm, tmp_path):
    """clean_copy writes each lamp flat without its cosmic rays and nothing else changes: the real
    frames are byte-identical to a run without it, and raw - clean is zero off the truth's hit map."""
    plain = simulate_set(inst, arm, tmp_path / "plain", nflats=2, seed=4, stress="cosmics=2000")
    w = simulate_set(inst, arm, tmp_path / "with", nflats=2, seed=4, stress="cosmics=2000", clean_copy=True)
    hits = fits.getdata(w["truth"], "COSMICS_QTH") > 0
    a = get_arm(inst, arm)
    r0, r1, c0, c1 = a.science
    for p, q in zip(plain["raw"], w["raw"]):
        assert p.read_bytes() == q.read_bytes()
        raw = fits.getdata(q).astype(np.float64)
        clean = fits.getdata(q.parent.parent / "raw_clean" / q.name).astype(np.float64)
        d = np.rot90(raw - clean, a.rotation // 90)[r0:r0 + hits.shape[0], c0:c0 + hits.shape[1]]
        assert np.count_nonzero(np.rot90(raw - clean, a.rotation // 90)) == np.count_nonzero(d)   # science only
        assert np.all(d[~hits] == 0) and d[hits].max() > 3e3 / a.gain * 0.9, d[hits].max()
    clean_sof = w["sof_clean"].read_text()
    assert clean_sof.count("/raw_clean/") == 2 and clean_sof.count("/raw/") == (2 if a.nir_like else 0)
