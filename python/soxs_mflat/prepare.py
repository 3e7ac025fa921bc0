"""Raw frame to processing frame: orientation, science-region trim (binning-aware), electrons."""
from __future__ import annotations

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
        data = hl[hdu].data
        if data is None or data.ndim != 2:
            shape = None if data is None else data.shape
            raise rule_error("shape", file=path, detail=f"the image has shape {shape}; a 2-D image is needed")
        data = np.asarray(data, dtype=np.float32)
    check_finite(data, path, "the image")
    return data, header


def check_finite(data: np.ndarray, path, what: str) -> None:
    """Rule non-finite: no NaN or infinite pixel in ``what`` of ``path`` (raw frames, calibrations)."""
    if not np.isfinite(data).all():
        raise rule_error("non-finite", file=path, what=what, n=int((~np.isfinite(data)).sum()))


def prepare_raw(path: str | Path, header: fits.Header | None = None, source=None) -> tuple[np.ndarray, fits.Header]:
    """Rotate (soxspipe's np.rot90 k = rotation / 90), trim to the science pixels, convert to e-.
    ``header``: the frame's header as verified (else the image HDU's); ``source``: as for read_image."""
    data, h = read_image(path, source)
    header = header if header is not None else h
    arm = arm_of(header, str(path))
    bx, by = binning_of(header, arm, str(path))
    r0, r1, c0, c1 = arm.science
    rows = (r0 // by, r0 // by + arm.science_shape[0] // by)
    cols = (c0 // bx, c0 // bx + arm.science_shape[1] // bx)
    try:  # the core's prepare_frame: the same arithmetic as the esorex plugin
        sci = _core.prepare_frame(np.ascontiguousarray(data), arm.rotation // 90, *rows, *cols,
                                  gain_of(header, arm, str(path)))
    except ValueError:
        raise rule_error("shape", file=path, detail=f"image of shape {data.shape} is too small for the "
                         f"{arm.instrument} {arm.arm} science region {arm.science} at binning {bx}x{by}") from None
    return sci, header
