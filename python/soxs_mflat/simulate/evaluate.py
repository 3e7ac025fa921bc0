"""Accuracy of a master flat and order table against a simulated set's truth.

Every reference here comes from the simulator's truth (analytic geometry, noiseless illumination,
per-frame lamp levels and colour tilts), never from the product: the photon-noise limit is the
variance the simulator injected, and the in-order mask is a NumPy twin of the core's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from ..core import poly_eval
from .stress import tilt_pattern

BLOCK = 32          # px, side of the blocks of the block-averaged error


def _floats(h, key):
    return [float(v) for v in str(h[key]).split(",")] if key in h else None


def _truth(path: Path) -> dict:
    with fits.open(path, memmap=False) as t:
        h = t[0].header
        polys = t["EDGE_POLY"].data
        out = {"a_is_x": bool(h["AISX"]), "binx": int(h["BINX"]), "biny": int(h["BINY"]),
               "response": t["RESPONSE"].data.astype(np.float64), "defects": t["DEFECTS"].data.copy(),
               "orders": np.array(t["ORDERS"].data["order"]), "b_min": np.array(t["ORDERS"].data["b_min"]),
               "b_max": np.array(t["ORDERS"].data["b_max"]), "gain": float(h["GAIN"]), "ron": float(h["RON"]),
               "nir": str(h["ARM"]) == "NIR",
               "polys": {(float(l), s): np.array(c) for l, s, c in zip(polys["level"], polys["side"], polys["coeffs"])}}
        lamps = [x.name[6:] for x in t if x.name.startswith("ILLUM_")]
        out["illum"] = {k: t[f"ILLUM_{k}"].data.astype(np.float64) for k in lamps}
        out["scatter"] = {k: t[f"SCATTER_{k}"].data.astype(np.float64) for k in lamps}
        out["cosmics"] = {k: t[f"COSMICS_{k}"].data.copy() for k in lamps}
        out["drifts"] = {k: _floats(h, f"DRIFT{k}") for k in lamps}
        out["tilts"] = {k: _floats(h, f"TILT{k}") or [0.0] * len(out["drifts"][k]) for k in lamps}
    return out


def _lines(b0, b1, bin_b, lb):
    """Binned lines of an order's B range [b0, b1] (unbinned; binned line i is unbinned bin_b * i,
    soxspipe's convention). A range ending within max(3, bin_b) px of the detector edge runs off it."""
    snap = max(3.0, bin_b)
    first = 0 if b0 < snap else max(0, int(np.ceil(b0 / bin_b)))
    last = lb - 1 if b1 > bin_b * (lb - 1) - snap else min(lb - 1, int(np.floor(b1 / bin_b)))
    return np.arange(first, last + 1)


def in_order_numpy(shape, lower, upper, orders, b_min, b_max, a_is_x=True, bin_a=1, bin_b=1) -> np.ndarray:
    """NumPy twin of the core's in_order_mask: pixels whose A lies in [lower, upper] on the order's lines."""
    la, lb = (shape[1], shape[0]) if a_is_x else (shape[0], shape[1])
    m = np.zeros((lb, la), bool)
    a = np.arange(la)
    for n, b0, b1 in zip(orders, b_min, b_max):
        lines = _lines(b0, b1, bin_b, lb)
        ub = bin_b * lines.astype(float)
        lo, up = poly_eval(lower, n, ub) / bin_a, poly_eval(upper, n, ub) / bin_a
        m[lines] |= (a[None, :] >= np.ceil(lo)[:, None]) & (a[None, :] <= np.floor(up)[:, None])
    return m if a_is_x else m.T


def edge_rms(lower: np.ndarray, upper: np.ndarray, truth: dict, level: float = 0.2, margin: float = 50) -> dict:
    """Per order: RMS along the order of fitted minus true edges at the same level (unbinned px)."""
    out = {}
    for o, b0, b1 in zip(truth["orders"], truth["b_min"], truth["b_max"]):
        b = np.linspace(b0 + margin, b1 - margin, 300)
        d = [poly_eval(c, o, b) - poly_eval(truth["polys"][(level, side)], o, b)
             for c, side in ((lower, "lower"), (upper, "upper"))]
        out[int(o)] = (float(np.sqrt(np.mean(d[0] ** 2))), float(np.sqrt(np.mean(d[1] ** 2))))
    return out


