"""Order tables in soxspipe's format: read the order-centre table, write the table with edges.
Tables are plain numpy structured arrays: astropy.table is slow to build small tables from."""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
from astropy.io import fits

from .contract import section
from .core import OrderLayout
from .frames import Frame
from .rules import rule_error


@dataclass
class CentreTable:
    centre: np.ndarray        # c[i, j], unbinned
    layout_orders: list[int]
    b_min: list[float]
    b_max: list[float]
    a_is_x: bool
    coeffs: np.ndarray        # the input HDU1 row (structured; kept in the output)
    meta: np.ndarray          # the input HDU2 (structured)

    def layout(self, bin_a: int, bin_b: int) -> OrderLayout:
        return OrderLayout(self.layout_orders, self.b_min, self.b_max, self.a_is_x, bin_a, bin_b)

    @property
    def axis_b(self) -> str:
        return "y" if self.a_is_x else "x"


def _coeffs(row, prefix: str, dn: int, db: int, sep: str = "") -> np.ndarray:
    return np.array([[float(_get(row, f"{prefix}{sep}{i}{j}")) for j in range(db + 1)] for i in range(dn + 1)])


def _get(rec, name: str):
    """A column of a table (or field of a row); KeyError when absent (numpy raises ValueError)."""
    if name not in (rec.dtype.names or ()):
        raise KeyError(name)
    return rec[name]


# TFORMn of one plain number per cell, and the big-endian type astropy reads it as
PLAIN_TFORM = re.compile(r"1?([BIJKED])")
PLAIN_TYPES = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


def plain_records(hdu, read: Callable[[int, int], bytes]) -> np.ndarray | None:
    """The rows of a binary table HDU whose every column is one plain number (integers and floats, no
    TSCALn/TZEROn/TNULLn/TDIMn, no heap, unique names), straight from its data unit (``read(offset,
    size)``: the file's bytes there): what
    ``np.array(hdu.data)`` gives, without astropy building a Column per column (~0.2 ms each: soxspipe's
    order table has 57). None for any other table, which astropy then reads (and refuses)."""
    h = hdu.header
    if not isinstance(hdu, fits.BinTableHDU) or h.get("PCOUNT", 0) != 0 or "THEAP" in h:
        return None
    n, width, rows = h.get("TFIELDS"), h.get("NAXIS1"), h.get("NAXIS2")
    if not all(type(v) is int and 0 <= v < 1 << 31 for v in (n, width, rows)) or n == 0:
        return None
    fields = []
    for i in range(1, n + 1):
        m = PLAIN_TFORM.fullmatch(str(h.get(f"TFORM{i}", "")).strip())
        name = h.get(f"TTYPE{i}")
        if m is None or not isinstance(name, str) or not name.strip() or \
                any(f"{k}{i}" in h for k in ("TSCAL", "TZERO", "TNULL", "TDIM")):
            return None
        fields.append((name.strip(), PLAIN_TYPES[m.group(1)]))
    if len({f.lower() for f, _ in fields}) != n:
        return None
    dt = np.dtype(fields)
    loc = hdu.fileinfo()["datLoc"]
    if dt.itemsize != width or loc is None:
        return None
    raw = read(loc, width * rows)
    return np.frombuffer(raw, dt, rows).copy() if len(raw) == width * rows else None


