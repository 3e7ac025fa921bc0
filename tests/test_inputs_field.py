"""Inputs as the field makes them, through the Python CLI: an input a product would overwrite, the same
exposure twice, order tables that do not fit the detector, headers whose mandatory keywords break FITS,
a corrupted tile of a .fits.fz, a zero BSCALE, a 0-s lamp-off frame. Each is a clear "[rule] FILE: why"
with exit 2, before any product is written (tests/test_inputs_esorex.py holds the plugin's side)."""
from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import input_cases as ic
from soxs_mflat.cli import main


def refused(sof, out, capsys, *extra) -> str:
    rc = main(["run", str(sof), "-o", str(out), "-q", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "internal error" not in err, err
    return err


def md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["order_tab_vis.fits", "master_flat_vis.fits", "linked.fits"])
def test_an_input_is_never_overwritten_by_a_product(inputs_vis, tmp_path, capsys, name):
    """An input in the output directory under a product's name (or hard-linked to one) was replaced by the
    product with --overwrite: now [product-is-input], with or without --overwrite, the input unchanged."""
    out = tmp_path / "out"
    out.mkdir()
    rows = ic.entries(inputs_vis)
    src = next(p for p, t in rows if t == ("ORDER_TAB_VIS" if name == "order_tab_vis.fits" else "LAMP,FLAT_VIS"))
    if name == "linked.fits":   # the input elsewhere, a hard link to it in a product's place
        mine = tmp_path / "mine.fits"
        shutil.copy(src, mine)
        (out / "order_tab_vis.fits").hardlink_to(mine)
        listed, product = mine, out / "order_tab_vis.fits"
    else:
        listed = product = out / name
        shutil.copy(src, product)
    sof = ic.write_sof(tmp_path, ic.replace(rows, src, listed))
    before = md5(product)
    for extra in ((), ("--overwrite",)):
        err = refused(sof, out, capsys, *extra)
        assert "[product-is-input]" in err and product.name in err and "would overwrite it" in err, err
        assert md5(product) == before
    assert sorted(p.name for p in out.iterdir()) == [product.name]


def test_the_same_exposure_twice_is_refused(inputs_vis, tmp_path, capsys):
    """A raw frame and a gzip copy of it were both stacked (DATANCOM one too many): the same exposure,
    told by ARCFILE (or DATE-OBS where a frame has none)."""
    rows = ic.entries(inputs_vis)
    raw = next(p for p, t in rows if t == "LAMP,FLAT_VIS")
    copy = tmp_path / "again.fits.gz"
    copy.write_bytes(gzip.compress(Path(raw).read_bytes()))
    err = refused(ic.write_sof(tmp_path, rows + [[str(copy), "LAMP,FLAT_VIS"]]), tmp_path / "out", capsys)
    arcfile = fits.getheader(raw)["ARCFILE"]
    assert f"[duplicate-input] {copy}: listed twice (the same exposure (ARCFILE {arcfile}) as {raw})" in err
    plain = ic.copy_with(tmp_path, raw, "noarc.fits", delete=("ARCFILE",), OBJECT="edited")   # bytes differ
    err = refused(ic.write_sof(tmp_path, rows + [[plain, "LAMP,FLAT_VIS"]]), tmp_path / "out", capsys)
    assert "the same exposure (DATE-OBS " in err and "noarc.fits" in err


def _table(inputs_vis, tmp_path, name, edit) -> Path:
    src = next(p for p, t in ic.entries(inputs_vis) if t == "ORDER_TAB_VIS")
    dst = tmp_path / name
    with fits.open(src) as hl:
        edit(hl)
        hl.writeto(dst)
    return dst


def _twice(hl):
    hl[2].data["order"][1] = hl[2].data["order"][0]


def _far(hl):
    hl[1].data["cent_00"][0] = 1e300


@pytest.mark.parametrize("edit,why", [(_twice, "is listed twice"), (_far, "is nowhere on the detector")])
def test_an_order_table_that_does_not_fit_is_refused_before_any_pixel(inputs_vis, tmp_path, capsys, monkeypatch, edit,
                                                                      why):
    """An order listed twice or a centre off the detector failed in the core, after every frame was read,
    as "master_flat: master_flat: ..." without the rule: now [order-table] naming the table, first."""
    from soxs_mflat import recipe
    monkeypatch.setattr(recipe, "detrend", lambda *a: pytest.fail("frames read before the table was checked"))
    bad = _table(inputs_vis, tmp_path, "ORDER_TAB_bad.fits", edit)
    rows = ic.replace(ic.entries(inputs_vis), next(p for p, t in ic.entries(inputs_vis) if t == "ORDER_TAB_VIS"), bad)
    err = refused(ic.write_sof(tmp_path, rows), tmp_path / "out", capsys)
    assert f"[order-table] {bad}: order table: order " in err and why in err and "master_flat" not in err, err


def _card_copy(folder, src, name, hdu, key, value) -> str:
    """A copy with one card rewritten in the file's bytes (astropy would refuse to write most of these)."""
    dst = folder / name
    shutil.copy(src, dst)
    with fits.open(src) as hl:
        start = hl[hdu].fileinfo()["hdrLoc"]
    raw = bytearray(dst.read_bytes())
    for i in range(start, len(raw), 80):
        if raw[i:i + 8].decode().rstrip() == key:
            raw[i:i + 80] = f"{key:8s}= {value:>20s}".ljust(80).encode()
            break
    else:
        raise AssertionError(f"{key} not in HDU {hdu}")
    dst.write_bytes(raw)
    return str(dst)


@pytest.mark.parametrize("kind,hdu,key,value,detail", [
    ("raw", 0, "SIMPLE", "F", "HDU 0: SIMPLE = False: the file says it does not conform to FITS"),
    ("raw", 0, "BITPIX", "'16'", "HDU 0: BITPIX = '16' is not one of 8, 16, 32, 64, -32, -64"),
    ("raw", 0, "NAXIS1", "'454'", "HDU 0: NAXIS1 = '454' is not an integer"),
    ("raw", 0, "NAXIS1", "99999999999", "header promises"),
    ("raw", 0, "NAXIS1", "400", "are not a FITS header: its NAXISn or BITPIX may not match the data"),
    ("bias", 1, "GCOUNT", "2", "HDU 1: an image extension needs PCOUNT = 0 and GCOUNT = 1 (has 0, 2)"),
    ("bias", 1, "XTENSION", "'BINTABLE'", "HDU 1: a BINTABLE extension needs BITPIX = 8, NAXIS = 2 and TFIELDS"),
    ("raw", 0, "BSCALE", "0", "BSCALE = 0: every pixel would read as BZERO"),
])
def test_broken_mandatory_keywords_are_named(inputs_vis, tmp_path, capsys, kind, hdu, key, value, detail):
    """Each was an internal error (a KeyError for a table without TFIELDS, only when the pixels were read),
    an error of astropy's own words (a TypeError, EINVAL from a seek), or, for BSCALE = 0, accepted as a
    constant image: now [unreadable-fits] with the FITS rule broken."""
    rows = ic.entries(inputs_vis)
    src = next(p for p, t in rows if t == ("MASTER_BIAS_VIS" if kind == "bias" else "LAMP,FLAT_VIS"))
    if key == "BSCALE":
        src = ic.copy_with(tmp_path, src, "scaled.fits", BSCALE=1.0)
    bad = _card_copy(tmp_path, src, f"bad_{key}.fits", hdu, key, value)
    err = refused(ic.write_sof(tmp_path, ic.replace(rows, src, bad) if key != "BSCALE" else
                               ic.replace(rows, next(p for p, t in rows if t == "LAMP,FLAT_VIS"), bad)),
                  tmp_path / "out", capsys)
    assert f"[unreadable-fits] {bad}: " in err and detail in err, err


def test_a_corrupted_tile_of_a_fits_fz_is_unreadable(inputs_vis, tmp_path, capsys):
    """A .fits.fz whose tile does not decompress was an internal error (CfitsioException)."""
    rows = ic.entries(inputs_vis)
    raw = next(p for p, t in rows if t == "LAMP,FLAT_VIS")
    with fits.open(raw) as hl:
        packed = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(hl[0].data, hl[0].header,
                                                                    compression_type="RICE_1")])
        fz = tmp_path / "tile.fits.fz"
        packed.writeto(fz)
    with fits.open(fz, disable_image_compression=True) as hl:
        start = hl[1].fileinfo()["datLoc"] + hl[1].header["NAXIS1"] * hl[1].header["NAXIS2"] + 2000   # the heap
    data = bytearray(fz.read_bytes())
    data[start:start + 400] = b"\x55" * 400
    fz.write_bytes(data)
    err = refused(ic.write_sof(tmp_path, ic.replace(rows, raw, fz)), tmp_path / "out", capsys)
    assert f"[unreadable-fits] {fz}: the image cannot be read" in err, err


