"""End-to-end recipe on simulated sets of every single-lamp arm, checked against the truth."""
import glob
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from soxs_mflat.recipe import run_mflat
from soxs_mflat.simulate.evaluate import evaluate
from soxs_mflat.simulate.run import simulate_set

CASES = [("soxs", "vis", "1x1"), ("soxs", "nir", "1x1"), ("xshooter", "vis", "1x1"), ("xshooter", "nir", "1x1"),
         ("xshooter", "vis", "2x2")]


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def reduced(request, tmp_path_factory):
    inst, arm, binning = request.param
    root = tmp_path_factory.mktemp(f"{inst}{arm}{binning}")
    w = simulate_set(inst, arm, root / "set", nflats=5, binning=binning, seed=11)
    res = run_mflat(w["sof"], root / "out")
    ev = evaluate(res.products["MFLAT"], res.products["ORDER LOC"], w["truth"])
    yield dict(w=w, res=res, ev=ev, arm=arm.upper())
    shutil.rmtree(root, ignore_errors=True)   # ~0.4 GB a case, not kept to the session's end


def test_edges_match_truth(reduced):
    worst = max(max(v) for v in reduced["ev"]["edge_rms"].values())
    assert worst <= 0.15, reduced["ev"]["edge_rms"]


def test_pixel_response_at_noise_limit(reduced):
    ev = reduced["ev"]
    assert ev["response_rms"] <= 1.2 * ev["noise_rms"], ev


def test_low_sensitivity_pixels(reduced):
    ev = reduced["ev"]
    assert ev["n_low"] > 20
    assert ev["low_recall"] >= 0.95 and ev["false_rate"] <= 0.0005, ev


def test_cosmics_and_inter_order(reduced):
    ev = reduced["ev"]
    assert ev["n_cosmic_pixels"] > 20
    assert ev["max_abs_z_cosmics"] < 5.0
    assert ev["inter_order_values"] == [1.0]


def test_products_are_dfs_compliant(reduced):
    arm = reduced["arm"]
    p = reduced["res"].products
    with fits.open(p["MFLAT"], checksum=True) as hl:
        h = hl[0].header
        assert [x.name for x in hl] == ["FLUX", "QUAL", "ERRS"]
        assert hl["FLUX"].data.dtype.kind == "f" and hl["FLUX"].data.dtype.itemsize == 4
        assert hl["QUAL"].data.dtype == np.uint8
        assert (h["ESO PRO CATG"], h["ESO PRO TYPE"], h["ESO PRO TECH"]) == (f"MASTER_FLAT_{arm}", "REDUCED", "IMAGE")
        assert h["ESO PRO REC1 ID"] == "soxs_mflat" and h["ESO PRO REC1 PIPE ID"].startswith("soxs-mflat/")
        n_raw = len(reduced["w"]["raw"]) + len(reduced["w"]["off"])   # flats and NIR lamp-off frames
        assert h[f"ESO PRO REC1 RAW{n_raw} NAME"].endswith(".fits") and f"ESO PRO REC1 RAW{n_raw + 1} NAME" not in h
        assert h["ESO PRO REC1 CAL1 DATAMD5"] and h["ESO PRO REC1 PARAM1 NAME"]
        assert isinstance(h["ESO QC X RES SD"], float) and isinstance(h["ESO QC N LOW SENS"], int)
        assert "ESO DPR TYPE" not in h and len(h["DATAMD5"]) == 32 and "CHECKSUM" in h
    from soxs_mflat.products import file_datamd5
    for label in ("MFLAT", "ORDER LOC", "BKGROUND FITS"):   # computed from memory, checked on the file's bytes
        if label in p:
            assert fits.getval(p[label], "DATAMD5") == file_datamd5(p[label]), label
    with fits.open(p["ORDER LOC"]) as hl:
        cols = hl[1].columns.names
        assert hl[0].header["ESO PRO CATG"] == f"ORDER_TAB_{arm}"
        assert "cent_00" in cols and "edgelow_c00" in cols and "degorder_edgeup" in cols
        assert {"order", "maxvalue", "minThreshold", "maxThreshold"} <= set(hl[2].columns.names)
    pdfs = glob.glob(str(p["ORDER LOC RES"].parent / "*.pdf"))
    assert len(pdfs) == 2 and all(Path(f).read_bytes()[:5] == b"%PDF-" for f in pdfs)


def test_nominal_set_passes_qc(reduced):
    import json
    from soxs_mflat.qc import failures
    res = reduced["res"]
    assert not failures(res.qc), [(r.name, r.value, r.low, r.high) for r in failures(res.qc)]
    rec = json.loads(res.products["QC JSON"].read_text())
    assert rec["passed"] and rec["arm"] == reduced["arm"] and len(rec["qc"]) == len(res.qc)
