"""DFS-compliant products: inherited keywords, PRO keys, provenance, QC cards, DATAMD5, checksums,
and atomic writes that never overwrite an existing product without permission."""
from __future__ import annotations

import hashlib
import io
import os
import threading
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from astropy.io import fits

from . import __version__
from .contract import section
from .errors import InputError
from .frames import Frame, decompress, expected_tag, is_compressed
from .qc import QCRow

PIPE_ID = f"soxs-mflat/{__version__}"
RECIPE = "soxs_mflat"
INHERIT = tuple(section("products")["inherit"]["keys"])   # + ESO keys but ESO_EXCEPT (data/contract/products.yaml)
ESO_EXCEPT = tuple(section("products")["inherit"]["eso_except"])


def base_header(ref: Frame, raws: Iterable[Frame], cals: Iterable[Frame], params: dict[str, Any]) -> fits.Header:
    """What every product of one run shares: inherited keys, PRO keys (CATG/TECH filled in per product
    by product_header), provenance and parameters. Built once per run: astropy cards are slow to make."""
    h = fits.Header()
    for k in INHERIT:   # with their comments, as cpl_dfs copies them
        if k in ref.header:
            h[k] = (ref.header[k], ref.header.comments[k])
    for card in ref.header.cards:
        key = card.keyword
        if key.startswith("ESO ") and not key.startswith(ESO_EXCEPT):
            h[f"HIERARCH {key}"] = (card.value, card.comment)
    anc = section("products")["ancestor"]   # as cpl_dfs: the first raw's ARCFILE, kept and copied
    if anc["from"] in ref.header:
        h[anc["from"]] = (ref.header[anc["from"]], ref.header.comments[anc["from"]])
        h[f"HIERARCH {anc['key']}"] = ref.header[anc["from"]]
    h["DATE"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    pro = {"DID": "PRO-1.16", "CATG": "", "TYPE": "", "TECH": "", "SCIENCE": False,
           "REC1 ID": RECIPE, "REC1 DRS ID": f"soxs-mflat-core/{__version__}", "REC1 PIPE ID": PIPE_ID}
    for k, v in pro.items():
        h[f"HIERARCH ESO PRO {k}"] = v
    raws = list(raws)
    h["HIERARCH ESO PRO DATANCOM"] = len(raws)
    for i, f in enumerate(raws, 1):
        h[f"HIERARCH ESO PRO REC1 RAW{i} NAME"] = f.name
        h[f"HIERARCH ESO PRO REC1 RAW{i} CATG"] = f.tag or expected_tag(f)
    for i, f in enumerate(cals, 1):
        h[f"HIERARCH ESO PRO REC1 CAL{i} NAME"] = f.name
        h[f"HIERARCH ESO PRO REC1 CAL{i} CATG"] = f.tag or expected_tag(f)
        h[f"HIERARCH ESO PRO REC1 CAL{i} DATAMD5"] = str(f.header.get("DATAMD5") or input_datamd5(f.path, f.content))
    for i, (k, v) in enumerate(params.items(), 1):
        h[f"HIERARCH ESO PRO REC1 PARAM{i} NAME"] = k.replace("_", "-")  # the CLI alias, as esorex writes it
        h[f"HIERARCH ESO PRO REC1 PARAM{i} VALUE"] = _param_str(v)
    if _format_cards(h):   # a value on CONTINUE cards (fitsverify warns without it)
        h["LONGSTRN"] = ("OGIP 1.0", "The OGIP long string convention may be used.")
    return h


def _format_cards(h: fits.Header) -> bool:
    """Make every card's image once, here, instead of warning when each product is written: comments that no
    longer fit beside their value are cut (astropy may write a number with more characters than the raw card
    had, or HIERARCH adds its 9), as CFITSIO cuts them for the plugin. True when a value needs CONTINUE cards."""
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Card is too long, comment will be truncated", fits.verify.VerifyWarning)
        return any([len(card.image) > 80 for card in h.cards])   # a list: every card formatted, not the first few


def _param_str(v: Any) -> str:
    """As cpl_dfs writes parameter values: true/false, %d, %g."""
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:g}" if isinstance(v, float) else str(v)


def product_header(base: fits.Header, catg: str, ptype: str, tech: str, qc: Iterable[QCRow] = ()) -> fits.Header:
    h = base.copy()
    h["HIERARCH ESO PRO CATG"], h["HIERARCH ESO PRO TYPE"], h["HIERARCH ESO PRO TECH"] = catg, ptype, tech
    for r in qc:
        key = f"HIERARCH ESO QC {r.name}"
        room = 80 - len(key) - 3 - 20 - 3  # "= ", value field, " / "
        h[key] = (r.value, r.comment[:max(room, 0)])
    return h


