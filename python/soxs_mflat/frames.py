"""Input frames: SOF parsing (esorex's dialect), reading headers safely (plain, gzip, unix-compress
and tile-compressed FITS), classification by header keywords cross-checked against SOF tags. The
rules are those of the input contract (data/contract/inputs.yaml)."""
from __future__ import annotations

import hashlib
import io
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from astropy.io import fits

from .contract import section
from .errors import InputError
from .keywords import number, text
from .headercards import invalid_card, keyword_problem, non_ascii, out_of_range
from .rules import VerificationError, rule_error

__all__ = ["Frame", "VerificationError", "load_frames", "parse_sof", "read_header", "classify", "accepted_tags",
           "expected_tag", "image_hdu"]
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x1f\x9d", b"BZ")     # gzip, unix compress (LZW), bzip2
# Blank or NUL padding after the last HDU is allowed (the contract; _check_complete checks that it is only
# that): astropy warns of it at every open of such a file, in the pixel readers' threads too, where a
# catch_warnings block would race; this one warning, and only it, is not shown
warnings.filterwarnings("ignore", message="Unexpected extra padding at the end of the file")


@dataclass
class Frame:
    path: Path
    header: fits.Header
    kind: str          # a kind of the contract (FLAT, LAMPOFF, MASTER_BIAS, ...) or UNKNOWN
    tag: str | None = None
    hdu: int = 0       # the image HDU: 0, or 1 in a tile-compressed (fpack) file
    digest: str = ""   # MD5 of the file's bytes, when another input has its size (duplicate inputs)
    content: bytes | None = field(default=None, repr=False)   # a compressed file, decompressed once

    @property
    def name(self) -> str:
        return self.path.name

    def source(self, keep: bool = False):
        """What to give fits.open: the bytes decompressed when the header was read (a .fits.gz / .fits.Z is
        decompressed once per run), else the path. ``keep=False`` releases the bytes (the pixels are read)."""
        data = self.content
        if not keep:
            self.content = None
        return self.path if data is None else io.BytesIO(data)

    def get(self, key: str, default=None):
        return self.header.get(key, default)

    @property
    def arm(self) -> str | None:
        return text(self.header, "ESO SEQ ARM")

    @property
    def instrument(self) -> str | None:
        return text(self.header, "INSTRUME")

    @property
    def mjd(self) -> float:
        return number(self.header, "MJD-OBS", str(self.path), default=0.0)

    @property
    def is_raw_flat(self) -> bool:
        return self.kind in ("FLAT", "DFLAT", "QFLAT")