def test_a_zero_second_lamp_off_frame_is_not_subtracted_unscaled(inputs_nir, tmp_path, capsys):
    """Lamp-off frames saying EXPTIME = 0 beside 10-s flats were subtracted as they are, without a word."""
    rows = ic.entries(inputs_nir)
    off = next(p for p, t in rows if "OFF" in t)
    zero = ic.copy_with(tmp_path, off, "off0.fits", EXPTIME=0.0)
    err = refused(ic.write_sof(tmp_path, ic.replace(rows, off, zero)), tmp_path / "out", capsys)
    assert f"[bad-keyword] {zero}: header keyword EXPTIME = 0 cannot be scaled to the flats'" in err, err


def test_a_raw_frame_without_its_arm_is_unknown_arm(inputs_vis, tmp_path, capsys):
    """A raw flat without ESO SEQ ARM was a tag-mismatch against the tag 'LAMP,FLAT_'."""
    rows = ic.entries(inputs_vis)
    raw = next(p for p, t in rows if t == "LAMP,FLAT_VIS")
    bad = ic.copy_with(tmp_path, raw, "noarm.fits", delete=("HIERARCH ESO SEQ ARM",))
    err = refused(ic.write_sof(tmp_path, ic.replace(rows, raw, bad)), tmp_path / "out", capsys)
    assert f"[unknown-arm] {bad}: unsupported instrument/arm SOXS/(no ESO SEQ ARM) (supported: " in err and "SOXS/VIS" in err, err