def data_product_cards(keys: dict, classified: bool = True) -> list[tuple[str, Any, str]]:
    """(key, value, comment) of the contract's ESO data-product keys: the DICD class keys (HDUCLASS,
    HDUDOC, HDUVERS, HDUCLAS1) when ``classified``, then ``keys``."""
    c = section("products")
    items = {**(c["hdu_class"] if classified else {}), **keys}
    return [(k, v, c["comments"].get(f"{k} {v}", c["comments"].get(k, ""))) for k, v in items.items()]


def master_flat_hdus(arrays: dict, primary: fits.Header) -> fits.HDUList:
    """The master flat's HDUs in the contract's order (FLUX primary, then QUAL, ERRS), each with its
    EXTNAME and DICD keys (HDUCLAS2/3, SCIDATA/ERRDATA/QUALDATA links, BUNIT, UTYPE)."""
    hdus = []
    for spec in section("products")["master_flat_hdus"]:
        name = spec["extname"]
        hdu = fits.PrimaryHDU(arrays[name], primary) if not hdus else fits.ImageHDU(arrays[name])
        hdu.header["EXTNAME"] = name
        for k, v, comment in data_product_cards(spec["keys"]):
            hdu.header[k] = (v, comment)
        if "comment" in spec:   # what the values mean (QUAL's bits)
            hdu.header["COMMENT"] = spec["comment"]
        hdus.append(hdu)
    return fits.HDUList(hdus)


_MD5: dict[tuple, Future] = {}      # (path, mtime, size) -> DATAMD5, computed once per file version
_MD5_LOCK = threading.Lock()


def input_datamd5(path: Path, content: bytes | None = None) -> str:
    """DATAMD5 of a calibration input, computed once per file version (a second caller waits for the
    first: see prefetch_datamd5); ``content``: the decompressed bytes of a compressed file (Frame.content),
    whose FITS data units are those of the decompressed stream."""
    st = Path(path).stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _MD5_LOCK:
        job, mine = _MD5.get(key), False
        if job is None:
            if len(_MD5) >= 64:
                _MD5.clear()
            job, mine = _MD5.setdefault(key, Future()), True
    if mine:
        try:
            if content is None and is_compressed(Path(path)):
                content = decompress(Path(path))
            job.set_result(file_datamd5(Path(path), content))
        except BaseException as exc:
            with _MD5_LOCK:
                _MD5.pop(key, None)
            job.set_exception(exc)
    return job.result()


def prefetch_datamd5(frames: Iterable[Frame]) -> None:
    """Start computing, in a thread, the DATAMD5 of inputs whose header has none (simulated calibrations:
    ~45 MB to hash on SOXS VIS), while the frames are detrended; the products' header then finds it."""
    todo = [f for f in frames if f is not None and not f.header.get("DATAMD5")]

    def run():
        for f in todo:
            try:
                input_datamd5(f.path, f.content)
            except Exception:   # noqa: BLE001 - the product writer meets the error again and reports it
                pass
    if todo:
        threading.Thread(target=run, name="soxs-mflat-datamd5", daemon=True).start()


def file_datamd5(path: Path, content: bytes | None = None) -> str:
    """MD5 over the data units (with padding) of every HDU: header edits do not change it. ``content``: the
    file's bytes (a compressed file's decompressed stream) instead of reading ``path``."""
    md5 = hashlib.md5()
    src = (lambda: io.BytesIO(content)) if content is not None else (lambda: open(path, "rb"))
    buf = memoryview(bytearray(1 << 20))   # read through one buffer: no new memory per data unit (30 MB)
    with fits.open(src(), memmap=False) as hl, src() as fh:
        spans = [(h.fileinfo()["datLoc"], h.fileinfo()["datSpan"]) for h in hl]
        for loc, span in spans:
            fh.seek(loc)
            while span > 0 and (n := fh.readinto(buf[:min(span, len(buf))])):
                md5.update(buf[:n])
                span -= n
    return md5.hexdigest()


def _memory_datamd5(hl: fits.HDUList) -> str | None:
    """DATAMD5 computed from memory (the data units as written: big-endian, zero padding to 2880 bytes)
    for images and for binary tables of plain numeric columns without a heap (the order tables); None
    otherwise (scaled images, strings, booleans, unsigned or variable-length columns), whose bytes are
    hashed from the file instead."""
    md5 = hashlib.md5()
    for h in hl:
        if h.data is None:
            continue
        if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU)):
            # written as they are in memory: no BZERO/BSCALE, and no unsigned type wider than a byte
            scaled = h.header.get("BZERO", 0) != 0 or h.header.get("BSCALE", 1) != 1
            if scaled or not (h.data.dtype.kind in "fi" or h.data.dtype == np.uint8):
                return None
            buf = np.ascontiguousarray(h.data, dtype=h.data.dtype.newbyteorder(">")).data
        elif isinstance(h, fits.BinTableHDU) and _plain_table(h):
            rec = np.asarray(h.data).view(np.ndarray)
            buf = rec.astype(rec.dtype.newbyteorder(">")).tobytes()
        else:
            return None
        md5.update(buf)
        md5.update(bytes(-len(memoryview(buf).cast("B")) % 2880))
    return md5.hexdigest()


