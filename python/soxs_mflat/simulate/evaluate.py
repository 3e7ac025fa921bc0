"""Accuracy of a master flat and order table against a simulated set's truth."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from ..core import OrderLayout, in_order_mask, poly_eval


def _truth(path: Path) -> dict:
    with fits.open(path, memmap=False) as t:
        h = t[0].header
        polys = t["EDGE_POLY"].data
        out = {"a_is_x": bool(h["AISX"]), "binx": int(h["BINX"]), "biny": int(h["BINY"]),
               "response": t["RESPONSE"].data.astype(np.float64), "defects": t["DEFECTS"].data.copy(),
               "orders": np.array(t["ORDERS"].data["order"]), "b_min": np.array(t["ORDERS"].data["b_min"]),
               "b_max": np.array(t["ORDERS"].data["b_max"]), "gain": float(h["GAIN"]), "ron": float(h["RON"]),
               "polys": {(float(l), s): np.array(c) for l, s, c in zip(polys["level"], polys["side"], polys["coeffs"])}}
        lamps = [x.name[6:] for x in t if x.name.startswith("ILLUM_")]
        out["illum"] = {k: t[f"ILLUM_{k}"].data.astype(np.float64) for k in lamps}
        out["cosmics"] = {k: t[f"COSMICS_{k}"].data.copy() for k in lamps}
        out["drifts"] = {k: [float(v) for v in str(h[f"DRIFT{k}"]).split(",")] for k in lamps}
    return out


def edge_rms(lower: np.ndarray, upper: np.ndarray, truth: dict, level: float = 0.2, margin: float = 50) -> dict:
    """Per order: RMS along the order of fitted minus true edges at the same level (unbinned px)."""
    out = {}
    for o, b0, b1 in zip(truth["orders"], truth["b_min"], truth["b_max"]):
        b = np.linspace(b0 + margin, b1 - margin, 300)
        d = [poly_eval(c, o, b) - poly_eval(truth["polys"][(level, side)], o, b)
             for c, side in ((lower, "lower"), (upper, "upper"))]
        out[int(o)] = (float(np.sqrt(np.mean(d[0] ** 2))), float(np.sqrt(np.mean(d[1] ** 2))))
    return out


def evaluate(flat_path: Path, order_tab_path: Path, truth_path: Path, lamp: str | dict = "QTH",
             any_flag: bool = False) -> dict:
    """Edge RMS per order, pixel-response RMS vs the stack's noise, low-sensitivity recall / false rate,
    inter-order values and the largest residual (sigma) on pixels that cosmic rays hit.

    ``lamp``: the lamp whose illumination the flat follows, or ``{order: lamp}`` for a stitched
    UVB flat (each lamp's part is normalised on its own). ``any_flag``: QUAL is 0/1 (soxspipe)
    rather than soxs-mflat's bits, so any flag counts as a low-sensitivity flag."""
    from ..ordertable import read_edges
    t = _truth(Path(truth_path))
    lower, upper = read_edges(order_tab_path)
    with fits.open(flat_path, memmap=False) as hl:
        flux, qual, err = (hl[0].data.astype(np.float64), hl["QUAL"].data.astype(np.uint8),
                           hl["ERRS"].data.astype(np.float64))
    bin_a, bin_b = (t["binx"], t["biny"]) if t["a_is_x"] else (t["biny"], t["binx"])
    lay = OrderLayout(t["orders"], t["b_min"], t["b_max"], t["a_is_x"], bin_a, bin_b)
    true_lo, true_up = t["polys"][(0.2, "lower")], t["polys"][(0.2, "upper")]
    inside = in_order_mask(flux.shape, true_lo, true_up, lay).astype(bool)
    fitted_inside = in_order_mask(flux.shape, lower, upper, lay).astype(bool)
    lamps = lamp if isinstance(lamp, dict) else {int(o): lamp for o in t["orders"]}
    illum = np.zeros(flux.shape)
    part = np.full(flux.shape, "", dtype=object)
    for o, b0, b1 in zip(t["orders"], t["b_min"], t["b_max"]):
        one = OrderLayout([o], [b0], [b1], t["a_is_x"], bin_a, bin_b)
        m = in_order_mask(flux.shape, true_lo, true_up, one).astype(bool)
        illum[m] = t["illum"][lamps[int(o)]][m]
        part[m] = lamps[int(o)]
    core = inside & (illum > 0.25 * np.percentile(illum[inside], 99)) & (qual == 0) & (t["defects"] == 0)
    scale = np.zeros(flux.shape)
    for name in set(lamps.values()):   # each lamp's part has its own normalisation
        sel = core & (part == name)
        if sel.any():
            scale[part == name] = np.median(flux[sel] / (illum[sel] * t["response"][sel]))
    ratio = flux[core] / (illum[core] * scale[core])
    resid = ratio - t["response"][core]
    rel_err = err[core] / flux[core]
    low = (t["defects"] & 1).astype(bool) & (t["response"] <= 0.5) & inside
    flagged = (qual != 0) if any_flag else (qual & 3).astype(bool)   # static map or low-sensitivity flag
    false = ((qual != 0) if any_flag else (qual & 2).astype(bool)) & (t["defects"] == 0)
    expect = illum * t["response"] * scale
    hits = sum((t["cosmics"][name] > 0) & (part == name) for name in set(lamps.values()))
    hit = core & hits.astype(bool)
    z_cr = (flux[hit] - expect[hit]) / err[hit]
    per_order = {}
    for o in t["orders"]:
        one = OrderLayout([o], [t["b_min"][list(t["orders"]).index(o)]], [t["b_max"][list(t["orders"]).index(o)]],
                          t["a_is_x"], bin_a, bin_b)
        sel = in_order_mask(flux.shape, true_lo, true_up, one).astype(bool)[core]
        if sel.sum() > 100:
            per_order[int(o)] = (float(np.std(resid[sel])), float(np.sqrt(np.mean(rel_err[sel] ** 2))))
    return {
        "edge_rms": edge_rms(lower, upper, t),
        "response_rms_per_order": per_order,
        "response_rms": float(np.std(resid)),
        "noise_rms": float(np.sqrt(np.mean(rel_err ** 2))),
        "low_recall": float((flagged & low).sum() / max(low.sum(), 1)),
        "n_low": int(low.sum()),
        "false_rate": float(false[inside].sum() / inside.sum()),
        "inter_order_values": np.unique(flux[~fitted_inside & ((qual & 8) == 0)]).tolist()[:5],   # 8: beyond range
        "n_cosmic_pixels": int(hit.sum()),
        "max_abs_z_cosmics": float(np.abs(z_cr).max()) if hit.any() else 0.0,
    }