def _read_tables(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """The coefficient and meta tables (extensions 1 and 2) as structured arrays."""
    content = frame.content   # a compressed file's bytes (kept: its DATAMD5 hashes them)
    with fits.open(frame.source(keep=True), memmap=False) as hl, \
            (open(frame.path, "rb") if content is None else contextlib.nullcontext()) as fh:
        def read(offset: int, size: int) -> bytes:
            if content is not None:
                return content[offset:offset + size]
            if offset + size > os.fstat(fh.fileno()).st_size:   # a header promising more than the file
                return b""                                      # holds: astropy's to refuse, nothing allocated
            fh.seek(offset)
            return fh.read(size)
        tabs = [plain_records(hl[k], read) for k in (1, 2)]
        return tuple(np.array(hl[k].data) if t is None else t for k, t in zip((1, 2), tabs))


def read_centre_table(frame: Frame) -> CentreTable:
    try:
        coeffs, meta = _read_tables(frame)
        if coeffs.dtype.names is None or meta.dtype.names is None:
            raise TypeError("extensions 1 and 2 are not tables")
    except (IndexError, TypeError, ValueError, KeyError, OSError, AssertionError, fits.VerifyError) as exc:
        # astropy's errors for broken tables (bad TFORMn / TTYPEn cards raise VerifyError / AssertionError)
        raise rule_error("order-table", file=frame.path, detail=f"not an order table (need coefficient and meta "
                         f"table extensions: {exc})") from None
    a_is_x = "degy_cent" in coeffs.dtype.names
    axis_b = "y" if a_is_x else "x"
    try:
        if len(coeffs) != 1 or len(meta) == 0:
            raise ValueError(f"need one coefficient row and at least one order (has {len(coeffs)} coefficient "
                             f"rows, {len(meta)} orders)")
        if len(meta) > MAX_ORDERS:
            raise ValueError(f"the meta table lists {len(meta)} orders; at most {MAX_ORDERS} are accepted")
        row = coeffs[0]
        dn, db = _degree(row, "degorder_cent"), _degree(row, f"deg{axis_b}_cent")
        centre = _coeffs(row, "cent_", dn, db)
        orders = [_whole(o, "order") for o in _get(meta, "order")]
        bmin = _finite(_get(meta, f"{axis_b}min"), f"{axis_b}min")
        bmax = _finite(_get(meta, f"{axis_b}max"), f"{axis_b}max")
        if not np.isfinite(centre).all():
            raise ValueError("a centre coefficient is not finite")
        if any(lo >= hi for lo, hi in zip(bmin, bmax)):
            raise ValueError(f"an order has {axis_b}min >= {axis_b}max")
    except KeyError as exc:
        raise rule_error("order-table", file=frame.path, detail=f"order table lacks column {exc}") from None
    except (ValueError, TypeError) as exc:
        raise rule_error("order-table", file=frame.path, detail=f"bad order table: {exc}") from None
    return CentreTable(centre, orders, bmin, bmax, a_is_x, coeffs, meta)


# limits of the input contract (data/contract/inputs.yaml, order_table; the plugin's are generated from it)
MAX_ORDERS = int(section("inputs")["order_table"]["max_orders"])
MAX_DEGREE = int(section("inputs")["order_table"]["max_degree"])   # cent_<i><j>: one digit per degree


def _whole(v, what: str) -> int:
    f = float(v)    # a string order number raises ValueError here
    if not np.isfinite(f) or f != int(f):
        raise ValueError(f"{what} {v!r} is not a whole number")
    return int(f)


def _degree(row, col: str) -> int:
    d = _whole(_get(row, col), col)
    if not 0 <= d <= MAX_DEGREE:
        raise ValueError(f"{col} = {d} is outside [0, {MAX_DEGREE}]")
    return d


def _finite(col, what: str) -> list[float]:
    vals = [float(v) for v in col]
    if not all(np.isfinite(vals)):
        raise ValueError(f"{what} is not finite")
    return vals


def edge_columns(lower: np.ndarray, upper: np.ndarray, axis_b: str) -> dict:
    """soxspipe's edge columns: degrees then edgelow_c<i><j> / edgeup_c<i><j>, alphabetical."""
    dn, db = lower.shape[0] - 1, lower.shape[1] - 1
    cols = {"degorder_edgelow": dn, "degorder_edgeup": dn, f"deg{axis_b}_edgelow": db, f"deg{axis_b}_edgeup": db}
    for name, c in (("edgelow", lower), ("edgeup", upper)):
        cols.update({f"{name}_c{i}{j}": float(c[i, j]) for i in range(dn + 1) for j in range(db + 1)})
    return dict(sorted(cols.items()))


def read_edges(path) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edge polynomials from an order table written by this recipe (or soxspipe)."""
    with fits.open(path, memmap=False) as hl:
        row = np.array(hl[1].data)[0]
    axis_b = "y" if "degy_cent" in row.dtype.names else "x"
    out = []
    for name in ("edgelow", "edgeup"):
        dn, db = int(row[f"degorder_{name}"]), int(row[f"deg{axis_b}_{name}"])
        out.append(_coeffs(row, f"{name}_c", dn, db))
    return out[0], out[1]


def _with_columns(table: np.ndarray, cols: dict) -> np.ndarray:
    """A copy of the structured array with columns appended (scalars broadcast); int -> K, float -> D."""
    vals = {k: np.asarray(v) for k, v in cols.items()}
    dt = [(n, table.dtype[n]) for n in table.dtype.names]
    dt += [(k, np.int64 if v.dtype.kind in "iub" else np.float64) for k, v in vals.items()]
    out = np.empty(len(table), dtype=dt)
    for n in table.dtype.names:
        out[n] = table[n]
    for k, v in vals.items():
        out[k] = v
    return out


def order_table_hdus(ct: CentreTable, lower: np.ndarray, upper: np.ndarray, per_order: dict,
                     header: fits.Header) -> fits.HDUList:
    coeffs = _with_columns(ct.coeffs, edge_columns(lower, upper, ct.axis_b))
    meta = _with_columns(ct.meta, per_order)
    poly_name, meta_name = section("products")["order_table_extnames"]   # soxspipe reads them by position
    return fits.HDUList([fits.PrimaryHDU(header=header), _table_hdu(coeffs, poly_name), _table_hdu(meta, meta_name)])


def _table_hdu(data: np.ndarray, name: str) -> fits.BinTableHDU:
    """The same HDU as ``fits.BinTableHDU(data, name=name)`` (the same bytes: tests/test_esorex.py), without
    the import of astropy.table (~0.15 s) that its constructor makes to test whether ``data`` is a Table."""
    hdu = fits.BinTableHDU(name=name)
    hdu.data = data
    return hdu
