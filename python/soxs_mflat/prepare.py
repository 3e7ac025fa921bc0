"""Raw frame to processing frame: orientation, science-region trim (binning-aware), electrons."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from . import _core
from .errors import InputError
from .frames import VerificationError
from .keywords import gain_e_per_adu, key
from .instruments import Arm, get_arm


def arm_of(header: fits.Header) -> Arm:
    try:
        return get_arm(str(header["INSTRUME"]), str(header["HIERARCH ESO SEQ ARM"]))
    except KeyError as exc:
        raise InputError(f"missing keyword {exc}") from None


def binning_of(header: fits.Header, arm: Arm) -> tuple[int, int]:
    if arm.nir_like:
        return 1, 1
    return int(header[key(arm.instrument, "binx")]), int(header[key(arm.instrument, "biny")])


def gain_of(header: fits.Header, arm: Arm) -> float:
    """e-/ADU from the header (X-shooter CONAD; SOXS max(CONAD, GAIN)), else the arm's nominal value."""
    return gain_e_per_adu(header, arm.instrument, arm.gain)


def prepare_raw(path: str | Path) -> tuple[np.ndarray, fits.Header]:
    """Rotate (soxspipe's np.rot90 k = rotation / 90), trim to the science pixels, convert to e-."""
    with fits.open(path) as hl:
        header = hl[0].header.copy()
        data = np.asarray(hl[0].data, dtype=np.float32)
    arm = arm_of(header)
    bx, by = binning_of(header, arm)
    r0, r1, c0, c1 = arm.science
    rows = (r0 // by, r0 // by + arm.science_shape[0] // by)
    cols = (c0 // bx, c0 // bx + arm.science_shape[1] // bx)
    try:  # the core's prepare_frame: the same arithmetic as the esorex plugin
        sci = _core.prepare_frame(np.ascontiguousarray(data), arm.rotation // 90, *rows, *cols, gain_of(header, arm))
    except ValueError:
        raise VerificationError("shape", f"{path}: image of shape {data.shape} is too small for the "
                                f"{arm.instrument} {arm.arm} science region {arm.science} at binning {bx}x{by}") from None
    return sci, header
