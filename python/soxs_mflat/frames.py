"""Input frames: SOF parsing, reading headers safely, classification by header keywords
(cross-checked against SOF tags when given)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from astropy.io import fits

from .errors import InputError

RAW_FLAT_TYPES = {"LAMP,FLAT": "FLAT", "FLAT,LAMP": "FLAT", "LAMP,DFLAT": "DFLAT", "LAMP,QFLAT": "QFLAT"}
PRODUCT_KINDS = ("MASTER_BIAS", "MASTER_DARK", "ORDER_TAB", "BP_MAP_RP", "SPECTRAL_FORMAT_TAB")


class VerificationError(InputError):
    """An input set breaks a rule; ``rule`` names it, the message names the files."""

    def __init__(self, rule: str, message: str):
        super().__init__(f"[{rule}] {message}")
        self.rule = rule


@dataclass
class Frame:
    path: Path
    header: fits.Header
    kind: str          # FLAT, DFLAT, QFLAT, LAMPOFF, DARK, MASTER_BIAS, MASTER_DARK, ORDER_TAB, BP_MAP_RP, ...
    tag: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def get(self, key: str, default=None):
        return self.header.get(key, default)

    @property
    def arm(self) -> str | None:
        v = self.header.get("HIERARCH ESO SEQ ARM")
        return str(v).upper() if v is not None else None

    @property
    def instrument(self) -> str | None:
        v = self.header.get("INSTRUME")
        return str(v).upper() if v is not None else None

    @property
    def mjd(self) -> float:
        return float(self.header.get("MJD-OBS", 0.0))

    @property
    def is_raw_flat(self) -> bool:
        return self.kind in ("FLAT", "DFLAT", "QFLAT")


def read_header(path: Path) -> fits.Header:
    """Primary header, with a clear error for missing, unreadable or truncated files."""
    if not path.exists():
        raise VerificationError("missing-file", f"{path}: no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hl:
                hl.verify("silentfix")
                header = hl[0].header.copy()
                size = path.stat().st_size
                for hdu in hl:  # data units must be complete (padding may be missing)
                    if hdu.fileinfo()["datLoc"] + hdu.size > size:
                        raise VerificationError("unreadable-fits", f"{path}: FITS file is truncated "
                                                f"({size} bytes, header promises {hdu.fileinfo()['datLoc'] + hdu.size})")
        for w in caught:
            if "truncated" in str(w.message).lower():
                raise VerificationError("unreadable-fits", f"{path}: FITS file is truncated")
    except VerificationError:
        raise
    except Exception as exc:  # astropy raises many types for broken files
        raise VerificationError("unreadable-fits", f"{path}: not a readable FITS file ({exc})") from None
    return header


def classify(header: fits.Header) -> str:
    catg = str(header.get("HIERARCH ESO PRO CATG", "")).upper()
    for kind in PRODUCT_KINDS:
        if catg.startswith(kind):
            return kind
    dtype = str(header.get("HIERARCH ESO DPR TYPE", "")).upper().replace(" ", "")
    tech = str(header.get("HIERARCH ESO DPR TECH", "")).upper().replace(" ", "")
    if dtype in RAW_FLAT_TYPES and tech == "ECHELLE,SLIT":
        return RAW_FLAT_TYPES[dtype]
    if dtype in ("LAMP,FLAT", "FLAT,LAMP") and tech == "IMAGE":
        return "LAMPOFF"
    if dtype == "DARK":
        return "DARK"
    return "UNKNOWN"


def expected_tag(frame: Frame) -> str:
    catg = frame.get("HIERARCH ESO PRO CATG")
    if catg:
        return str(catg).upper()
    dtype = str(frame.get("HIERARCH ESO DPR TYPE", "")).upper()
    return f"{dtype}{'_OFF' if frame.kind == 'LAMPOFF' else ''}_{frame.arm}"


def parse_sof(path: Path) -> list[tuple[Path, str | None]]:
    if not path.exists():
        raise VerificationError("missing-file", f"{path}: SOF file not found")
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) > 2:
            raise VerificationError("sof-format", f"{path}:{lineno}: expected 'PATH TAG', got {line!r}")
        p = Path(parts[0]).expanduser()
        if not p.is_absolute():
            p = (path.parent / p) if (path.parent / p).exists() else p
        entries.append((p, parts[1] if len(parts) == 2 else None))
    return entries


def load_frames(inputs: str | Path | Iterable[str | Path]) -> list[Frame]:
    """Frames from a SOF file, a directory of FITS files, or a list of paths."""
    if isinstance(inputs, (str, Path)):
        p = Path(inputs)
        if p.is_dir():
            entries = [(f, None) for f in sorted(p.glob("*.fits"))]
        else:
            entries = parse_sof(p)
    else:
        entries = [(Path(f), None) for f in inputs]
    if not entries:
        raise VerificationError("no-input", f"no input frames found in {inputs}")
    frames = []
    for path, tag in entries:
        h = read_header(path)
        f = Frame(path, h, classify(h), tag)
        if tag is not None and tag.upper() != expected_tag(f):
            raise VerificationError("tag-mismatch", f"{path}: SOF tag {tag} but its header says {expected_tag(f)}")
        frames.append(f)
    return frames
