"""The order table's plain-records reader against astropy (the oracle): every plain layout read as
np.array(hdu.data) reads it, bit for bit, from a file and from a compressed file's bytes; every other
layout left to astropy."""
import gzip

import numpy as np
import pytest
from astropy.io import fits

from soxs_mflat.frames import Frame
from soxs_mflat.ordertable import _read_tables, plain_records

PLAIN = [("a", ">i8"), ("b", ">f8"), ("c", ">i4"), ("d", ">i2"), ("e", ">f4"), ("f", "u1")]


def _write(tmp_path, cols, name="t.fits"):
    hl = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols), fits.BinTableHDU.from_columns(cols)])
    path = tmp_path / name
    hl.writeto(path)
    return path


def _plain_cols(n=7):
    rng = np.random.default_rng(2)
    out = []
    for name, dt in PLAIN:
        v = (rng.normal(size=n) * 1e3).astype(dt) if dt[-2] == "f" else rng.integers(0, 100, n).astype(dt)
        out.append(fits.Column(name=name, format={"i8": "K", "f8": "D", "i4": "J", "i2": "I", "f4": "E", "u1": "B"}[dt.lstrip("><|")], array=v))
    return out


def _frame(path, compressed=False):
    f = Frame.__new__(Frame)   # only what the reader uses
    f.path, f.content = path, (path.read_bytes() if compressed else None)
    return f


@pytest.mark.parametrize("compressed", [False, True])
def test_plain_tables_read_as_astropy_reads_them(tmp_path, compressed):
    path = _write(tmp_path, _plain_cols())
    with fits.open(path) as hl:
        want = [np.array(hl[k].data) for k in (1, 2)]
        raw = path.read_bytes()
        assert plain_records(hl[1], lambda o, n: raw[o:o + n]) is not None   # the fast path is taken
    got = _read_tables(_frame(path, compressed))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.tobytes() == w.tobytes()
        assert g.flags.writeable and g.flags.owndata


@pytest.mark.parametrize("case", ["scaled", "unsigned", "string", "logical", "vector", "tdim", "heap", "tnull",
                                  "duplicate"])
def test_other_layouts_are_left_to_astropy(tmp_path, case):
    cols = _plain_cols()
    if case == "unsigned":
        cols[0] = fits.Column(name="a", format="I", bzero=32768, array=np.arange(7, dtype=np.uint16))
    elif case == "string":
        cols[0] = fits.Column(name="a", format="4A", array=np.array(["ab"] * 7))
    elif case == "logical":
        cols[0] = fits.Column(name="a", format="L", array=np.ones(7, bool))
    elif case == "vector":
        cols[0] = fits.Column(name="a", format="2D", array=np.ones((7, 2)))
    elif case == "tdim":
        cols[0] = fits.Column(name="a", format="4D", dim="(2,2)", array=np.ones((7, 2, 2)))
    elif case == "heap":
        cols[0] = fits.Column(name="a", format="PJ()", array=np.array([np.arange(k % 3 + 1) for k in range(7)], object))
    elif case == "tnull":
        cols[0] = fits.Column(name="a", format="K", null=-1, array=np.arange(7))
    path = _write(tmp_path, cols)
    if case == "scaled":   # added to the header (astropy 8 cannot write a scaled integer column it built)
        with fits.open(path, mode="update") as hl:
            hl[1].header["TSCAL1"], hl[1].header["TZERO1"] = 2.0, 1.0
    if case == "duplicate":   # "a" and "A": the same name to FITS (astropy writes what it is given no such pair)
        path.write_bytes(path.read_bytes().replace(b"TTYPE2  = 'b       '", b"TTYPE2  = 'A       '"))
    raw = path.read_bytes()
    with fits.open(path) as hl:
        assert plain_records(hl[1], lambda o, n: raw[o:o + n]) is None


def test_a_short_data_unit_is_left_to_astropy(tmp_path):
    path = _write(tmp_path, _plain_cols())
    raw = path.read_bytes()
    with fits.open(path) as hl:
        loc = hl[1].fileinfo()["datLoc"]
        assert plain_records(hl[1], lambda o, n: raw[o:min(o + n, loc + 10)]) is None


def test_a_header_promising_a_huge_table_allocates_nothing(tmp_path):
    """NAXIS2 edited to 2^31 - 1 rows (57 GB promised, 14 kB there): refused as an order table under a 2 GB
    address-space limit, so nothing asked for the promised size (a read of it raises MemoryError there)."""
    import subprocess
    import sys
    path = _write(tmp_path, _plain_cols())
    path.write_bytes(path.read_bytes().replace(b"NAXIS2  =                    7", b"NAXIS2  =           2147483647", 1))
    code = f"""
import resource, warnings
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
warnings.simplefilter("ignore")
from soxs_mflat.frames import Frame
from soxs_mflat.ordertable import read_centre_table
f = Frame.__new__(Frame); f.path, f.content = {str(path)!r}, None
try:
    read_centre_table(f)
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("VerificationError [order-table]"), r.stdout + r.stderr