def test_a_sof_path_with_whitespace_is_named(inputs_vis, tmp_path, capsys):
    """A hand-written SOF line 'a/sp ace.fits TAG' was 'unknown frame group LAMP,FLAT_VIS'."""
    rows = ic.entries(inputs_vis)
    raw = next(p for p, t in rows if t == "LAMP,FLAT_VIS")
    spaced = tmp_path / "sp ace" / "f.fits"
    spaced.parent.mkdir()
    shutil.copy(raw, spaced)
    for extra in ([], ["RAW"]):
        sof = ic.write_sof(tmp_path, [[str(spaced), "LAMP,FLAT_VIS", *extra]] + rows[1:])
        err = refused(sof, tmp_path / "out", capsys)
        assert f"[sof-format] {sof}:1: the path '{spaced}' holds whitespace" in err, err


# pytest's filterwarnings = error is set per test, in front of frames.py's module-level filter for this warning
@pytest.mark.filterwarnings("ignore:Unexpected extra padding at the end of the file")
def test_long_zero_padding_and_unicode_spaces_are_accepted(inputs_vis, tmp_path, capsys):
    """Blank or NUL padding after the last HDU of any length is allowed (only the first 64 kB were looked
    at: 86 400 NULs were 'not a FITS header'); a no-break space is part of a SOF path, as esorex splits
    lines at blanks and tabs only (Python's split() cut the path there)."""
    rows = ic.entries(inputs_vis)
    raw = next(p for p, t in rows if t == "LAMP,FLAT_VIS")
    padded = tmp_path / "padded.fits"
    padded.write_bytes(Path(raw).read_bytes() + b"\0" * 86400)
    odd = tmp_path / "a\u00a0b" / "bias.fits"   # in a folder's name: the products record the file's name only
    odd.parent.mkdir()
    shutil.copy(next(p for p, t in rows if t == "MASTER_BIAS_VIS"), odd)
    rows = ic.replace(ic.replace(rows, raw, padded), next(p for p, t in rows if t == "MASTER_BIAS_VIS"), odd)
    assert main(["run", str(ic.write_sof(tmp_path, rows)), "-o", str(tmp_path / "out"), "-q"]) == 0, \
        capsys.readouterr().err


def test_a_file_name_a_fits_header_cannot_hold_is_refused_first(inputs_vis, tmp_path, capsys):
    """A non-ASCII file name failed after processing, when astropy refused it in PRO REC1 CALi NAME."""
    rows = ic.entries(inputs_vis)
    bias = next(p for p, t in rows if t == "MASTER_BIAS_VIS")
    odd = tmp_path / "bias_\u00e9t\u00e9.fits"
    shutil.copy(bias, odd)
    err = refused(ic.write_sof(tmp_path, ic.replace(rows, bias, odd)), tmp_path / "out", capsys)
    assert f"[file-name] {odd}: its name holds characters a FITS header cannot" in err, err