def _plain_table(h: fits.BinTableHDU) -> bool:
    """Columns that astropy writes as their big-endian bytes: signed integers and floats, no scaling, no
    heap (TSCALn/TZEROn, strings, logicals, unsigned and array-descriptor columns are converted)."""
    cols = h.columns
    dt = np.asarray(h.data).dtype
    if h.data._heapsize or any(c.bscale not in (None, 1) or c.bzero not in (None, 0) for c in cols):
        return False
    return all(dt[n].kind in "if" and dt[n].shape == () for n in dt.names)


def _temp_beside(path: Path) -> Path:
    """A temporary name in the target's directory; created by open(), so the umask applies (mkstemp's
    files are 0600)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_fits(hl: fits.HDUList, path: Path, overwrite: bool) -> Path:
    """Atomic write: temp file in the target directory, DATAMD5 + CHECKSUM/DATASUM, then rename."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists (use --overwrite to replace it)")
    hl[0].header["PIPEFILE"] = path.name
    tmp = _temp_beside(path)
    try:
        md5 = _memory_datamd5(hl)
        if md5 is None:   # write once to learn the bytes
            hl.writeto(tmp, overwrite=True)
            md5 = file_datamd5(Path(tmp))
        hl[0].header["DATAMD5"] = md5
        hl.writeto(tmp, overwrite=True, checksum=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def product_catgs() -> set[str]:
    """Every ESO PRO CATG this recipe writes: products.yaml's catg + "_<ARM>", for each arm of the contract."""
    arms = {arm for per in section("inputs")["arms"].values() for arm in per}
    return {f"{d['catg']}_{arm}" for d in section("products")["products"].values() if "catg" in d for arm in arms}


def check_product(path: str | Path) -> None:
    """Refuse (InputError saying why; the caller names the file, as fix-datamd5 does) anything but a FITS product of this recipe: a primary
    header with ESO PRO CATG one of product_catgs() and ESO PRO REC1 ID soxs_mflat (both front ends write
    them). A raw frame, a calibration made by another recipe (an input ORDER_TAB of soxspipe has the same
    PRO CATG as ours) or a non-FITS file is never rewritten."""
    path = Path(path)
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hl:
            header = hl[0].header
            catg = header.get("HIERARCH ESO PRO CATG")
            rec = header.get("HIERARCH ESO PRO REC1 ID")
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror or exc}") from None
    except Exception as exc:   # noqa: BLE001 - astropy raises many types for files that are not FITS
        raise InputError(f"not a readable FITS file ({exc})") from None
    if catg is None:
        raise InputError("not a product (no ESO PRO CATG): fix-datamd5 rewrites only soxs-mflat "
                         "products, never raw frames")
    if not isinstance(catg, str) or catg.strip() not in product_catgs():
        raise InputError(f"ESO PRO CATG {catg!r} is not a soxs-mflat product's (one of "
                         f"{', '.join(sorted(product_catgs()))}): fix-datamd5 rewrites only soxs-mflat products")
    if rec != RECIPE:
        raise InputError(f"ESO PRO REC1 ID {rec!r}, not {RECIPE!r}: a product of another recipe; "
                         "fix-datamd5 rewrites only soxs-mflat products")


def rewrite_with_datamd5(path: str | Path) -> tuple[str, str]:
    """Recompute a soxs-mflat product's DATAMD5 and its checksums, atomically (the data units are not
    changed). Anything else is refused before it is touched (check_product). Returns the old and the
    new DATAMD5."""
    path = Path(path)
    check_product(path)
    with fits.open(path, memmap=False) as hl:
        for h in hl:            # read everything before the file is replaced
            _ = h.data
        old = str(hl[0].header.get("DATAMD5", ""))
        write_fits(hl, path, overwrite=True)
    new = str(fits.getval(path, "DATAMD5"))
    if new != file_datamd5(path):
        raise InputError("the rewritten data units do not match the computed DATAMD5")
    return old, new


def write_atomic_bytes(data: bytes, path: Path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists (use --overwrite to replace it)")
    tmp = _temp_beside(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