def stack_truth(t: dict, lamp: str) -> tuple[np.ndarray, np.ndarray]:
    """(colour factor, relative noise) of the normalised stack of ``lamp``'s frames, per pixel.

    Frame k holds d_k (I + S) R (1 + t_k P) electrons (d: lamp level, P: the tilt pattern) plus
    read noise, hot pixels and, on NIR, a pedestal that its lamp-off partner (same noise) removes.
    The stack is the mean of frame_k / d_k; its colour factor is the mean of (1 + t_k P)."""
    d, tl = np.asarray(t["drifts"][lamp]), np.asarray(t["tilts"][lamp])
    shape = t["illum"][lamp].shape
    pat = tilt_pattern(shape, t["a_is_x"]) if tl.any() else np.zeros(shape)
    sig = (t["illum"][lamp] + t["scatter"][lamp]) * t["response"]
    extra = t["ron"] ** 2 * (2 if t["nir"] else 1)     # the NIR pedestal (<= 200 e-) is neglected
    mean, var = np.zeros(shape), np.zeros(shape)
    for dk, tk in zip(d, tl):
        mean += sig * (1 + tk * pat)
        var += (dk * sig * (1 + tk * pat) + extra) / dk ** 2
    colour = np.mean(1 + tl[:, None, None] * pat[None], axis=0) if tl.any() else np.ones(shape)
    return colour, np.sqrt(var) / np.maximum(mean, 1e-9)


def _order_masks(shape, t, lo, up, bin_a, bin_b):
    return {int(o): in_order_numpy(shape, lo, up, [o], [b0], [b1], t["a_is_x"], bin_a, bin_b)
            for o, b0, b1 in zip(t["orders"], t["b_min"], t["b_max"])}


