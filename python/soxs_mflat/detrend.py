"""Preparation and detrending: orientation, trim, electrons, error maps, bad pixels, bias or
dark / lamp-off subtraction; empty and saturated flats are refused here."""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from . import _core
from .contract import section
from .frames import Frame
from .keywords import detector_value, number
from .prepare import binning_of, check_finite, gain_of, prepare_raw
from .rules import rule_error
from .verify import InputSet

log = logging.getLogger("soxs_mflat")
_TOL = section("inputs")["tolerances"]
SATURATION_ADU = {tuple(k.split()): float(v) for k, v in _TOL["saturation_adu"].items()}
EMPTY_E = float(_TOL["empty_e"])      # a flat whose 99th percentile is below this (e-) has no lamp light


@dataclass
class Detrended:
    data: list[np.ndarray]     # per flat, electrons, float32
    error: list[np.ndarray]
    mask: np.ndarray           # static bad pixels (and bias/dark QUAL)
    frames: list[Frame]


def _read_product(frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A master bias or dark: FLUX, ERRS and QUAL, each of the FLUX's shape, FLUX and ERRS finite."""
    with fits.open(frame.source(keep=True)) as hl:   # UVB: read for each lamp; converted (copied) inside
        names = [h.name for h in hl]
        for ext in ("FLUX", "ERRS", "QUAL"):
            if ext in names and not hl[ext].is_image:
                raise rule_error("unreadable-fits", file=frame.path, detail=f"its {ext} extension is not an image")
        flux = np.asarray(hl["FLUX"].data if "FLUX" in names else hl[0].data, np.float32)
        err = np.asarray(hl["ERRS"].data, np.float32) if "ERRS" in names else np.zeros_like(flux)
        qual = np.asarray(hl["QUAL"].data) != 0 if "QUAL" in names else np.zeros(flux.shape, bool)
    for ext, a in (("ERRS", err), ("QUAL", qual)):   # each is used pixel by pixel with the FLUX
        _check_shape(frame, a.shape, flux.shape, f"its {ext} extension")
    for ext, a in (("FLUX", flux), ("ERRS", err)):   # subtracted from / added to every flat
        check_finite(a, frame.path, f"its {ext} extension")
    return flux, err, qual


def _read_bpm(frame: Frame) -> np.ndarray:
    """The static bad-pixel map (the first HDU with data) in its stored type; non-zero is bad, and so is
    a non-finite value (NaN != 0)."""
    return np.asarray(fits.getdata(frame.source(keep=True)))


def _check_shape(frame: Frame, shape, want, what: str) -> None:
    if tuple(shape) != tuple(want):
        raise rule_error("shape", file=frame.path, detail=f"{what} has shape {tuple(shape)}, expected {tuple(want)} "
                         "(same binning and science region as the flats)")


def _ron(frame: Frame, s: InputSet) -> float:
    return float(detector_value(frame.header, s.arm.instrument, "ron", str(frame.path), s.arm.ron))


def _check_level(frame: Frame, raw_adu_max: float, detrended: np.ndarray, s: InputSet) -> None:
    sat = SATURATION_ADU[(s.arm.instrument, s.arm.arm)]
    if raw_adu_max >= sat:
        raise rule_error("saturated", file=frame.path, level=f"{raw_adu_max:.0f}", limit=f"{sat:.0f}")
    p99 = _core.sample_percentile(detrended, _TOL["sample_stride"], _TOL["empty_percentile"])   # as the plugin
    if p99 < EMPTY_E:
        raise rule_error("empty-flat", file=frame.path, p99=f"{p99:.1f}", limit=f"{EMPTY_E:.0f}")


def _pair_offs(flats: list[Frame], offs: list[Frame]) -> list[Frame]:
    """Nearest lamp-off frame in time, each used once while unused ones remain (the core's rule)."""
    return [offs[j] for j in _core.pair_by_time([f.mjd for f in flats], [o.mjd for o in offs])]


def detrend(s: InputSet, lamp: str, threads: int = 0) -> Detrended:
    flats = sorted(s.flats[lamp], key=lambda f: f.mjd)
    bx, by = binning_of(flats[0].header, s.arm)
    shape = (s.arm.science_shape[0] // by, s.arm.science_shape[1] // bx)
    offs = _pair_offs(flats, s.lampoff) if s.lampoff and s.dark is None else []
    # all files read concurrently (FITS reading and the core's arithmetic release the GIL); the
    # reads are queued first, so a detrending task only ever waits on a read already running
    with ThreadPoolExecutor(max_workers=threads if threads > 0 else os.cpu_count() or 1) as pool:
        def submit(fn, arg):
            return pool.submit(fn, arg) if arg is not None else None

        bpm_f = submit(_read_bpm, s.bpm)
        bias_f, dark_f = submit(_read_product, s.bias), submit(_read_product, s.dark)
        unique = {f.path: f for f in [*flats, *offs]}   # a compressed frame's bytes are used (and released) once
        raw_f = {p: pool.submit(prepare_raw, p, None, f.source()) for p, f in unique.items()}
        mask, bias, bias_err = _calibration_mask(s, shape, bpm_f, bias_f)
        dark = dark_f.result() if dark_f else None

        def one(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            f = flats[k]
            img = raw_f[f.path].result()[0]
            _check_shape(f, img.shape, shape, "prepared flat")
            raw_max = _core.sample_percentile(img, _TOL["sample_stride"], _TOL["saturation_percentile"]) \
                / gain_of(f.header, s.arm, str(f.path))
            dq = None
            if dark is not None or offs:
                off = offs[k] if offs else None
                d, de, dq, dframe, ratio = _dark_for(f, dark, off, off and raw_f[off.path].result()[0], s)
                _check_shape(dframe, d.shape, shape, "dark / lamp-off frame")
                err = _core.detrend_frame(img, d, de, ratio, _ron(f, s))
            else:
                err = _core.detrend_frame(img, bias, bias_err, 1.0, _ron(f, s))
            _check_level(f, raw_max, img, s)
            return img, err, dq

        done = list(pool.map(one, range(len(flats))))
    for _, _, dq in done:
        if dq is not None:
            mask |= dq
    return Detrended([d[0] for d in done], [d[1] for d in done], mask, flats)


def _calibration_mask(s: InputSet, shape, bpm_f, bias_f):
    """Static bad pixels (BPM and bias QUAL) and the bias with its error, from the pending reads."""
    mask = np.zeros(shape, bool)
    bias = bias_err = None
    if bpm_f is not None:
        bpm = bpm_f.result()
        _check_shape(s.bpm, bpm.shape, shape, "bad-pixel map")
        mask |= bpm != 0   # NaN and inf included
    if bias_f is not None:
        bias, bias_err, bq = bias_f.result()
        _check_shape(s.bias, bias.shape, shape, "master bias")
        mask |= bq
    return mask, bias, bias_err


def _dark_for(flat: Frame, dark, off: Frame | None, off_img: np.ndarray | None, s: InputSet):
    """Dark (or lamp-off frame), its error, bad pixels, frame and the exposure-time scale to apply."""
    if off is not None:
        d = off_img.copy()   # an off frame may serve two flats: never detrended in place
        err = _core.detrend_frame(d, None, None, 1.0, _ron(off, s))
        qual, frame = np.zeros(d.shape, bool), off
    else:
        d, err, qual = dark
        frame = s.dark
    t_flat = number(flat.header, "EXPTIME", str(flat.path), default=0.0)
    t_dark = number(frame.header, "EXPTIME", str(frame.path), default=0.0)
    ratio = 1.0
    if t_dark > 0 and abs(t_flat - t_dark) > _TOL["exptime_s"]:
        ratio = t_flat / t_dark
        log.warning("%s: EXPTIME %.3f s differs from %s (%.3f s); scaling it by %.4f", frame.name, t_dark,
                    flat.name, t_flat, ratio)
    return d, err, qual, frame, ratio
