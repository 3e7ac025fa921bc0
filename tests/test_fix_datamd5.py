"""soxs-mflat fix-datamd5 rewrites soxs-mflat products only: a raw frame, a calibration of another
recipe, a file with a foreign PRO CATG or one that is not FITS is refused (exit 2, naming the file),
byte for byte untouched (was: a raw frame got DATAMD5 and checksums, exit 0)."""
import hashlib
import shutil
import subprocess
import sys

import pytest
from astropy.io import fits

from soxs_mflat.errors import InputError
from soxs_mflat.products import check_product, product_catgs, rewrite_with_datamd5


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "soxs_mflat.cli", *map(str, args)], capture_output=True, text=True)


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reduced(inputs_vis, module_tmp):
    out = module_tmp("fix_datamd5") / "out"
    r = _cli("run", inputs_vis["sof"], "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    return out


def test_product_catgs_are_the_contracts():
    assert {"MASTER_FLAT_VIS", "ORDER_TAB_NIR", "MFLAT_BKGROUND_UVB"} <= product_catgs()
    assert "MASTER_BIAS_VIS" not in product_catgs() and "ORDER_TAB" not in product_catgs()


def _variants(inputs_vis, d):
    """name -> (file, the reason given)"""
    d.mkdir()
    raw = shutil.copyfile(inputs_vis["raw"][0], d / "raw.fits")
    bias = shutil.copyfile(inputs_vis["bias"], d / "bias.fits")            # PRO CATG MASTER_BIAS_VIS
    table = shutil.copyfile(inputs_vis["order_tab"][0], d / "otab.fits")   # ORDER_TAB_VIS of another recipe
    text = d / "text.fits"
    text.write_text("not FITS at all\n")
    odd = shutil.copyfile(inputs_vis["raw"][1], d / "odd.fits")
    fits.setval(odd, "HIERARCH ESO PRO CATG", value=7)
    return {"raw": (raw, r"not a product \(no ESO PRO CATG\)"),
            "bias": (bias, r"ESO PRO CATG 'MASTER_BIAS_VIS' is not a soxs-mflat product's"),
            "otab": (table, r"ESO PRO REC1 ID None, not 'soxs_mflat': a product of another recipe"),
            "text": (text, "not a readable FITS file|cannot read it"),
            "odd": (odd, r"ESO PRO CATG 7 is not"),
            "missing": (d / "none.fits", "cannot read it: No such file")}


def test_non_products_refused_untouched(inputs_vis, tmp_path):
    for name, (path, reason) in _variants(inputs_vis, tmp_path / "v").items():
        before = _md5(path) if path.exists() else None
        with pytest.raises(InputError, match=reason):
            rewrite_with_datamd5(path)
        r = _cli("fix-datamd5", path)
        assert r.returncode == 2 and f"fix-datamd5: {path}: " in r.stderr, (name, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr
        assert (_md5(path) if path.exists() else None) == before, name
        if name == "raw":
            assert "DATAMD5" not in fits.getheader(path) and "CHECKSUM" not in fits.getheader(path)


def test_products_of_the_recipe_are_fixed(reduced, tmp_path):
    for p in sorted(reduced.glob("*.fits")):
        check_product(p)
        q = shutil.copyfile(p, tmp_path / p.name)
        with fits.open(q, mode="update") as hl:         # as esorex's CPL 7.2.3 leaves it: a wrong DATAMD5
            hl[0].header["DATAMD5"] = "0" * 32
        r = _cli("fix-datamd5", q)
        assert r.returncode == 0 and f"DATAMD5 {'0' * 32} -> {fits.getval(p, 'DATAMD5')}" in r.stdout, r.stderr


def test_every_file_is_checked_before_any_is_rewritten(reduced, inputs_vis, tmp_path):
    """`fix-datamd5 product raw` rewrote the product before it refused the raw frame."""
    product = shutil.copyfile(reduced / "master_flat_vis.fits", tmp_path / "mf.fits")
    with fits.open(product, mode="update") as hl:
        hl[0].header["DATAMD5"] = "0" * 32
    raw = shutil.copyfile(inputs_vis["raw"][0], tmp_path / "raw.fits")
    before = _md5(product)
    r = _cli("fix-datamd5", product, raw)
    assert r.returncode == 2 and f"fix-datamd5: {raw}: " in r.stderr and _md5(product) == before
