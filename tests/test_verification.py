"""Every verification rule: bad input gives a clear error naming file and rule, and writes nothing."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from soxs_mflat.frames import VerificationError
from soxs_mflat.recipe import run_mflat
from soxs_mflat.simulate.run import simulate_set


@pytest.fixture(scope="module")
def vis(tmp_path_factory):
    return simulate_set("soxs", "vis", tmp_path_factory.mktemp("vset"), nflats=3, seed=5)


@pytest.fixture(scope="module")
def nir(tmp_path_factory):
    return simulate_set("xshooter", "nir", tmp_path_factory.mktemp("nset"), nflats=2, seed=6)


def _entries(w):
    return [ln.split() for ln in Path(w["sof"]).read_text().splitlines() if ln.strip()]


def _run_bad(tmp_path, entries, rule, match):
    sof = tmp_path / "bad.sof"
    sof.write_text("\n".join(" ".join(e) for e in entries) + "\n")
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match=match) as info:
        run_mflat(sof, out)
    assert info.value.rule == rule
    assert not out.exists()


def _copy_with(tmp_path, path, name=None, **cards):
    dst = tmp_path / (name or Path(path).name)
    shutil.copy(path, dst)
    with fits.open(dst, mode="update") as hl:
        for k, v in cards.items():
            hl[0].header[k.replace("_", " ")] = v
    return str(dst)


def _replace(entries, old, new):
    return [[new if p == old else p, t] for p, t in entries]


@pytest.mark.parametrize("key,value,rule,match", [
    ("HIERARCH_ESO_SEQ_ARM", "NIR", "mixed-arms", "mix of arms"),
    ("INSTRUME", "XSHOOTER", "mixed-instruments", "mix of instruments"),
    ("HIERARCH_ESO_DET_BINX", 2, "mixed-binning", "mix of binnings"),
    ("HIERARCH_ESO_DET_READ_CURID", 3, "mixed-readout", "mix of readout speeds"),
    ("HIERARCH_ESO_DET_OUT1_CONAD", 2.5, "mixed-gain", "mix of gains"),
    ("HIERARCH_ESO_DET_CHIP_RON", 9.9, "mixed-ron", "mix of read noises"),
    ("HIERARCH_ESO_INS_VISE_NAME", "SLIT5.0", "mixed-slit", "mix of slits"),
    ("EXPTIME", 33.0, "mixed-exptime", "mix of exposure times"),
])
def test_mixed_header_values(vis, tmp_path, key, value, rule, match):
    raw = str(vis["raw"][1])
    bad = _copy_with(tmp_path, raw, **{key: value})
    entries = _replace(_entries(vis), str(Path(raw).resolve()), bad)
    if rule == "mixed-arms":  # the tag follows the header so that the header rule is what fails
        entries = [[p, "LAMP,FLAT_NIR" if p == bad else t] for p, t in entries]
    _run_bad(tmp_path, entries, rule, match + r".*" + Path(bad).name)


@pytest.mark.parametrize("drop,rule,match", [
    ("MASTER_BIAS_VIS", "missing-bias", "need a MASTER_BIAS_VIS"),
    ("ORDER_TAB_VIS", "missing-order-table", "need an ORDER_TAB_VIS"),
    ("LAMP,FLAT_VIS", "no-flats", "no raw lamp flats"),
])
def test_missing_inputs(vis, tmp_path, drop, rule, match):
    _run_bad(tmp_path, [e for e in _entries(vis) if e[1] != drop], rule, match)


def test_missing_dark_or_lamp_off_for_nir(nir, tmp_path):
    _run_bad(tmp_path, [e for e in _entries(nir) if "OFF" not in e[1]], "missing-dark", "lamp-off")


def test_tag_mismatch(vis, tmp_path):
    entries = [[p, "ORDER_TAB_VIS" if t == "MASTER_BIAS_VIS" else t] for p, t in _entries(vis)]
    _run_bad(tmp_path, entries, "tag-mismatch", "MASTER_BIAS_VIS.fits: SOF tag ORDER_TAB_VIS but its header says "
             "MASTER_BIAS_VIS")


def test_unknown_frame(vis, tmp_path):
    bad = _copy_with(tmp_path, vis["raw"][0], "odd.fits", HIERARCH_ESO_DPR_TYPE="OBJECT")
    _run_bad(tmp_path, _entries(vis) + [[bad, "OBJECT_VIS"]], "unknown-frame", "cannot classify odd.fits")


def test_missing_file(vis, tmp_path):
    _run_bad(tmp_path, _entries(vis) + [[str(tmp_path / "nope.fits"), "LAMP,FLAT_VIS"]], "missing-file",
             "nope.fits: no such file")


def test_truncated_and_garbage_fits(vis, tmp_path):
    cut = tmp_path / "cut.fits"
    cut.write_bytes(Path(vis["raw"][0]).read_bytes()[:20000])
    _run_bad(tmp_path, _entries(vis) + [[str(cut), "LAMP,FLAT_VIS"]], "unreadable-fits", "cut.fits: .*truncated")
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"this is not FITS" * 200)
    _run_bad(tmp_path, _entries(vis) + [[str(junk), "LAMP,FLAT_VIS"]], "unreadable-fits", "junk.fits: not a readable")


def _with_data(tmp_path, path, fn, name):
    dst = tmp_path / name
    with fits.open(path) as hl:
        hl[0].data = fn(hl[0].data)
        hl.writeto(dst)
    return str(dst)


def test_saturated_and_empty_flats(vis, tmp_path):
    raw = str(Path(vis["raw"][0]).resolve())
    sat = _with_data(tmp_path, raw, lambda d: np.full_like(d, 65535), "sat.fits")
    _run_bad(tmp_path, _replace(_entries(vis), raw, sat), "saturated", "sat.fits: .*saturation")
    empty = _with_data(tmp_path, raw, lambda d: np.full_like(d, 1000), "empty.fits")
    _run_bad(tmp_path, _replace(_entries(vis), raw, empty), "empty-flat", "empty.fits: no lamp light")


def test_wrong_shapes(vis, tmp_path):
    bias = str(Path(vis["bias"]).resolve())
    small = tmp_path / "MASTER_BIAS_VIS.fits"
    with fits.open(bias) as hl:
        for h in hl:
            h.data = h.data[:100]
        hl.writeto(small)
    _run_bad(tmp_path, _replace(_entries(vis), bias, str(small)), "shape", r"MASTER_BIAS_VIS.fits: master bias has shape")
    raw = str(Path(vis["raw"][0]).resolve())
    crop = _with_data(tmp_path, raw, lambda d: d[:1000], "crop.fits")
    _run_bad(tmp_path, _replace(_entries(vis), raw, crop), "mixed-shape", r"one image shape .*crop.fits")


def test_uvb_needs_both_lamps(tmp_path):
    w = simulate_set("xshooter", "uvb", tmp_path / "u", nflats=1, binning="2x2", seed=7)
    entries = [e for e in _entries(w) if e[1] != "LAMP,DFLAT_UVB"]
    _run_bad(tmp_path, entries, "uvb-lamps", "needs both D2")


def test_few_flats_warn_and_existing_products_are_kept(vis, tmp_path):
    entries = [e for e in _entries(vis) if e[1] != "LAMP,FLAT_VIS"][:] + [e for e in _entries(vis)
                                                                          if e[1] == "LAMP,FLAT_VIS"][:2]
    sof = tmp_path / "two.sof"
    sof.write_text("\n".join(" ".join(e) for e in entries) + "\n")
    res = run_mflat(sof, tmp_path / "out")
    assert any("only 2 FLAT frame(s)" in w for w in res.warnings)
    before = {p: p.stat().st_mtime_ns for p in res.products.values()}
    from soxs_mflat.errors import InputError
    with pytest.raises(InputError, match="already exist.*--overwrite"):
        run_mflat(sof, tmp_path / "out")
    assert {p: p.stat().st_mtime_ns for p in res.products.values()} == before
    res2 = run_mflat(sof, tmp_path / "out", overwrite=True)
    assert all(p.stat().st_mtime_ns >= before[p] for p in res2.products.values())
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_inputs_are_not_modified(vis, tmp_path):
    import hashlib
    digest = {p: hashlib.md5(Path(p).read_bytes()).hexdigest() for p, _ in _entries(vis)}
    run_mflat(vis["sof"], tmp_path / "out")
    assert digest == {p: hashlib.md5(Path(p).read_bytes()).hexdigest() for p, _ in _entries(vis)}


def test_parameter_docs_and_shipped_settings_are_generated_from_the_single_source():
    from importlib import resources

    from soxs_mflat import settings
    doc = (Path(__file__).parent.parent / "docs" / "recipe.md").read_text()
    assert settings.markdown_table() in doc
    shipped = resources.files("soxs_mflat").joinpath("data/settings.yaml").read_text()
    assert shipped == settings.example_yaml()
