"""Calibration products of a simulated set: master bias, order-centre table(s), bad-pixel map,
spectral-format table, the SOF, and the truth file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from ..core import fit_global_poly, poly_eval
from ..instruments import Arm
from .headers import detector_cards, product_header
from .scene import LEVELS, Geometry, edge_points

CENTRE_DEGREES = {("SOXS", "VIS"): (3, 5), ("SOXS", "NIR"): (6, 5), ("XSHOOTER", "UVB"): (6, 5),
                  ("XSHOOTER", "VIS"): (6, 4), ("XSHOOTER", "NIR"): (6, 4)}


def master_bias(path: Path, arm: Arm, geo: Geometry, bias_adu: np.ndarray, mjd: float) -> Path:
    h = product_header(arm, geo.binx, geo.biny, mjd, "MASTER_BIAS", "IMAGE")
    h["BUNIT"] = "electron"
    flux = fits.PrimaryHDU((bias_adu * arm.gain * np.ones((1, 1))).astype(np.float32)
                           * np.ones((arm.science_shape[0] // geo.biny, 1), np.float32), h)
    flux.header["EXTNAME"] = "FLUX"
    qual = fits.ImageHDU(np.zeros(flux.data.shape, np.uint8), name="QUAL")
    errs = fits.ImageHDU(np.full(flux.data.shape, arm.ron / np.sqrt(10), np.float32), name="ERRS")
    errs.header["UTYPE"] = "StdDevUncertainty"
    fits.HDUList([flux, qual, errs]).writeto(path, overwrite=True, checksum=True)
    return path


def order_centre_table(path: Path, arm: Arm, geo: Geometry, rng, mjd: float, lamp: str | None,
                       stale: float = 0.0) -> Path:
    """soxspipe order-centre table, fitted to noisy sampled traces (so not exact). ``stale`` (px): the
    table predates the flats, its centres tilted by up to this much at the ends of the B range."""
    dn, db = CENTRE_DEGREES[(arm.instrument, arm.arm)]
    n, b = [], []
    for k, o in enumerate(arm.orders):
        bb = np.arange(geo.b_min[k], geo.b_max[k], 9.0)
        n += [o] * bb.size
        b += list(bb)
    n, b = np.asarray(n, float), np.asarray(b)
    half_b = 0.5 * ((arm.science_shape[0] if arm.a_is_x else arm.science_shape[1]) - 1)
    a = poly_eval(geo.centre, n, b) + stale * (b - half_b) / half_b + rng.normal(0, 0.03, n.size)
    c = fit_global_poly(n, b, a, dn, db, clip_sigma=5, max_iters=2)["coeffs"]
    axis_b = "y" if arm.a_is_x else "x"
    axis_a = "x" if arm.a_is_x else "y"
    row = {"degorder_cent": [dn], f"deg{axis_b}_cent": [db]}
    row.update({f"cent_{i}{j}": [c[i, j]] for i in range(dn + 1) for j in range(db + 1)})
    # soxspipe evaluates std_ij with the cent degrees, so write the full set (a constant sigma)
    row.update({"degorder_std": [dn], f"deg{axis_b}_std": [db]})
    row.update({f"std_{i}{j}": [arm.sigma if i == j == 0 else 0.0] for i in range(dn + 1) for j in range(db + 1)})
    coeffs = Table(row)
    amin = [float(poly_eval(c, o, np.array([geo.b_min[k], geo.b_max[k]])).min()) for k, o in enumerate(arm.orders)]
    amax = [float(poly_eval(c, o, np.array([geo.b_min[k], geo.b_max[k]])).max()) for k, o in enumerate(arm.orders)]
    meta = Table({"order": list(arm.orders), f"{axis_b}min": geo.b_min, f"{axis_b}max": geo.b_max,
                  f"{axis_a}min": amin, f"{axis_a}max": amax})
    h = product_header(arm, geo.binx, geo.biny, mjd, "ORDER_TAB", "ECHELLE,SLIT")   # the binning of the frames it came from
    if lamp:
        h["OBJECT"] = f"LAMP,{'D' if lamp == 'D2' else 'Q'}ORDERDEF"
    fits.HDUList([fits.PrimaryHDU(header=h), fits.table_to_hdu(coeffs), fits.table_to_hdu(meta)]).writeto(
        path, overwrite=True, checksum=True)
    return path


def bad_pixel_map(path: Path, arm: Arm, geo: Geometry, defects: np.ndarray) -> Path:
    bad = 128 if arm.instrument == "XSHOOTER" else 1
    h = fits.Header()
    h["INSTRUME"] = arm.instrument
    h["HIERARCH ESO SEQ ARM"] = arm.arm
    h["HIERARCH ESO PRO CATG"] = f"BP_MAP_RP_{arm.arm}"
    for k, v in detector_cards(arm, geo.binx, geo.biny).items():
        h[k] = v
    fits.PrimaryHDU(np.where(defects & 8, bad, 0).astype(np.float32), h).writeto(path, overwrite=True)
    return path


def spectral_format(path: Path, arm: Arm) -> Path:
    o = np.asarray(arm.orders)
    wl = 5000.0 / o * (100 if arm.instrument == "XSHOOTER" else 10)  # nominal, not used by mflat
    cols = {"ORDER": o, "WLMINFUL": wl * 0.96, "WLMIN": wl * 0.98, "WLMAX": wl * 1.02, "WLMAXFUL": wl * 1.04}
    if arm.arm == "UVB":
        cols["LAMP"] = np.where(o >= 21, "D2", "QTH")
    h = fits.Header()
    h["HIERARCH ESO PRO CATG"] = f"SPECTRAL_FORMAT_TAB_{arm.arm}"
    fits.HDUList([fits.PrimaryHDU(header=h), fits.table_to_hdu(Table(cols))]).writeto(path, overwrite=True)
    return path


def write_calibrations(cdir: Path, arm: Arm, geo: Geometry, bias_adu, defects, rng, mjd: float,
                       stale: float = 0.0) -> dict:
    w = {"order_tab": []}
    if not arm.nir_like:
        w["bias"] = master_bias(cdir / f"MASTER_BIAS_{arm.arm}.fits", arm, geo, bias_adu, mjd - 0.1)
    lamps = ("D2", "QTH") if arm.arm == "UVB" else (None,)
    for lamp in lamps:
        name = f"ORDER_TAB_{arm.arm}" + (f"_{lamp}" if lamp else "") + ".fits"
        w["order_tab"].append(order_centre_table(cdir / name, arm, geo, rng, mjd - 0.05, lamp, stale))
    w["bpm"] = bad_pixel_map(cdir / f"BP_MAP_RP_{arm.arm}_{geo.binx}x{geo.biny}.fits", arm, geo, defects)
    w["spectral_format"] = spectral_format(cdir / f"SPECTRAL_FORMAT_TAB_{arm.arm}.fits", arm)
    return w


def sof_name(arm: Arm, binx: int, biny: int, mjd: float) -> str:
    date = Time(mjd, format="mjd").strftime("%Y%m%dT%H%M%S")
    speed = "1" if arm.instrument == "SOXS" else "FAST"
    lamp = "DQ" if arm.arm == "UVB" else "QTH"
    name = f"{date}_{arm.arm}_{binx}X{biny}_{speed}_MFLAT_{lamp}_{arm.slit}_{arm.exptime}S_{arm.instrument}"
    name = name.upper().replace(".", "_")
    while "__" in name:
        name = name.replace("__", "_")
    return name + ".sof"


def write_sof(out: Path, arm: Arm, binx: int, biny: int, mjd: float, w: dict) -> Path:
    lines = []
    for p in w["raw"]:
        lines.append(f"{p.resolve()} {fits.getval(p, 'HIERARCH ESO DPR TYPE')}_{arm.arm}")
    for p in w["off"]:
        lines.append(f"{p.resolve()} {fits.getval(p, 'HIERARCH ESO DPR TYPE')}_OFF_{arm.arm}")
    if "bias" in w:
        lines.append(f"{w['bias'].resolve()} MASTER_BIAS_{arm.arm}")
    for p in w["order_tab"]:
        lines.append(f"{p.resolve()} ORDER_TAB_{arm.arm}")
    # soxspipe ships its own static maps: its SOF (same name, in soxspipe/) leaves ours out
    (out / "soxspipe").mkdir(exist_ok=True)
    (out / "soxspipe" / sof_name(arm, binx, biny, mjd)).write_text("\n".join(lines) + "\n")
    lines.append(f"{w['bpm'].resolve()} BP_MAP_RP_{arm.arm}")
    path = out / sof_name(arm, binx, biny, mjd)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_truth(path: Path, arm: Arm, geo: Geometry, resp, defects, hdus: list, w: dict) -> Path:
    h = fits.Header()
    h["INSTRUME"], h["ARM"] = arm.instrument, arm.arm
    h["GAIN"], h["RON"], h["BINX"], h["BINY"] = arm.gain, arm.ron, geo.binx, geo.biny
    h["AISX"] = (arm.a_is_x, "cross-dispersion (fitted) axis is x")
    h["SIGMA"] = (arm.sigma, "Gaussian blur of the slit image, px")
    h["COORDS"] = ("BIN*I", "binned px i = unbinned bin*i (soxspipe)")
    for lamp, d in w["drifts"].items():
        h[f"DRIFT{lamp}"] = (",".join(f"{v:.5f}" for v in d), "lamp level per frame")
        h[f"TILT{lamp}"] = (",".join(f"{v:.5f}" for v in w["tilts"][lamp]), "colour tilt per frame")
    s = w["stress"]
    h["STSCAT"], h["STLEVEL"], h["STTILT"] = (s.scatter, "stress: scattered fraction"), s.level, s.tilt
    h["STCOSMIC"], h["STSTALE"] = (s.cosmics, "stress: cosmics per frame (-1 nominal)"), (s.stale, "stress: px")
    poly_rows = {"level": [], "side": [], "coeffs": []}
    for lev in LEVELS:
        for side in ("lower", "upper"):
            poly_rows["level"].append(lev)
            poly_rows["side"].append(side)
            poly_rows["coeffs"].append(geo.edge_poly(lev, side))
    polys = Table(poly_rows)
    polys.meta["COMMENT"] = "A(n, B) = sum c[i, j] n^i B^j, unbinned processing-frame px; binned i = bin*i"
    spans = Table({"order": list(arm.orders), "b_min": geo.b_min, "b_max": geo.b_max})
    hl = fits.HDUList([fits.PrimaryHDU(header=h), *hdus, fits.ImageHDU(resp, name="RESPONSE"),
                       fits.ImageHDU(defects, name="DEFECTS"), fits.ImageHDU(geo.centre, name="CENTRE"),
                       fits.table_to_hdu(polys), fits.table_to_hdu(Table(edge_points(geo))),
                       fits.table_to_hdu(spans)])
    hl[-3].name, hl[-2].name, hl[-1].name = "EDGE_POLY", "EDGE_POINTS", "ORDERS"
    hl.writeto(path, overwrite=True)
    return path
