"""Write a simulated calibration set (raw flats, calibrations, SOF, truth) to a directory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time

from ..instruments import Arm, get_arm
from .calibs import write_calibrations, write_sof, write_truth
from .headers import raw_flat_header
from .scene import illumination, lamp_levels, make_geometry, scattered
from .stress import Stress, tilt_pattern

BIAS_ADU = 1000.0
PEAK_ADU = 25000.0


def parse_binning(binning: str, arm: Arm) -> tuple[int, int]:
    try:
        bx, by = (int(v) for v in binning.lower().split("x"))
    except ValueError:
        raise ValueError(f"binning must look like 1x1, 1x2 or 2x2, got {binning!r}") from None
    if (bx, by) not in ((1, 1), (1, 2), (2, 1), (2, 2)):
        raise ValueError(f"unsupported binning {binning!r}: use 1x1, 1x2, 2x1 or 2x2")
    if arm.nir_like and (bx, by) != (1, 1):
        raise ValueError(f"{arm.instrument} NIR detectors are not binned; use --binning 1x1")
    return bx, by


def _defects(rng, shape, gain_code):
    """Pixel response and defect map (bits: 1 low-sensitivity, 2 bad column, 4 hot, 8 in BPM)."""
    resp = rng.normal(1.0, 0.01, shape).astype(np.float32)
    flags = np.zeros(shape, np.uint8)
    low = rng.choice(resp.size, max(20, int(1e-4 * resp.size)), replace=False)
    resp.flat[low] = rng.uniform(0.05, 0.5, low.size)
    flags.flat[low] |= 1
    flags.flat[low[: low.size // 2]] |= 8               # half of them are known to the static map
    for col in rng.choice(np.arange(20, shape[1] - 20), 3, replace=False):
        r0 = int(rng.integers(0, shape[0] // 2))
        resp[r0:r0 + shape[0] // 3, col] *= 0.4
        flags[r0:r0 + shape[0] // 3, col] |= 2 | 8
    hot = rng.choice(resp.size, max(10, int(5e-5 * resp.size)), replace=False)
    flags.flat[hot] |= 4 | 8
    return resp, flags


def _cosmics(rng, shape, n):
    img = np.zeros(shape, np.float32)
    ys, xs = rng.integers(1, shape[0] - 1, n), rng.integers(1, shape[1] - 1, n)
    amp = rng.uniform(3e3, 4e4, n).astype(np.float32)
    img[ys, xs] += amp
    spread = rng.random(n) < 0.5                          # half hit a neighbour too
    img[ys[spread], xs[spread] + 1] += 0.4 * amp[spread]
    return img


def _embed(arm: Arm, sci_adu: np.ndarray, binx: int, biny: int, rng, offset: float) -> np.ndarray:
    """Science region into the full (binned) processing frame with pre/overscan, then raw orientation."""
    fy, fx = arm.full_shape[0] // biny, arm.full_shape[1] // binx
    r0, r1, c0, c1 = arm.science
    full = np.full((fy, fx), offset, np.float32)              # rng None: no noise (a layer to subtract)
    if rng is not None:
        full = (offset + rng.normal(0, arm.ron / arm.gain, (fy, fx))).astype(np.float32)
    full[r0 // biny:r0 // biny + sci_adu.shape[0], c0 // binx:c0 // binx + sci_adu.shape[1]] = sci_adu
    return np.rot90(full, -(arm.rotation // 90))


def _write_clean_copy(path: Path, raw: np.ndarray, cr: np.ndarray, header: fits.Header, arm: Arm, binx: int,
                      biny: int) -> Path:
    """The same raw frame less its cosmic rays (same photon and read noise), in raw_clean/: the
    product of these frames is what a perfect cosmic-ray rejection gives on the real ones."""
    clean = path.parent.parent / "raw_clean" / path.name
    clean.parent.mkdir(exist_ok=True)
    _write_raw(clean, raw - _embed(arm, cr / arm.gain, binx, biny, None, 0.0), header, arm)
    return clean


def _write_raw(path: Path, data: np.ndarray, header: fits.Header, arm: Arm) -> None:
    if arm.nir_like:
        out = data.astype(np.float32)
    else:
        out = np.clip(np.round(data), 0, 65535).astype(np.uint16)
    fits.PrimaryHDU(np.ascontiguousarray(out), header).writeto(path, overwrite=True)


def simulate_set(instrument: str, arm_name: str, out: str | Path, nflats: int = 5, binning: str = "1x1",
                 seed: int = 0, stress: Stress | str | None = None, mjd0: float | None = None,
                 clean_copy: bool = False, detector_seed: int | None = None, **stress_kw) -> dict:
    """Simulate one master-flat input set; returns a dict of written paths and the SOF path.
    ``stress``: a :class:`Stress`, its ``key=value,...`` text, or its fields as keywords.
    ``mjd0``: MJD-OBS of the first flat (default: 2025-10-12T11:14:44 plus ``seed`` ms).
    ``clean_copy``: also write every lamp flat without its cosmic rays (raw_clean/, the same noise;
    the other frames are unchanged) and their SOF (``written["sof_clean"]``). ``detector_seed``: the
    detector's pixel response and defects from their own seed (one detector over several nights, as in an
    archive whose static bad-pixel map is one per setup); by default from ``seed``."""
    arm = get_arm(instrument, arm_name)
    stress = stress if isinstance(stress, Stress) else Stress.parse(stress)
    if stress_kw:
        stress = Stress(**{**stress.__dict__, **stress_kw})
    if nflats < 1:
        raise ValueError("nflats must be >= 1")
    binx, biny = parse_binning(binning, arm)
    out = Path(out)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "calib").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    geo = make_geometry(arm, binx, biny, width_delta=stress.stale)
    sci_shape = (arm.science_shape[0] // biny, arm.science_shape[1] // binx)
    resp, defects = _defects(rng if detector_seed is None else np.random.default_rng(detector_seed), sci_shape,
                             arm.gain)
    hot_e = np.where(defects & 4, 3000.0 * arm.exptime / 10, 0).astype(np.float32)
    bias_adu = (BIAS_ADU + 2.0 * np.linspace(-1, 1, sci_shape[1])[None, :]).astype(np.float32)
    pedestal = (150.0 + 50.0 * np.linspace(0, 1, sci_shape[0])[:, None]).astype(np.float32) if arm.nir_like else 0
    if mjd0 is None:
        mjd0 = Time("2025-10-12T11:14:44").mjd + seed * 1e-3
    written = {"raw": [], "off": [], "stress": stress, "tilts": {}}
    level_f, tilt_f = stress.frame_factors(nflats)
    colour = tilt_pattern(sci_shape, arm.a_is_x).astype(np.float32) if stress.tilt else None
    truth_hdus = []
    mjd = mjd0
    lamps = ("D2", "QTH") if arm.arm == "UVB" else ("QTH",)
    for lamp in lamps:
        illum = illumination(geo, lamp_levels(arm, lamp))
        illum *= PEAK_ADU * arm.gain / illum.max()   # each lamp set exposed to ~25000 ADU peak
        scat = stress.scale_scatter(scattered(illum), illum)
        drifts = rng.uniform(0.98, 1.02, nflats) * level_f
        hits = np.zeros(sci_shape, np.uint8)
        for k in range(nflats):
            lamp_e = drifts[k] * (illum + scat) * resp
            if tilt_f[k]:
                lamp_e = lamp_e * (1 + tilt_f[k] * colour)
            e = lamp_e + hot_e + pedestal
            cr = _cosmics(rng, sci_shape, stress.n_cosmics(e.size))
            hits += cr > 0
            e = rng.poisson(np.maximum(e, 0)).astype(np.float32) + cr
            adu = e / arm.gain + (0 if arm.nir_like else bias_adu) + rng.normal(0, arm.ron / arm.gain, e.shape)
            raw = _embed(arm, adu, binx, biny, rng, 0 if arm.nir_like else BIAS_ADU)
            p = out / "raw" / f"{arm.instrument}_{arm.arm}_FLAT_{lamp}_{k + 1:02d}.fits"
            header = raw_flat_header(arm, binx, biny, mjd, lamp)
            _write_raw(p, raw, header, arm)
            written["raw"].append(p)
            if clean_copy:
                written.setdefault("raw_clean", []).append(_write_clean_copy(p, raw, cr, header, arm, binx, biny))
            mjd += (arm.exptime + 20) / 86400
        truth_hdus += [fits.ImageHDU(illum, name=f"ILLUM_{lamp}"), fits.ImageHDU(scat, name=f"SCATTER_{lamp}"),
                       fits.ImageHDU(hits, name=f"COSMICS_{lamp}")]
        written.setdefault("drifts", {})[lamp] = drifts.tolist()
        written["tilts"][lamp] = tilt_f.tolist()
    if arm.nir_like:  # lamp-off frames: the thermal/dark pedestal only
        for k in range(nflats):
            e = rng.poisson(pedestal + hot_e + np.zeros(sci_shape, np.float32)).astype(np.float32)
            raw = _embed(arm, e / arm.gain + rng.normal(0, arm.ron / arm.gain, e.shape), binx, biny, rng, 0)
            p = out / "raw" / f"{arm.instrument}_{arm.arm}_FLAT_OFF_{k + 1:02d}.fits"
            _write_raw(p, raw, raw_flat_header(arm, binx, biny, mjd, "QTH", lamp_on=False), arm)
            written["off"].append(p)
            mjd += (arm.exptime + 20) / 86400
    written.update(write_calibrations(out / "calib", arm, geo, bias_adu, defects, rng, mjd0, stress.stale))
    written["truth"] = write_truth(out / "truth.fits", arm, geo, resp, defects, truth_hdus, written)
    written["sof"] = write_sof(out, arm, binx, biny, mjd0, written)
    if clean_copy:
        text = written["sof"].read_text()
        for p, q in zip(written["raw"], written["raw_clean"]):
            text = text.replace(f"{p.resolve()} ", f"{q.resolve()} ")
        written["sof_clean"] = out / "clean.sof"
        written["sof_clean"].write_text(text)
    return written