def is_compressed(path: Path) -> bool:
    """Compressed as a whole (.fits.gz, .fits.Z, .fits.bz2), told by the magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) in _COMPRESSED_MAGIC


def image_hdu(hl: fits.HDUList) -> int:
    """The HDU holding the frame's image: the primary, or HDU 1 of a tile-compressed file whose
    primary is empty (fpack's layout, .fits.fz)."""
    if hl[0].header.get("NAXIS", 0) == 0 and len(hl) > 1 and isinstance(hl[1], fits.CompImageHDU):
        return 1
    return 0


def _frame_header(hl: fits.HDUList, hdu: int) -> fits.Header:
    if hdu == 0:
        return hl[0].header.copy()
    h = hl[hdu].header.copy()    # fpack moves the primary's cards here; keep any it left behind
    for card in hl[0].header.cards:
        if card.keyword not in h and card.keyword not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", ""):
            h.append(card)
    return h


def _check_complete(path: Path, data: bytes | None = None) -> None:
    """Every HDU's header structurally sound (_check_structure) and its data unit complete (the padding
    may be missing); tile-compressed HDUs as stored. ``data``: the decompressed bytes of a whole-file
    compressed ``path``. The headers are walked here, before astropy builds any HDU: astropy computes
    sizes from BITPIX and NAXISn as it finds the next HDU, and a string or huge value there failed with
    its own error (a TypeError, EINVAL from a seek) or, for a table without TFIELDS, only when the
    pixels were read."""
    size = path.stat().st_size if data is None else len(data)
    what = f"{size} bytes" if data is None else f"{size} bytes decompressed"
    with (open(path, "rb") if data is None else io.BytesIO(data)) as fh:
        offset, index = 0, 0
        while offset < size:
            fh.seek(offset)
            if index > 0 and not fh.read(8).startswith(b"XTENSION"):
                fh.seek(offset)
                n_blank = _padding_blanks(fh)
                if n_blank is not None and n_blank < 2880:   # zero padding of any length, blanks under a record
                    return
                if n_blank is not None:
                    raise rule_error("unreadable-fits", file=path, detail=f"not a readable FITS file (bytes {offset} "
                                     f"on, after HDU {index - 1}, are whole 2880-byte records of blanks: such special "
                                     "records are not read (astropy takes them for a header); remove them)")
                raise rule_error("unreadable-fits", file=path, detail=f"not a readable FITS file (bytes {offset} on, "
                                 f"after HDU {index - 1}, are not a FITS header: its NAXISn or BITPIX may not match "
                                 "the data written)")
            fh.seek(offset)
            raw = _header_bytes(fh)
            h = fits.Header.fromstring(raw.decode("ascii", "replace"))
            _check_structure(path, h, index)
            odd = non_ascii(raw)
            if odd:
                raise rule_error("unreadable-fits", file=path, detail=f"not a readable FITS file (HDU {index}: card "
                                 f"{odd[0]} ({odd[1]}) holds the byte 0x{odd[2]:02X}; a FITS header holds printable "
                                 "ASCII only)")
            bad = invalid_card(raw)
            if bad:   # as the plugin (CFITSIO cannot read such a header at all)
                raise rule_error("unreadable-fits", file=path, detail=f"not a readable FITS file (HDU {index}: "
                                 f"{bad[0]} = {bad[1]} is not a FITS value (a number, T/F or a quoted string))")
            big = out_of_range(raw)
            if big:
                raise rule_error("unreadable-fits", file=path, detail=f"not a readable FITS file (HDU {index}: "
                                 f"{big[0]} = {big[1]} is beyond what a double holds, 2.2250738585072014e-308 to "
                                 "1.7976931348623157e+308)")
            problem = keyword_problem(raw)
            if problem:
                raise rule_error("header-keyword", file=path, hdu=index, detail=problem)
            end = offset + len(raw) + _data_bytes(h)
            if end > size:   # beyond 2^62 the plugin's arithmetic saturates: the same words for both
                promised = end if end < 1 << 62 else "more than 4611686018427387904"
                raise rule_error("unreadable-fits", file=path,
                                 detail=f"FITS file is truncated ({what}, header promises {promised})")
            offset, index = end + (-end) % 2880, index + 1


def _padding_blanks(fh) -> int | None:
    """The number of blanks from the file's position to its end when only padding (NULs and blanks) is
    there, else None. astropy skips NUL padding but reads a whole record of blanks as a header, which then
    has no END card; CFITSIO reads both."""
    n_blank = 0
    while chunk := fh.read(1 << 20):
        if chunk.strip(b"\0 "):
            return None
        n_blank += chunk.count(b" ")
    return n_blank


def _header_bytes(fh) -> bytes:
    """The header blocks at the file's position, up to the block with the END card."""
    blocks = []
    while True:
        block = fh.read(2880)
        if len(block) < 2880:   # the plugin's words too
            raise ValueError("the header has no END card (the file ends first)")
        blocks.append(block)
        if any(block[at:at + 80] == _END for at in range(0, 2880, 80)):
            return b"".join(blocks)


_END = b"END" + b" " * 77
def _data_bytes(h: fits.Header) -> int:
    """The size of an HDU's data unit (FITS 4.0, section 4.4.1), without padding."""
    n = h.get("NAXIS", 0)
    if n == 0:
        return 0
    axes = [h.get(f"NAXIS{i}", 0) for i in range(1, n + 1)]
    if h.get("GROUPS") is True and axes[0] == 0:   # random groups: NAXIS1 = 0 is not an axis
        axes = axes[1:]
    count = math.prod(axes)
    return abs(h["BITPIX"]) // 8 * h.get("GCOUNT", 1) * (h.get("PCOUNT", 0) + count)


_TABLES = ("BINTABLE", "TABLE")


def _check_structure(path: Path, h: fits.Header, index: int = 0) -> None:
    """The mandatory keywords of a primary header or extension are valid (FITS 4.0, section 4.4.1):
    SIMPLE = T; XTENSION a standard type; BITPIX a FITS one; NAXIS, NAXISn, PCOUNT and GCOUNT
    non-negative integers; an image extension has PCOUNT 0 and GCOUNT 1, a table BITPIX 8, NAXIS 2 and
    TFIELDS. As the plugin's completeness check; a negative one gave a negative data size here, and
    astropy fails on either later (found by tests/test_fuzz.py)."""
    def bad(detail: str):
        return rule_error("unreadable-fits", file=path, detail=f"not a readable FITS file (HDU {index}: {detail})")
    if index == 0 and h.get("SIMPLE") is not True:
        raise bad(f"SIMPLE = {h.get('SIMPLE')!r}: the file says it does not conform to FITS")
    xt = h.get("XTENSION") if index else None
    if index and not (isinstance(xt, str) and xt.strip().upper() in ("IMAGE", *_TABLES)):
        raise bad(f"XTENSION = {xt!r} is not IMAGE, TABLE or BINTABLE")
    bitpix = h.get("BITPIX")
    if not (type(bitpix) is int and bitpix in (8, 16, 32, 64, -32, -64)):
        raise bad(f"BITPIX = {bitpix!r} is not one of 8, 16, 32, 64, -32, -64")
    n = h.get("NAXIS", 0)
    axes = [f"NAXIS{i}" for i in range(1, min(n, 999) + 1)] if _count(n) else []   # FITS allows 999 axes
    for k in ("NAXIS", *axes, "PCOUNT", "GCOUNT"):
        v = h.get(k)
        if (v is not None or k in axes) and not _count(v):
            problem = "negative" if isinstance(v, int) and not isinstance(v, bool) else "not an integer"
            raise bad(f"{k} = {v!r} is {problem}" if v is not None else f"{k} is missing")
    if not _count(n) or n > 999:
        raise bad(f"NAXIS = {n!r} is not in 0..999")
    kind = xt.strip().upper() if index else "PRIMARY"
    if kind == "IMAGE" and (h.get("PCOUNT", 0), h.get("GCOUNT", 1)) != (0, 1):
        raise bad(f"an image extension needs PCOUNT = 0 and GCOUNT = 1 (has {h.get('PCOUNT')}, {h.get('GCOUNT')})")
    if kind in _TABLES and not (bitpix == 8 and n == 2 and _count(h.get("TFIELDS")) and h["TFIELDS"] <= 999):
        raise bad(f"a {kind} extension needs BITPIX = 8, NAXIS = 2 and TFIELDS (has {bitpix}, {n}, "
                  f"{h.get('TFIELDS')!r})")


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def decompress(path: Path) -> bytes:
    """A whole-file compressed FITS file (gzip, unix compress, bzip2) as bytes, read once."""
    import bz2
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gunzip(path)
    if magic == b"\x1f\x9d":   # unix compress: ncompress's C decoder (15x astropy's uncompresspy)
        import ncompress
        with open(path, "rb") as f:
            return ncompress.decompress(f.read())
    opener = bz2.BZ2File
    try:
        with opener(path, mode="rb") as f:
            return f.read()
    except EOFError as exc:
        raise rule_error("unreadable-fits", file=path, detail=f"FITS file is truncated (the compressed stream "
                         f"ends early: {exc})") from None


TRUNCATED_GZIP = ("FITS file is truncated (the compressed stream ends early: Compressed file ended before the "
                  "end-of-stream marker was reached)")


def gunzip(path: Path) -> bytes:
    """A .gz file as CFITSIO (and so the plugin) reads it: one gzip member, NUL padding after it allowed; a
    second member or other bytes after it, a stream that ends early, or a bad CRC are unreadable-fits, in
    the plugin's words (Python's gzip module read every member and had other messages)."""
    import zlib
    d = zlib.decompressobj(wbits=31)
    try:
        data = d.decompress(path.read_bytes()) + d.flush()
    except zlib.error as exc:   # "Error -3 while decompressing data: incorrect data check": zlib's own words
        raise rule_error("unreadable-fits", file=path,
                         detail=f"not a readable FITS file ({str(exc).split(': ', 1)[-1]})") from None
    if not d.eof:
        raise rule_error("unreadable-fits", file=path, detail=TRUNCATED_GZIP)
    if d.unused_data.strip(b"\0"):
        raise rule_error("unreadable-fits", file=path, detail=f"not a readable FITS file (bytes follow the end of "
                         f"its gzip stream, or the stream is not one gzip member of {len(data)} bytes)")
    return data


# Decompressed bytes kept from the header read for the pixel read, at most this much per run (beyond it a
# compressed file is decompressed again when its pixels are read).
KEEP_DECOMPRESSED_BYTES = 2 << 30


def read_header(path: Path) -> tuple[fits.Header, int]:
    """The frame's header and image HDU, with a clear error for missing, unreadable or truncated files."""
    return read_frame_file(path)[:2]


def read_frame_file(path: Path) -> tuple[fits.Header, int, bytes | None]:
    """read_header's header and image HDU, and the decompressed bytes of a whole-file compressed file
    (None for others)."""
    if not path.exists():
        raise rule_error("missing-file", file=path, hint="")
    data = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if is_compressed(path):
                data = decompress(path)
            _check_complete(path, data)
            with fits.open(path if data is None else io.BytesIO(data), memmap=False, lazy_load_hdus=False) as hl:
                hl.verify("silentfix")
                hdu = image_hdu(hl)
                _check_scaling(hl[hdu].header)
                header = _frame_header(hl, hdu)
        for w in caught:
            if "truncated" in str(w.message).lower():
                raise rule_error("unreadable-fits", file=path, detail="FITS file is truncated")
    except VerificationError:
        raise
    except Exception as exc:  # astropy (and gzip, ncompress) raise many types for broken files
        raise rule_error("unreadable-fits", file=path, detail=f"not a readable FITS file ({exc})") from None
    return header, hdu, data


def _check_scaling(h: fits.Header) -> None:
    """BSCALE and BZERO, when present, are finite numbers, BSCALE not 0: astropy applies them when the
    pixels are read, and a string or NaN there fails or poisons every pixel (found by tests/test_fuzz.py);
    a zero scale makes a constant image."""
    for k in ("BSCALE", "BZERO"):
        v = h.get(k)
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            raise ValueError(f"{k} = {v!r} is not a finite number: the pixel values cannot be scaled")
    if h.get("BSCALE") == 0:
        raise ValueError("BSCALE = 0: every pixel would read as BZERO")


def classify(header: fits.Header) -> str:
    """The frame's kind from its header (PRO CATG, else DPR TYPE and TECH), per the contract."""
    c = section("inputs")["classification"]
    catg = text(header, "ESO PRO CATG") or ""
    for prefix in c["products"]:
        if catg == prefix or catg.startswith(prefix + "_"):
            return prefix
    dtype = (text(header, "ESO DPR TYPE") or "").replace(" ", "")
    tech = (text(header, "ESO DPR TECH") or "").replace(" ", "")
    for row in c["raw"]:
        if dtype == row["type"] and tech == row["tech"]:
            return row["kind"]
    return "UNKNOWN"


def accepted_tags(frame: Frame) -> list[str]:
    """The SOF tags accepted for this frame (the first is canonical), from the contract's patterns."""
    fields = {"type": (text(frame.header, "ESO DPR TYPE") or "").replace(" ", ""),
              "catg": text(frame.header, "ESO PRO CATG") or "", "arm": frame.arm or ""}
    return [p.format(**fields) for p in section("inputs")["tags"].get(frame.kind, [])]


def expected_tag(frame: Frame) -> str:
    tags = accepted_tags(frame)
    return tags[0] if tags else f"{(text(frame.header, 'ESO DPR TYPE') or '')}_{frame.arm}"


def _sof_path(token: str, sof: Path, lineno: int) -> Path:
    """A SOF path: '~' expanded; relative paths against the working directory (esorex's rule)."""
    p = Path(token).expanduser()
    if p.is_absolute():
        return p
    if not p.exists() and (sof.parent / p).exists():
        raise rule_error("missing-file", file=p, hint=f" in the working directory {Path.cwd()} ({sof}:{lineno}; "
                         f"relative SOF paths are resolved against the working directory, as esorex does; "
                         f"it exists relative to the SOF's folder {sof.parent})")
    return p


def parse_sof(path: Path) -> list[tuple[Path, str | None]]:
    """Lines 'PATH TAG' or 'PATH TAG GROUP' (esorex's dialect); '#' comments and blank lines skipped."""
    if not path.exists():
        raise rule_error("missing-file", file=path, hint=" (SOF file)")
    sof = section("inputs")["sof"]
    try:
        lines = path.read_text(encoding="utf-8").split("\n")   # esorex's lines: \n (a \r before it is dropped)
    except UnicodeDecodeError:
        raise rule_error("sof-format", file=path, line=1, detail="not a text SOF (a binary file?)") from None
    entries = []
    for lineno, line in enumerate(lines, 1):
        line = line.strip(" \t\r\f\v")
        if not line or line.startswith("#"):
            continue
        parts = line.replace("\t", " ").split(" ")   # esorex splits at blanks and tabs only: a no-break space
        parts = [t for t in parts if t]                # or U+2028 is part of a path, as in the plugin
        spaced = _path_with_whitespace(parts, sof["groups"])
        if spaced:
            raise rule_error("sof-format", file=path, line=lineno, detail=f"the path {spaced!r} holds whitespace, which "
                             "a SOF cannot (esorex splits its lines at whitespace): rename it or list a link to it")
        if len(parts) not in (2, 3):
            raise rule_error("sof-format", file=path, line=lineno, detail=f"expected 'PATH TAG [GROUP]', got {line!r}")
        if len(parts) == 3 and parts[2].upper() not in sof["groups"]:
            raise rule_error("sof-format", file=path, line=lineno,
                             detail=f"unknown frame group {parts[2]!r} (expected one of {', '.join(sof['groups'])})")
        entries.append((_sof_path(parts[0], path, lineno), parts[1]))
    return entries


def _path_with_whitespace(parts: list[str], groups) -> str | None:
    """The path a SOF line means when its first tokens joined by a space name an existing file (a line
    'a/sp ace.fits TAG' splits into three tokens), else None."""
    n_tail = 2 if len(parts) > 2 and parts[-1].upper() in groups else 1
    for k in range(len(parts) - n_tail, 1, -1):
        candidate = " ".join(parts[:k])
        if Path(candidate).expanduser().exists():
            return candidate
    return None


def _looks_like_fits(path: Path) -> bool:
    if path.name.endswith(tuple(section("inputs")["sof"]["suffixes"])):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return head.startswith(b"SIMPLE  =") or head[:2] in _COMPRESSED_MAGIC


def _entries(inputs) -> tuple[list[tuple[Path, str | None]], str]:
    if not isinstance(inputs, (str, Path)):
        paths = [Path(f).expanduser() for f in inputs]
        folders = [str(p) for p in paths if p.is_dir()]
        if folders:   # it was read as a FITS file: "[unreadable-fits] ...: Is a directory"
            raise InputError(f"{', '.join(folders)}: a directory among several inputs; give one directory, one "
                             "SOF file or a list of FITS files")
        return [(p, None) for p in paths], "the given files"
    p = Path(inputs).expanduser()
    if p.is_dir():
        suffixes = tuple(section("inputs")["sof"]["suffixes"])
        return [(f, None) for f in sorted(p.iterdir()) if f.name.endswith(suffixes) and f.is_file()], str(p)
    if p.exists() and _looks_like_fits(p):     # one FITS file given in place of a SOF
        return [(p, None)], str(p)
    return parse_sof(p), str(p)


def supported_arms() -> str:
    from .instruments import ARMS
    return ", ".join(f"{i.upper()}/{a.upper()}" for i, a in ARMS)


def byte_digests(frames: list[Frame]) -> dict[int, str]:
    """id(frame) -> MD5 of the whole file, only for files of equal size whose first 64 kB (the headers) are
    equal too: flats of one set differ there already, so nothing is hashed whole in a normal set. The run's
    verification and the organiser find byte-identical copies with it."""
    by_size: dict[int, list[Frame]] = {}
    for f in frames:
        by_size.setdefault(f.path.stat().st_size, []).append(f)
    digests: dict[int, str] = {}
    for same in (g for g in by_size.values() if len(g) > 1):
        by_head: dict[str, list[Frame]] = {}
        for f in same:
            by_head.setdefault(_head_md5(f.path), []).append(f)
        for f in (f for g in by_head.values() if len(g) > 1 for f in g):
            digests[id(f)] = file_md5(f.path)
    return digests


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _refuse_duplicates(frames: list[Frame]) -> None:
    """The same file twice (resolved path), two byte-identical files (byte_digests) or the same exposure."""
    digests = byte_digests(frames)
    for f in frames:
        f.digest = digests.get(id(f), "")
    seen: dict[tuple, Frame] = {}
    for f in frames:
        for key, how in ((("path", os.path.realpath(f.path)), "the same file"), (("md5", f.digest), "identical bytes")):
            if key == ("md5", ""):
                continue
            if key in seen:
                raise rule_error("duplicate-input", file=f.path, how=how, other=seen[key].path)
            seen[key] = f
    _refuse_same_exposure([f for f in frames if f.kind in RAW_KINDS])


RAW_KINDS = tuple(k for k, d in section("inputs")["kinds"].items() if d["group"] == "RAW")


def same_exposure(f: Frame, other: Frame) -> str | None:
    """How two raw frames are one exposure (the duplicate-input rule of the contract: the same ARCFILE when
    both have one, else the same DATE-OBS; within one instrument and arm, whose arms expose at once), e.g. a
    raw frame and a compressed copy of it; None when they are not. The organiser applies the same rule."""
    def value(g: Frame, k: str) -> str:
        v = g.header.get(k)
        return v.strip() if isinstance(v, str) else ""
    if (f.instrument, f.arm) != (other.instrument, other.arm):
        return None
    a, b = value(f, "ARCFILE"), value(other, "ARCFILE")
    key, v = ("ARCFILE", a) if a and b else ("DATE-OBS", value(f, "DATE-OBS"))
    return f"the same exposure ({key} {v})" if v and v == value(other, key) else None


def _refuse_same_exposure(raws: list[Frame]) -> None:
    for i, f in enumerate(raws):
        for other in raws[:i]:
            how = same_exposure(f, other)
            if how:
                raise rule_error("duplicate-input", file=f.path, how=how, other=other.path)


def _head_md5(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read(1 << 16)).hexdigest()


def load_frames(inputs: str | Path | Iterable[str | Path]) -> list[Frame]:
    """Frames from a SOF file, a directory of FITS files, one FITS file or a list of paths."""
    entries, where = _entries(inputs)
    if not entries:
        raise rule_error("no-input", where=where)
    limit = section("inputs")["sof"]["max_frames"]
    if len(entries) > limit:
        raise rule_error("too-many-frames", where=where, n=len(entries), max=limit)
    frames, kept = [], 0
    for path, tag in entries:
        if not (path.name.isascii() and path.name.isprintable()):   # before reading it: the products name it
            raise rule_error("file-name", file=path)
        header, hdu, data = read_frame_file(path)
        if data is not None and kept + len(data) > KEEP_DECOMPRESSED_BYTES:
            data = None
        kept += len(data or b"")
        f = Frame(path, header, classify(header), tag, hdu, content=data)
        if not f.arm and any("{arm}" in t for t in section("inputs")["tags"].get(f.kind, [])):
            # a raw frame's tags name its arm: a tag-mismatch against "LAMP,FLAT_" said nothing useful
            raise rule_error("unknown-arm", file=path, instrument=f.instrument, arm="(no ESO SEQ ARM)",
                             supported=supported_arms())
        tags = accepted_tags(f)
        if tag is not None and tags and tag.upper() not in tags:
            raise rule_error("tag-mismatch", file=path, tag=tag, expected=tags[0], accepted=", ".join(tags))
        frames.append(f)
    _refuse_duplicates(frames)
    return frames
