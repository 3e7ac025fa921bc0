"""Raw frame to processing frame: orientation, science-region trim (binning-aware), electrons."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from astropy.io import fits

from . import _core
from .frames import image_hdu
from .instruments import Arm, get_arm
from .keywords import binning, gain_e_per_adu, key, text
from .rules import rule_error

__all__ = ["arm_of", "binning_of", "gain_of", "prepare_raw", "key"]


def arm_of(header: fits.Header, file: str = "header") -> Arm:
    try:
        return get_arm(text(header, "INSTRUME") or "", text(header, "ESO SEQ ARM") or "")
    except ValueError:
        raise rule_error("unknown-arm", file=file, instrument=text(header, "INSTRUME"),
                         arm=text(header, "ESO SEQ ARM"), supported="see soxs_mflat.instruments") from None


def binning_of(header: fits.Header, arm: Arm, file: str = "header") -> tuple[int, int]:
    """(binx, biny) with the contract's key fallbacks (X-shooter: CDELT1/2); the same function
    serves verification."""
    return binning(header, arm.instrument, arm.nir_like, file)


def gain_of(header: fits.Header, arm: Arm, file: str = "header") -> float:
    """e-/ADU from the header (X-shooter CONAD; SOXS max(CONAD, GAIN)), else the arm's nominal value."""
    return gain_e_per_adu(header, arm.instrument, arm.gain, file)


def read_image(path: str | Path, source=None) -> tuple[np.ndarray, fits.Header]:
    """The frame's 2-D image (primary, or HDU 1 of a .fits.fz) as float32 and its primary-style header;
    3-D images and NaN/inf pixels are refused. ``source``: what fits.open reads instead of ``path``
    (Frame.source(): a compressed file's bytes, decompressed once)."""
    with fits.open(path if source is None else source) as hl:
        hdu = image_hdu(hl)
        header = hl[0].header.copy() if hdu == 0 else hl[hdu].header.copy()
        data = _image_2d(_pixels(hl[hdu], path), path)
        data = np.asarray(data, dtype=np.float32)
    check_finite(data, path, "the image")
    return data, header


def _pixels(hdu, path):
    """An HDU's pixels; a tile that does not decompress (a corrupted .fits.fz: CFITSIO's codecs raise their
    own exception types) is rule unreadable-fits, as in the plugin."""
    try:
        return hdu.data
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - astropy's codecs raise CfitsioException, ValueError, OSError
        raise rule_error("unreadable-fits", file=path, detail=f"the image cannot be read ({exc})") from None


def _image_2d(data, path):
    if data is None or data.ndim != 2:
        shape = None if data is None else data.shape
        raise rule_error("shape", file=path, detail=f"the image has shape {shape}; a 2-D image is needed")
    return data


def _exact_integer(h: fits.Header) -> bool:
    """An uncompressed integer image whose physical values are raw + BZERO exactly (BSCALE 1, a whole
    BZERO, no BLANK): astropy's unsigned and offset types, the raw frames of every arm."""
    bzero, bscale = h.get("BZERO", 0), h.get("BSCALE", 1)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (bzero, bscale))
    return (h.get("BITPIX") in (8, 16, 32) and "BLANK" not in h and numbers and bscale == 1
            and float(bzero).is_integer() and abs(bzero) <= 2 ** 31)


def check_finite(data: np.ndarray, path, what: str) -> None:
    """Rule non-finite: no NaN or infinite pixel in ``what`` of ``path`` (raw frames, calibrations)."""
    # one pass without a temporary: a NaN or inf makes the float64 sum non-finite, and float32 values
    # cannot overflow it (|sum| <= 3.4e38 * 2^31 pixels); a non-finite sum is then counted exactly
    if data.dtype.kind in "iub" or np.isfinite(np.sum(data, dtype=np.float64)):
        return
    if not np.isfinite(data).all():
        raise rule_error("non-finite", file=path, what=what, n=int((~np.isfinite(data)).sum()))


def prepare_raw(path: str | Path, header: fits.Header | None = None, source=None) -> tuple[np.ndarray, fits.Header]:
    """Rotate (soxspipe's np.rot90 k = rotation / 90), trim to the science pixels, convert to e-.
    ``header``: the frame's header as verified (else the image HDU's); ``source``: as for read_image."""
    if isinstance(source, io.BytesIO):   # fits.open closes what it read: each read gets its own stream over
        content = source.getvalue()     # the same bytes (a BytesIO made from bytes shares them: no copy)
        source, again = io.BytesIO(content), io.BytesIO(content)
    else:
        again = source
    with fits.open(path if source is None else source, do_not_scale_image_data=True) as hl:
        if image_hdu(hl) == 0 and _exact_integer(hl[0].header):   # the raw frames of every arm
            h = hl[0].header.copy()
            raw = np.ascontiguousarray(_image_2d(hl[0].data, path))   # as stored: no float32 copy, and
            bzero = float(h.get("BZERO", 0))                          # integers need no finiteness check
            return _prepare(path, header if header is not None else h, raw.shape,
                            lambda *win: _core.prepare_frame_int(raw, bzero, *win)), h
    data, h = read_image(path, again)   # float, scaled, blank-flagged or tile-compressed: astropy's scaling
    return _prepare(path, header if header is not None else h, data.shape,
                    lambda *win: _core.prepare_frame(np.ascontiguousarray(data), *win)), h


def _prepare(path, header: fits.Header, shape, fn) -> np.ndarray:
    """fn(rot90, row0, row1, col0, col1, gain): the core's prepare_frame (the esorex plugin's arithmetic)
    on this frame's science window."""
    arm = arm_of(header, str(path))
    bx, by = binning_of(header, arm, str(path))
    r0, r1, c0, c1 = arm.science
    rows = (r0 // by, r0 // by + arm.science_shape[0] // by)
    cols = (c0 // bx, c0 // bx + arm.science_shape[1] // bx)
    try:
        return fn(arm.rotation // 90, *rows, *cols, gain_of(header, arm, str(path)))
    except ValueError:
        raise rule_error("shape", file=path, detail=f"image of shape {shape} is too small for the "
                         f"{arm.instrument} {arm.arm} science region {arm.science} at binning {bx}x{by}") from None
