"""Bad input sets, each breaking one rule of the input contract: a builder writes a SOF from a good
simulated set (dict from simulate_set) into a folder and says which rule must fire and which file
the message must name. Shared by the CLI tests and the CLI/esorex parity test."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits


def entries(w) -> list[list[str]]:
    return [ln.split() for ln in Path(w["sof"]).read_text().splitlines() if ln.strip()]


def write_sof(folder: Path, rows, name="bad.sof") -> Path:
    sof = folder / name
    sof.write_text("\n".join(" ".join(map(str, e)) for e in rows) + "\n")
    return sof


def copy_with(folder: Path, path, name=None, delete=(), **cards) -> str:
    """A copy of a FITS file with primary-header cards set (key: '_' for ' ') or deleted."""
    dst = folder / (name or Path(path).name)
    shutil.copy(path, dst)
    with fits.open(dst, mode="update") as hl:
        for k, v in cards.items():
            hl[0].header[k.replace("_", " ")] = v
        for k in delete:
            del hl[0].header[k]
    return str(dst)


def with_cards(folder: Path, path, name, *cards: str) -> str:
    """A copy of a FITS file with raw 80-character cards appended to its primary header, as written."""
    dst = folder / name
    with fits.open(path) as hl:
        for c in cards:
            hl[0].header.append(fits.Card.fromstring(c.ljust(80)))
        hl.writeto(dst, output_verify="ignore")
    return str(dst)


def with_data(folder: Path, path, fn, name) -> str:
    dst = folder / name
    with fits.open(path) as hl:
        hl[0].data = fn(hl[0].data)
        hl.writeto(dst)
    return str(dst)


def replace(rows, old, new):
    return [[new if e[0] == old else e[0], *e[1:]] for e in rows]


def _raw(w, k=0):
    return str(Path(w["raw"][k]).resolve())


def _one_card(w, folder, key, value, rule):
    bad = copy_with(folder, _raw(w, 1), f"{rule}.fits", **{key: value})
    rows = replace(entries(w), _raw(w, 1), bad)
    if rule == "mixed-arms":   # the tag follows the header so that the header rule is what fails
        rows = [[p, "LAMP,FLAT_NIR" if p == bad else t] for p, t in rows]
    return rows, rule, Path(bad).name


MIXED = [("HIERARCH_ESO_SEQ_ARM", "NIR", "mixed-arms"), ("INSTRUME", "XSHOOTER", "mixed-instruments"),
         ("HIERARCH_ESO_DET_BINX", 2, "mixed-binning"), ("HIERARCH_ESO_DET_READ_CURID", 3, "mixed-readout"),
         ("HIERARCH_ESO_DET_OUT1_CONAD", 2.5, "mixed-gain"), ("HIERARCH_ESO_DET_CHIP_RON", 9.9, "mixed-ron"),
         ("HIERARCH_ESO_INS_VISE_NAME", "SLIT5.0", "mixed-slit"), ("EXPTIME", 33.0, "mixed-exptime")]
BAD_VALUES = [("EXPTIME", "twenty"), ("MJD-OBS", "yesterday"), ("HIERARCH_ESO_DET_OUT1_CONAD", "high"),
              ("HIERARCH_ESO_DET_OUT1_CONAD", 0.0), ("HIERARCH_ESO_DET_OUT1_CONAD", 1e30),
              ("HIERARCH_ESO_DET_BINX", 0), ("EXPTIME", -3.0), ("EXPTIME", True)]


def vis_cases(w, folder: Path):
    """(id, rows, rule, file name the message must name) on a SOXS VIS set."""
    rows = entries(w)
    out = []
    for key, value, rule in MIXED:
        out.append((rule, *_one_card(w, folder, key, value, rule)))
    for i, (key, value) in enumerate(BAD_VALUES):
        bad = copy_with(folder, _raw(w, 1), f"badval{i}.fits", **{key: value})
        out.append((f"bad-keyword-{key}-{value}", replace(rows, _raw(w, 1), bad), "bad-keyword", Path(bad).name))
    bad = copy_with(folder, _raw(w, 0), "noexp.fits", delete=["EXPTIME"])
    out.append(("missing-exptime", replace(rows, _raw(w, 0), bad), "bad-keyword", "noexp.fits"))
    for drop, rule, name in (("MASTER_BIAS_VIS", "missing-bias", "SOXS_VIS_FLAT_QTH_01.fits"),
                             ("ORDER_TAB_VIS", "missing-order-table", "MASTER_BIAS_VIS.fits"),
                             ("LAMP,FLAT_VIS", "no-flats", "MASTER_BIAS_VIS.fits")):
        out.append((rule, [e for e in rows if e[1] != drop], rule, name))
    out.append(("tag-mismatch", [[p, "ORDER_TAB_VIS" if t == "MASTER_BIAS_VIS" else t] for p, t in rows],
                "tag-mismatch", "MASTER_BIAS_VIS.fits"))
    # esorex segfaulted on VIS flats tagged LAMP,DFLAT_VIS
    out.append(("dflat-tag", [[p, "LAMP,DFLAT_VIS" if t == "LAMP,FLAT_VIS" else t] for p, t in rows],
                "tag-mismatch", "SOXS_VIS_FLAT_QTH_01.fits"))
    dflat = copy_with(folder, _raw(w, 1), "dflat.fits", HIERARCH_ESO_DPR_TYPE="LAMP,DFLAT")
    out.append(("flat-type", [[dflat, "LAMP,DFLAT_VIS"] if p == _raw(w, 1) else [p, t] for p, t in rows],
                "flat-type", "dflat.fits"))
    odd = copy_with(folder, _raw(w, 0), "odd.fits", HIERARCH_ESO_DPR_TYPE="OBJECT")
    out.append(("unknown-frame", rows + [[odd, "OBJECT_VIS"]], "unknown-frame", "odd.fits"))
    out.append(("missing-file", rows + [[str(folder / "nope.fits"), "LAMP,FLAT_VIS"]], "missing-file", "nope.fits"))
    cut = folder / "cut.fits"
    cut.write_bytes(Path(_raw(w, 0)).read_bytes()[:20000])
    out.append(("truncated", rows + [[str(cut), "LAMP,FLAT_VIS"]], "unreadable-fits", "cut.fits"))
    import gzip
    import ncompress
    for suffix, squeeze in ((".gz", gzip.compress), (".Z", ncompress.compress)):   # esorex: "processing failed"
        packed = squeeze(Path(_raw(w, 0)).read_bytes())
        cutz = folder / f"cut.fits{suffix}"
        cutz.write_bytes(packed[:len(packed) // 2])
        out.append((f"truncated{suffix}", replace(rows, _raw(w, 0), str(cutz)), "unreadable-fits", cutz.name))
    for key in ("BSCALE", "BZERO"):   # found by the fuzz test: astropy scaled the pixels by a string
        scaled = copy_with(folder, _raw(w, 0), f"{key.lower()}.fits", **{key: "NaN"})
        out.append((f"{key.lower()}-not-a-number", replace(rows, _raw(w, 0), scaled), "unreadable-fits",
                    f"{key.lower()}.fits"))
    # keywords CPL cannot write (the plugin failed after the processing) or given twice with different values
    # (both front ends used the first and wrote the last into the products)
    for cid, cards in (("keyword-dot", ["HIERARCH ESO DET CHIP1 ID.1 = 'A'"]),
                       ("keyword-plus", ["HIERARCH ESO INS LAMP+1 = T"]),
                       ("keyword-twice", ["HIERARCH ESO DET OUT1 CONAD = 3.0 / a second gain"])):
        bad = with_cards(folder, _raw(w, 1), f"{cid}.fits", *cards)
        out.append((cid, replace(rows, _raw(w, 1), bad), "header-keyword", f"{cid}.fits"))
    # reals beyond a double: CFITSIO refused the header ("Bad file format"), astropy read 5e-324, 0 or inf
    for cid, card in (("subnormal", "HIERARCH ESO INS NUM SUBN = 4.9E-324"),
                      ("underflow", "HIERARCH ESO INS NUM TINY = 1.0D-400"),
                      ("overflow", "HIERARCH ESO INS NUM BIG = 1.5E+400"),
                      ("below-dbl-min", "HIERARCH ESO INS NUM EDGE = 2.2250738585072012E-308")):   # -> DBL_MIN
        bad = with_cards(folder, _raw(w, 1), f"{cid}.fits", card)
        out.append((cid, replace(rows, _raw(w, 1), bad), "unreadable-fits", f"{cid}.fits"))
    other_arm = copy_with(folder, _raw(w, 0), "nir.fits", delete=("ARCFILE",), HIERARCH_ESO_SEQ_ARM="NIR")
    out.append(("same-date-other-arm", rows + [[other_arm, "LAMP,FLAT_NIR"]], "mixed-arms", "nir.fits"))   # arms
    import gzip as _gz   # expose together: not the same exposure (the plugin said duplicate-input)
    raw_bytes = Path(_raw(w, 0)).read_bytes()
    two = folder / "two.fits.gz"   # two gzip members: CFITSIO reads the first only (the CLI read both)
    two.write_bytes(_gz.compress(raw_bytes[:28800]) + _gz.compress(raw_bytes[28800:]))
    out.append(("gzip-two-members", replace(rows, _raw(w, 0), str(two)), "unreadable-fits", "two.fits.gz"))
    huge = folder / "huge.fits"   # a 20-digit NAXIS1: 'negative' in the plugin, a count in Python
    data = bytearray(raw_bytes)
    at = data.index(b"NAXIS1  =")
    data[at:at + 80] = f"{'NAXIS1':8s}= {'99999999999999999999':>20s}".ljust(80).encode()
    huge.write_bytes(bytes(data))
    out.append(("naxis-20-digits", replace(rows, _raw(w, 0), str(huge)), "unreadable-fits", "huge.fits"))
    open_string = folder / "q80.fits"   # a string card whose last two characters are '' (a quote inside it):
    data = bytearray(raw_bytes)           # unterminated (the plugin took it as closed)
    at = data.index(b"ARCFILE =")
    data[at:at + 80] = ("ARCFILE = '" + "x" * 67 + "''").encode()
    open_string.write_bytes(bytes(data))
    out.append(("unterminated-string", replace(rows, _raw(w, 0), str(open_string)), "unreadable-fits", "q80.fits"))
    accented_card = folder / "latin1.fits"   # a Latin-1 byte in a header value: astropy read it as '?', CFITSIO
    data = bytearray(raw_bytes)               # dropped it (the products' ARCFILE differed); FITS: ASCII only
    at = data.index(b"ARCFILE =")
    data[at:at + 80] = ("ARCFILE = 'SOXS.caf\u00e9'").encode("latin-1").ljust(80)
    accented_card.write_bytes(bytes(data))
    out.append(("non-ascii-card", replace(rows, _raw(w, 0), str(accented_card)), "unreadable-fits", "latin1.fits"))
    blank_record = folder / "blanks.fits"   # a whole record of blanks after the last HDU: astropy reads it as a
    blank_record.write_bytes(raw_bytes + b" " * 2880)   # header (the CLI said 'no END card', the plugin read on)
    out.append(("blank-record", replace(rows, _raw(w, 0), str(blank_record)), "unreadable-fits", "blanks.fits"))
    accented = folder / "flat_\u00e9.fits"   # recorded in the products' PRO REC1 RAWi NAME: ASCII only
    accented.write_bytes(raw_bytes)
    out.append(("file-name", replace(rows, _raw(w, 0), str(accented)), "file-name", accented.name))
    zero = copy_with(folder, _raw(w, 0), "bscale0.fits", BSCALE=0)   # a constant image (both accepted it)
    out.append(("bscale-zero", replace(rows, _raw(w, 0), zero), "unreadable-fits", "bscale0.fits"))
    noarm = copy_with(folder, _raw(w, 0), "noarm.fits", delete=("HIERARCH ESO SEQ ARM",))   # was tag-mismatch
    out.append(("no-arm", replace(rows, _raw(w, 0), noarm), "unknown-arm", "noarm.fits"))
    junk = folder / "junk.fits"
    junk.write_bytes(b"this is not FITS" * 200)
    out.append(("garbage", rows + [[str(junk), "LAMP,FLAT_VIS"]], "unreadable-fits", "junk.fits"))
    out.append(("duplicate-path", rows + [rows[0]], "duplicate-input", Path(rows[0][0]).name))
    twin = folder / "twin.fits"
    shutil.copy(_raw(w, 0), twin)
    out.append(("duplicate-bytes", rows + [[str(twin), "LAMP,FLAT_VIS"]], "duplicate-input", "twin.fits"))
    out += _data_cases(w, folder, rows)
    out += _table_cases(w, folder, rows)
    return out


def table_copy(src, dst: Path, kind: str) -> str:
    """A copy of an order-centre table broken one way (rule order-table in both front ends)."""
    from soxs_mflat.contract import section
    with fits.open(src) as hl:
        poly, meta = hl[1], hl[2]
        if kind == "too-many-orders":   # one more than the contract accepts
            n = int(section("inputs")["order_table"]["max_orders"]) + 1
            rows = np.resize(meta.data, n)
            rows["order"] = np.arange(1, n + 1)
            hl[2] = fits.BinTableHDU(rows, header=meta.header)
        elif kind == "missing-column":
            cols = [c for c in poly.columns if c.name != "cent_00"]
            hl[1] = fits.BinTableHDU.from_columns(cols)
        elif kind == "degree":
            poly.data["degorder_cent"] = 12
        elif kind == "nan-coefficient":
            poly.data["cent_01"] = np.nan
        elif kind == "inverted-range":
            b = "y" if "degy_cent" in poly.columns.names else "x"
            meta.data[f"{b}min"][1], meta.data[f"{b}max"][1] = meta.data[f"{b}max"][1], meta.data[f"{b}min"][1]
        hl.writeto(dst)
    return str(dst)


TABLE_CASES = ("too-many-orders", "missing-column", "degree", "nan-coefficient", "inverted-range")


def _table_cases(w, folder, rows):
    table = next(e[0] for e in rows if e[1].startswith("ORDER_TAB"))
    out = []
    for kind in TABLE_CASES:
        bad = table_copy(table, folder / f"order_tab_{kind}.fits", kind)
        out.append((f"order-table-{kind}", replace(rows, table, bad), "order-table", Path(bad).name))
    return out


def _data_cases(w, folder, rows):
    out = []
    raw = _raw(w, 0)
    sat = with_data(folder, raw, lambda d: np.full_like(d, 65535), "sat.fits")
    out.append(("saturated", replace(rows, raw, sat), "saturated", "sat.fits"))
    empty = with_data(folder, raw, lambda d: np.full_like(d, 1000), "empty.fits")
    out.append(("empty-flat", replace(rows, raw, empty), "empty-flat", "empty.fits"))
    crop = with_data(folder, raw, lambda d: d[:1000], "crop.fits")
    out.append(("shape-crop", replace(rows, raw, crop), "mixed-shape", "crop.fits"))
    wide = with_data(folder, raw, lambda d: np.hstack([d, d[:, :8]]), "wide.fits")
    out.append(("shape-extra-columns", replace(rows, raw, wide), "mixed-shape", "wide.fits"))
    cube = with_data(folder, raw, lambda d: np.stack([d, d]), "cube.fits")
    out.append(("shape-3d", replace(rows, raw, cube), "shape", "cube.fits"))
    bias = str(Path(w["bias"]).resolve())
    small = folder / "MASTER_BIAS_VIS.fits"
    with fits.open(bias) as hl:
        for h in hl:
            h.data = h.data[:100]
        hl.writeto(small)
    out.append(("shape-bias", replace(rows, bias, str(small)), "shape", "MASTER_BIAS_VIS.fits"))
    # NaN/inf pixels: a float raw frame, a master bias's FLUX and ERRS (non-finite, as raw frames)
    def one_inf(d):
        d = d.astype(np.float32)
        d[d.shape[0] // 2, 7] = np.inf
        return d
    out.append(("non-finite-float-raw", replace(rows, raw, with_data(folder, raw, one_inf, "inf.fits")), "non-finite",
                "inf.fits"))
    for ext, value in (("FLUX", np.nan), ("ERRS", -np.inf)):
        bad = folder / f"nan_bias_{ext.lower()}.fits"
        with fits.open(bias) as hl:
            hl[ext].data = hl[ext].data.astype(np.float32)
            hl[ext].data[10:12, 20] = value
            hl.writeto(bad)
        out.append((f"non-finite-bias-{ext}", replace(rows, bias, str(bad)), "non-finite", bad.name))
    return out


def nir_cases(w, folder: Path):
    rows = entries(w)
    out = [("missing-dark", [e for e in rows if "OFF" not in e[1]], "missing-dark", Path(rows[0][0]).name)]
    raw = _raw(w, 0)
    nan = with_data(folder, raw, lambda d: np.where(np.arange(d.size).reshape(d.shape) % 997 == 0, np.nan, d)
                    .astype(d.dtype), "nan.fits")
    out.append(("non-finite", replace(rows, raw, nan), "non-finite", "nan.fits"))
    off = next(e[0] for e in rows if "OFF" in e[1])   # 0 s beside 10-s flats: was subtracted unscaled
    zero = copy_with(folder, off, "off0.fits", EXPTIME=0.0)
    out.append(("zero-s-lamp-off", replace(rows, off, zero), "bad-keyword", "off0.fits"))
    return out


def uvb_cases(w, folder: Path):
    rows = entries(w)
    d_tab = [e for e in rows if e[1] == "ORDER_TAB_UVB" and fits.getval(e[0], "OBJECT") == "LAMP,DORDERDEF"]
    qonly = [e for e in rows if e not in d_tab]
    return [("uvb-lamps", [e for e in rows if e[1] != "LAMP,DFLAT_UVB"], "uvb-lamps", Path(w["raw"][-1]).name),
            ("uvb-order-tables", qonly, "uvb-order-tables",
             next(Path(e[0]).name for e in qonly if e[1] == "ORDER_TAB_UVB"))]