def block_z(resid: np.ndarray, var: np.ndarray, sel: np.ndarray, min_pix: int = 256) -> np.ndarray:
    """Per BLOCK x BLOCK block with >= min_pix selected pixels: mean residual over its noise."""
    ny, nx = sel.shape
    idx = (np.arange(ny)[:, None] // BLOCK) * (nx // BLOCK + 1) + np.arange(nx)[None, :] // BLOCK
    n = np.bincount(idx[sel], minlength=idx.max() + 1)
    s = np.bincount(idx[sel], resid[sel], minlength=n.size)
    v = np.bincount(idx[sel], var[sel], minlength=n.size)
    ok = n >= min_pix
    return s[ok] / np.sqrt(v[ok])


def _reference(flux, qual, t, lamps, masks, inside):
    """Expected product (truth x response x one free scale per lamp), relative noise, the lamp of
    every pixel, the well-exposed good pixels (core) and the scale image."""
    expect_shape, noise = np.zeros(flux.shape), np.ones(flux.shape)
    part = np.full(flux.shape, "", dtype=object)
    for name in set(lamps.values()):
        colour, rel = stack_truth(t, name)
        m = np.zeros(flux.shape, bool)
        for o in t["orders"]:
            if lamps[int(o)] == name:
                m |= masks[int(o)]
        expect_shape[m] = (t["illum"][name] * colour)[m]
        noise[m] = rel[m]
        part[m] = name
    core = inside & (expect_shape > 0.25 * np.percentile(expect_shape[inside], 99)) & (qual == 0) & (t["defects"] == 0)
    scale = np.zeros(flux.shape)
    for name in set(lamps.values()):
        sel = core & (part == name)
        if sel.any():
            scale[part == name] = np.median(flux[sel] / (expect_shape[sel] * t["response"][sel]))
    return expect_shape * scale * t["response"], noise, part, core, scale


def background_error(bg_path, t: dict, lamp: str, scale: np.ndarray, inside: np.ndarray) -> float:
    """RMS (% of the truth's mean level) inside the orders of the background product minus the
    scattered light of the normalised stack (the same free scale as the flat)."""
    bg = fits.getdata(bg_path).astype(np.float64)
    colour, _ = stack_truth(t, lamp)
    true_bg = t["scatter"][lamp] * colour * scale
    sel = inside & (scale > 0)
    return float(100 * np.sqrt(np.mean((bg[sel] - true_bg[sel]) ** 2)) / np.mean(true_bg[sel]))


def _read(flat_path, order_tab_path):
    from ..ordertable import read_edges
    lower, upper = read_edges(order_tab_path)
    with fits.open(flat_path, memmap=False) as hl:
        return (hl[0].data.astype(np.float64), hl["QUAL"].data.astype(np.uint8),
                hl["ERRS"].data.astype(np.float64), lower, upper)


def _hit_pixels(t, lamps, part, core) -> np.ndarray:
    """Well-exposed good pixels that a cosmic ray hit in at least one frame of their lamp."""
    hits = sum((t["cosmics"][name] > 0) & (part == name) for name in set(lamps.values()))
    return core & hits.astype(bool)


def cosmics_vs_clean(flux, clean_path, t, lamps, part, core, expect, noise) -> dict:
    """Cosmic-ray residuals against the product of the same frames without their cosmics (the
    simulator's ``clean_copy``: same photon and read noise), in truth sigma: what the rejection
    left, without the clean frames' own noise, which a perfect product keeps too."""
    clean = fits.getdata(clean_path).astype(np.float64)
    hit = _hit_pixels(t, lamps, part, core)
    ref = np.zeros(flux.shape)
    for name in set(lamps.values()):
        sel = part == name
        use = core & sel & (clean > 0)
        if use.any():
            ref[sel] = clean[sel] * np.median(flux[use] / clean[use])   # the same free scale
    z = (flux[hit] - ref[hit]) / (noise[hit] * expect[hit])
    return {"max_z_cosmics_clean": float(np.abs(z).max()) if hit.any() else 0.0,
            "n_cosmics_over_5_clean": int((np.abs(z) > 5).sum())}


def evaluate(flat_path: Path, order_tab_path: Path, truth_path: Path, lamp: str | dict = "QTH",
             any_flag: bool = False, background: Path | None = None, clean: Path | None = None) -> dict:
    """Edge RMS per order, pixel-response RMS vs the stack's photon limit (from the truth), the
    block-averaged error vs its noise, cosmic residuals in truth sigma, the ERRS z-score, low-
    sensitivity recall / false rate, inter-order values and (with ``background``) the background
    product's error.

    ``lamp``: the lamp whose illumination the flat follows, or ``{order: lamp}`` for a stitched
    UVB flat (each lamp's part is normalised on its own). ``any_flag``: QUAL is 0/1 (soxspipe)
    rather than soxs-mflat's bits, so any flag counts as a low-sensitivity flag. ``clean``: the flat
    made from the set's ``clean_copy`` frames (adds :func:`cosmics_vs_clean`)."""
    t = _truth(Path(truth_path))
    flux, qual, err, lower, upper = _read(flat_path, order_tab_path)
    bin_a, bin_b = (t["binx"], t["biny"]) if t["a_is_x"] else (t["biny"], t["binx"])
    true_lo, true_up = t["polys"][(0.2, "lower")], t["polys"][(0.2, "upper")]
    masks = _order_masks(flux.shape, t, true_lo, true_up, bin_a, bin_b)
    inside = np.logical_or.reduce(list(masks.values()))
    fitted_inside = in_order_numpy(flux.shape, lower, upper, t["orders"], t["b_min"], t["b_max"], t["a_is_x"],
                                   bin_a, bin_b)
    lamps = lamp if isinstance(lamp, dict) else {int(o): lamp for o in t["orders"]}
    expect, noise, part, core, scale = _reference(flux, qual, t, lamps, masks, inside)
    resid = flux[core] / expect[core] - 1
    z = block_z(np.where(core, flux / np.where(core, expect, 1) - 1, 0), noise ** 2, core)
    with np.errstate(divide="ignore", invalid="ignore"):   # an ERRS of 0 in the orders gives inf: counted
        errs_z = (flux[core] - expect[core]) / err[core]
    out = {"edge_rms": edge_rms(lower, upper, t), "response_rms": float(np.std(resid)),
           "photon_limit": float(np.sqrt(np.mean(noise[core] ** 2))),
           "noise_rms": float(np.sqrt(np.mean((err[core] / flux[core]) ** 2))),
           "block_z_rms": float(np.sqrt(np.mean(z ** 2))), "block_z_max": float(np.abs(z).max()),
           "errs_z_std": float(np.std(errs_z)), "n_zero_errs": int((err[core] <= 0).sum()),
           "response_rms_per_order": {}}
    out["response_ratio"] = out["response_rms"] / out["photon_limit"]
    for o, m in masks.items():
        sel = m[core]
        if sel.sum() > 100:
            out["response_rms_per_order"][o] = (float(np.std(resid[sel])),
                                                float(np.sqrt(np.mean(noise[core][sel] ** 2))))
    out.update(_flags_and_cosmics(flux, qual, err, t, lamps, part, inside, core, expect, noise, any_flag))
    out["inter_order_values"] = np.unique(flux[~fitted_inside & ((qual & 8) == 0)]).tolist()[:5]   # 8: beyond range
    if clean is not None:
        out.update(cosmics_vs_clean(flux, clean, t, lamps, part, core, expect, noise))
    if background is not None:
        lamp_name = next(iter(set(lamps.values())))
        out["background_rms_pct"] = background_error(background, t, lamp_name, scale, inside)
    return out


def _flags_and_cosmics(flux, qual, err, t, lamps, part, inside, core, expect, noise, any_flag) -> dict:
    flagged = (qual != 0) if any_flag else (qual & 3).astype(bool)   # static map or low-sensitivity flag
    low = (t["defects"] & 1).astype(bool) & (t["response"] <= 0.5) & inside
    false = ((qual != 0) if any_flag else (qual & 2).astype(bool)) & (t["defects"] == 0)
    hit = _hit_pixels(t, lamps, part, core)
    z_cr = (flux[hit] - expect[hit]) / (noise[hit] * expect[hit])      # truth sigma
    with np.errstate(divide="ignore", invalid="ignore"):
        z_errs = (flux[hit] - expect[hit]) / err[hit]                      # the product's own ERRS
    return {"low_recall": float((flagged & low).sum() / max(low.sum(), 1)), "n_low": int(low.sum()),
            "false_rate": float(false[inside].sum() / inside.sum()), "n_cosmic_pixels": int(hit.sum()),
            "max_z_cosmics_truth": float(np.abs(z_cr).max()) if hit.any() else 0.0,
            "max_abs_z_cosmics": float(np.abs(z_errs).max()) if hit.any() else 0.0,
            "n_cosmics_over_5": int((np.abs(z_cr) > 5).sum())}
