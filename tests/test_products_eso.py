"""ESO data-product conventions of the products (data/contract/products.yaml): DICD HDU classes and the
links between FLUX, ERRS and QUAL, BUNIT, EXTNAMEs of the order table, PRO ANCESTOR, and what astropy's
CCDData reader finds. (The esorex plugin writes the same keys: tests/test_esorex.py compares them.)"""
import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.table import Table

from soxs_mflat.contract import section
from soxs_mflat.recipe import run_mflat
from soxs_mflat.simulate.run import simulate_set

LINKS = {"SCIDATA": "DATA", "ERRDATA": "ERROR", "QUALDATA": "QUALITY"}


@pytest.fixture(scope="module")
def run(module_tmp):
    root = module_tmp("products")
    w = simulate_set("soxs", "vis", root / "set", nflats=2, seed=1)
    return w, run_mflat(w["sof"], root / "out"), root


def test_ccddata_reads_flux_with_unit_and_dfs_header(run):
    _, res, _ = run
    ccd = CCDData.read(res.products["MFLAT"])
    with fits.open(res.products["MFLAT"]) as hl:
        np.testing.assert_array_equal(ccd.data, hl["FLUX"].data)
    assert ccd.unit == u.dimensionless_unscaled          # BUNIT '1': a normalised flat
    assert ccd.header["ESO PRO CATG"] == "MASTER_FLAT_VIS" and ccd.header["HDUCLAS2"] == "DATA"
    # astropy looks for UNCERT/MASK by default; the products keep the ecosystem's ERRS/QUAL names
    assert ccd.uncertainty is None and ccd.mask is None
    bk = CCDData.read(res.products["BKGROUND FITS"])
    assert bk.unit == u.dimensionless_unscaled and bk.header["ESO PRO CATG"] == "MFLAT_BKGROUND_VIS"


def test_ccddata_reads_errors_and_mask_under_the_ecosystem_names(run):
    _, res, _ = run
    ccd = CCDData.read(res.products["MFLAT"], hdu_uncertainty="ERRS", hdu_mask="QUAL")   # as soxspipe reads them
    with fits.open(res.products["MFLAT"]) as hl:
        assert isinstance(ccd.uncertainty, StdDevUncertainty)   # from UTYPE
        np.testing.assert_array_equal(ccd.uncertainty.array, hl["ERRS"].data)
        np.testing.assert_array_equal(ccd.mask, hl["QUAL"].data != 0)
    assert ccd.mask.any() and not ccd.mask.all()


def test_dicd_classes_and_links_resolve(run):
    _, res, _ = run
    with fits.open(res.products["MFLAT"]) as hl:
        assert [h.name for h in hl] == [d["extname"] for d in section("products")["master_flat_hdus"]]
        cls = {}
        for h in hl:
            hd = h.header
            assert (hd["HDUCLASS"], hd["HDUDOC"], hd["HDUVERS"], hd["HDUCLAS1"]) == ("ESO", "DICD", "DICD version 6",
                                                                                       "IMAGE")
            cls[hd["HDUCLAS2"]] = h.name
        assert set(cls) == {"DATA", "ERROR", "QUALITY"}
        for h in hl:                        # every HDU points at the other two, by EXTNAME, with the right class
            own = h.header["HDUCLAS2"]
            for key, target in LINKS.items():
                if target == own:
                    assert key not in h.header
                else:
                    assert hl[h.header[key]].header["HDUCLAS2"] == target, (h.name, key)
                    assert hl[h.header[key]].data.shape == h.data.shape
        assert hl[cls["ERROR"]].header["HDUCLAS3"] == "RMSE" and hl[cls["QUALITY"]].header["HDUCLAS3"] == "MASKZERO"
        assert hl[cls["ERROR"]].header["BUNIT"] == hl[cls["DATA"]].header["BUNIT"] == "1"
        assert hl[cls["QUALITY"]].data.dtype == np.uint8 and "BUNIT" not in hl[cls["QUALITY"]].header


def test_order_table_extensions_are_named_and_keep_soxspipes_positions(run):
    _, res, _ = run
    with fits.open(res.products["ORDER LOC"]) as hl:
        assert [h.name for h in hl] == ["PRIMARY", "ORDER_POLY", "ORDER_META"]
    poly, meta = (Table.read(res.products["ORDER LOC"], hdu=k) for k in (1, 2))   # soxspipe reads by position
    assert "cent_00" in poly.colnames and "edgeup_c00" in poly.colnames and list(meta["order"]) == [1, 2, 3, 4]


def test_pro_ancestor_is_the_first_raw_arcfile(run):
    w, res, _ = run
    first = fits.getheader(w["raw"][0])
    for label in ("MFLAT", "ORDER LOC", "BKGROUND FITS"):
        h = fits.getheader(res.products[label])
        assert h["ESO PRO REC1 RAW1 NAME"] == w["raw"][0].name
        assert h["ESO PRO ANCESTOR"] == h["ARCFILE"] == first["ARCFILE"], label


