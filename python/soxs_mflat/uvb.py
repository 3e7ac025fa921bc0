"""X-shooter UVB: D2- and QTH-lamp master flats, the crossover order, scaling and stitching."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from astropy.io import fits

from . import core
from .errors import ProcessingError
from .qc import QC_DEFS, qc_table
from .recipe import check_writable, process_lamp, product_header, product_paths, write_fits, write_lamp_products

log = logging.getLogger("soxs_mflat")
UVB_QC = {"CROSSOVER ORDER": ("", "lowest order taken from the D2-lamp master"),
          "D2 SCALE": ("", "factor applied to the D2 master at the crossover order")}
STITCH_OFFSET = 5.0     # px beyond the crossover order's edge (spec)


def choose_crossover(orders, slices, used_d, used_q, elec_d, elec_q, min_frac: float = 0.5) -> int:
    """Lowest order c taken from D2 (D2 supplies c and every higher order, QTH the rest).

    c must have usable data in both lamps (edges found in >= min_frac of its slices, positive flux),
    so that the scale can be measured there; among such orders the split maximises the summed log
    electron flux of the lamp that supplies each order."""
    orders = np.asarray(orders)
    idx = np.argsort(orders)
    o = orders[idx]
    ed = np.maximum(np.asarray(elec_d, float)[idx], 1e-30)
    eq = np.maximum(np.asarray(elec_q, float)[idx], 1e-30)
    sl = np.asarray(slices)[idx]
    ok = (np.asarray(used_d)[idx] >= min_frac * sl) & (np.asarray(used_q)[idx] >= min_frac * sl) & \
         (np.asarray(elec_d, float)[idx] > 0) & (np.asarray(elec_q, float)[idx] > 0)
    if not ok.any():
        raise ProcessingError("no UVB order has usable flux and detected edges in both the D2 and the QTH master "
                              f"(edges used D2 {list(used_d)}, QTH {list(used_q)} of {list(slices)} slices)")
    score = [np.log(eq[:k]).sum() + np.log(ed[k:]).sum() if ok[k] else -np.inf for k in range(o.size)]
    return int(o[int(np.argmax(score))])


def stitch_masters(d: dict, q: dict, crossover: int, layout: core.OrderLayout, scale: float) -> dict:
    """Stitch background-subtracted stacks and the raw stacks (for edge re-detection) of D2 and QTH."""
    lo, up = d["edges"]["lower"]["coeffs"], d["edges"]["upper"]["coeffs"]
    d_pre = d["stacked"] - (d["background"] if d["background"] is not None else 0)
    q_pre = q["stacked"] - (q["background"] if q["background"] is not None else 0)
    final = core.stitch({"flux": d_pre, "error": d["error"], "quality": d["quality"]},
                        {"flux": q_pre, "error": q["error"], "quality": q["quality"]}, lo, up, crossover, layout,
                        STITCH_OFFSET, scale)
    raw = core.stitch({"flux": d["stacked"], "error": d["error"], "quality": d["quality"]},
                      {"flux": q["stacked"], "error": q["error"], "quality": q["quality"]}, lo, up, crossover, layout,
                      STITCH_OFFSET, scale)
    final["stacked"] = raw["flux"]
    return final


def refit_edges(flat: np.ndarray, error: np.ndarray, quality: np.ndarray, centre: np.ndarray,
                layout: core.OrderLayout, p: dict) -> dict:
    pts = core.detect_edges(flat, centre, layout, error=error, mask=quality, threads=p["threads"],
                            slice_length=p["slice_length_for_edge_detection"],
                            slice_width=p["slice_width_for_edge_detection"],
                            min_pct=p["min_percentage_threshold_for_edge_detection"],
                            max_pct=p["max_percentage_threshold_for_edge_detection"], min_snr=p["edge_min_snr"])
    if len(pts["b"]) == 0:
        raise ProcessingError("no order edges found on the stitched UVB flat")
    fits_ = {k: core.fit_global_poly(pts["order"], pts["b"], pts[k], p["order_deg"], p["disp_axis_deg"],
                                     p["poly_fitting_residual_clipping_sigma"], p["poly_clipping_iteration_limit"])
             for k in ("lower", "upper")}
    kept = ~(fits_["lower"]["clipped"].astype(bool) | fits_["upper"]["clipped"].astype(bool))
    used = [int(np.sum(kept & (pts["order"] == o))) for o in layout.orders]
    return {"points": pts, "lower": fits_["lower"], "upper": fits_["upper"], "n_used_per_order": np.array(used)}


def final_qc(flux, quality, edges, layout, q_res, crossover, scale) -> dict:
    res = np.concatenate([edges[k]["residuals"][~edges[k]["clipped"].astype(bool)] for k in ("lower", "upper")])
    inside = core.in_order_mask(flux.shape, edges["lower"]["coeffs"], edges["upper"]["coeffs"], layout).astype(bool)
    good = inside & (quality == 0)
    qc = {k: q_res["qc"][k] for k in ("ORDEXP10", "ORDEXP50", "ORDEXP90")}
    qc.update({"X RES MIN": float(res.min()), "X RES MAX": float(res.max()), "X RES SD": float(res.std()),
               "N LOW SENS": int(np.count_nonzero(quality & 2)), "COLDPIX NUM": int(np.count_nonzero(quality)),
               "COLDPIX FRAC": float(np.count_nonzero(quality) / quality.size),
               "INNER ORDER PIX MEAN": float(flux[good].mean()), "INNER ORDER PIX SUM": float(flux[good].sum()),
               "CROSSOVER ORDER": int(crossover), "D2 SCALE": float(scale)})
    return qc, inside


def run_uvb(s, p: dict, outdir: Path, overwrite: bool, say):
    arm = s.arm.arm
    tags = {"DFLAT": " DLAMP", "QFLAT": " QLAMP"}
    paths = {}
    for tag in ("", *tags.values()):
        paths.update(product_paths(outdir, arm, tag))
    paths = {k: v for k, v in paths.items() if p["subtract_background"] or "BKGROUND" not in k}
    paths = {k: v for k, v in paths.items() if not (k.startswith("BKGROUND") and k in ("BKGROUND", "BKGROUND FITS"))}
    check_writable(paths.values(), overwrite)
    runs = {}
    for lamp in ("DFLAT", "QFLAT"):
        runs[lamp] = process_lamp(s, lamp, p, say)
    (d, ct_d, layout, det_d), (q, ct_q, _, det_q) = runs["DFLAT"], runs["QFLAT"]
    elec = {k: np.asarray(r[0]["order_median_flux"]) * float(np.mean(r[0]["norm_second"])) for k, r in runs.items()}
    slices = d["edges"]["points"]["n_slices_per_order"]
    c = choose_crossover(layout.orders, slices, d["edges"]["n_used_per_order"], q["edges"]["n_used_per_order"],
                         elec["DFLAT"], elec["QFLAT"])
    k = list(layout.orders).index(c)
    scale = float(q["order_median_flux"][k] / d["order_median_flux"][k]) if p["scale_d2_to_qth"] else 1.0
    log.info("UVB crossover order %d, D2 scale %.4f", c, scale)
    say(f"stitching D2 (orders >= {c}, x {scale:.4f}) and QTH masters; re-detecting edges")
    st = stitch_masters(d, q, c, layout, scale)
    edges = refit_edges(st["stacked"], st["error"], st["quality"], ct_q.centre, layout, p)
    values, inside = final_qc(st["flux"], st["quality"], edges, layout, q, c, scale)
    flux, err = st["flux"].copy(), st["error"].copy()
    flux[~inside], err[~inside] = 1.0, 0.0
    qc = qc_table(values, s.arm.instrument, arm, UVB_QC)
    say("writing products")
    outdir.mkdir(parents=True, exist_ok=True)
    products = {}
    for lamp, tag in tags.items():
        res, ct, lay, det = runs[lamp]
        lamp_qc = qc_table(res["qc"], s.arm.instrument, arm)
        products.update(write_lamp_products(s, lamp, p, res, ct, lay, det, lamp_qc, paths, overwrite, tag))
    final = {"flux": flux, "error": err, "quality": st["quality"], "edges": edges, "background": None,
             "stacked": st["stacked"]}
    det_all = type(det_q)(det_d.data + det_q.data, [], det_q.mask, det_d.frames + det_q.frames)
    products.update(write_lamp_products(s, "QFLAT", p, final, ct_q, layout, det_all, qc, paths, overwrite, "",
                                        cals_extra=[s.order_tabs["DFLAT"]]))
    return products, qc