def test_no_ancestor_when_the_raws_have_no_arcfile(tmp_path):
    w = simulate_set("soxs", "vis", tmp_path / "set", nflats=2, seed=2)
    for p in w["raw"]:
        with fits.open(p, mode="update") as hl:
            del hl[0].header["ARCFILE"]
    h = fits.getheader(run_mflat(w["sof"], tmp_path / "out").products["MFLAT"])
    assert "ESO PRO ANCESTOR" not in h and "ARCFILE" not in h


def test_written_files_are_the_contracts(run):
    _, res, root = run
    expect = {label: d["file"].format(arm="vis", tag="") for label, d in section("products")["products"].items()}
    assert {k: v.name for k, v in res.products.items() if k in expect} == expect
    assert sorted(p.name for p in (root / "out").glob("*.fits")) == sorted(v for v in expect.values()
                                                                          if v.endswith(".fits"))


@pytest.mark.parametrize("dtype,in_memory", [([("a", "<i8"), ("b", "<f8")], True), ([("a", ">i2"), ("b", ">f4")], True),
                                             ([("a", "S4"), ("b", "<f8")], False), ([("a", "<u2"), ("b", "<f8")], False),
                                             ([("a", "<f8", (2,)), ("b", "<f8")], False)])
def test_table_datamd5_from_memory_or_from_the_file(tmp_path, dtype, in_memory):
    """DATAMD5 of a table product is hashed from memory only where astropy writes the columns' big-endian
    bytes unchanged (the order tables); either way it is the MD5 of the data units in the written file."""
    from soxs_mflat.ordertable import _table_hdu
    from soxs_mflat.products import _memory_datamd5, file_datamd5, write_fits
    data = np.zeros(300, dtype=dtype)
    for name in data.dtype.names:
        field = data[name]
        data[name] = (np.arange(field.size).reshape(field.shape) % 97) if field.dtype.kind != "S" else b"ab"
    hl = fits.HDUList([fits.PrimaryHDU(), _table_hdu(data, "T")])
    assert (_memory_datamd5(hl) is not None) == in_memory
    path = write_fits(hl, tmp_path / "t.fits", overwrite=False)
    assert fits.getval(path, "DATAMD5") == file_datamd5(path)
    with fits.open(path, checksum=True) as out:   # the checksums too
        assert out[1].verify_checksum() == 1


def _datamd5_oracle(raw: bytes) -> str:
    """MD5 of the data units (padding included) found by walking the file's 2880-byte blocks and reading
    each header's END, BITPIX, NAXISn, PCOUNT and GCOUNT cards (no astropy)."""
    import hashlib
    md5, pos = hashlib.md5(), 0
    while pos < len(raw):
        cards = {}
        while True:
            block = raw[pos:pos + 2880]
            pos += 2880
            for k in range(0, 2880, 80):
                key, val = block[k:k + 8].decode().strip(), block[k + 10:k + 30].decode().strip()
                if key == "END":
                    break
                cards[key] = val
            else:
                continue
            break
        n = int(cards.get("NAXIS", 0))
        size = abs(int(cards["BITPIX"])) // 8 * int(cards.get("GCOUNT", 1)) * (
            int(cards.get("PCOUNT", 0)) + (int(np.prod([int(cards[f"NAXIS{i}"]) for i in range(1, n + 1)])) if n else 0))
        span = -(-size // 2880) * 2880
        md5.update(raw[pos:pos + span])
        pos += span
    return md5.hexdigest()


def test_file_datamd5_against_an_independent_reading_of_the_blocks(tmp_path):
    """Data units larger than the hashing buffer (1 MB), one not a whole number of buffers, and a table."""
    from soxs_mflat.products import file_datamd5
    rng = np.random.default_rng(5)
    img = rng.normal(size=(700, 513)).astype(">f4")          # 1.37 MB + padding
    tab = np.zeros(3, dtype=[("a", ">i8"), ("b", ">f8")])
    tab["a"], tab["b"] = [1, 2, 3], [0.5, 1.5, 2.5]
    path = tmp_path / "m.fits"
    fits.HDUList([fits.PrimaryHDU(img), fits.ImageHDU(rng.integers(0, 9, (2100, 1000)).astype(np.uint8)),
                  fits.BinTableHDU(tab)]).writeto(path)
    raw = path.read_bytes()
    assert file_datamd5(path) == _datamd5_oracle(raw) == file_datamd5(path, raw)   # the file, or its bytes


@pytest.mark.parametrize("in_place", [True, False])
def test_result_images_put_into_fits_byte_order(in_place):
    """The run's own result images are swapped in place (no second 13 MB buffer per image), its dict then
    holds the big-endian view of the same values; any other caller's arrays are copied and left alone."""
    from soxs_mflat.recipe import _big_endian
    a = np.arange(-6.0, 6.0, dtype=np.float32).reshape(3, 4) / 7
    values = a.copy()
    res = {"flux": a}
    out = _big_endian(res, "flux", in_place, None)
    assert out.dtype.str == ">f4" and np.array_equal(out, values)
    assert out.tobytes() == values.astype(">f4").tobytes()                 # the bytes FITS stores
    assert np.shares_memory(out, a) is in_place
    assert res["flux"] is (out if in_place else a)
    assert np.array_equal(res["flux"], values)                            # the dict's values never change
    assert _big_endian({"x": out}, "x", in_place, None) is out            # already big-endian: as it is
