"""X-shooter UVB: D2- and QTH-lamp master flats and their combination (done by the C++ core:
crossover order, scaling, stitch line, edges re-fitted on the stitched stack, QC)."""
from __future__ import annotations

import logging
from pathlib import Path

from . import _core
from .contract import section
from .errors import convert_cpp_errors
from .qc import log_failures, qc_table
from .recipe import check_writable, process_lamp, product_paths, without_plots, write_lamp_products

log = logging.getLogger("soxs_mflat")


def choose_crossover(orders, slices, used_d, used_q, elec_d, elec_q, min_frac: float = 0.5) -> int:
    """Lowest order taken from D2: usable in both lamps (edges in >= min_frac of its slices, positive
    flux), the split maximising the summed log electron flux of the supplying lamp (C++ core)."""
    with convert_cpp_errors("UVB"):
        return _core.choose_crossover([int(o) for o in orders], [int(v) for v in slices], [int(v) for v in used_d],
                                      [int(v) for v in used_q], [float(v) for v in elec_d],
                                      [float(v) for v in elec_q], min_frac)


def combine(d: dict, q: dict, centre_q, layout, p: dict) -> dict:
    with convert_cpp_errors("UVB"):
        return _core.combine_uvb(d, q, centre_q, *layout.args(), dict(p))


def run_uvb(s, p: dict, ranges: dict, outdir: Path, overwrite: bool, say, plots: bool = True):
    """Products, the final QC table and the per-lamp QC tables."""
    arm = s.arm.arm
    tags = dict(zip(("DFLAT", "QFLAT"), (f" {t}" for t in section("products")["uvb_lamp_tags"])))   # D2, QTH
    paths = {}
    for tag in ("", *tags.values()):
        paths.update(product_paths(outdir, arm, tag))
    drop = ("BKGROUND", "BKGROUND FITS") if p["subtract_background"] else tuple(k for k in paths if "BKGROUND" in k)
    paths = without_plots({k: v for k, v in paths.items() if k not in drop}, plots)
    check_writable(paths.values(), overwrite)
    runs = {lamp: process_lamp(s, lamp, p, say) for lamp in ("DFLAT", "QFLAT")}
    (d, _, layout, flats_d), (q, ct_q, _, flats_q) = runs["DFLAT"], runs["QFLAT"]
    say("stitching the D2 and QTH masters; re-detecting edges")
    final = combine(d, q, ct_q.centre, layout, p)
    log.info("UVB crossover order %d, D2 scale %.5g", final["crossover"], final["scale"])
    values = dict(final["qc"], **{"CROSSOVER ORDER": final["crossover"], "D2 SCALE": final["scale"]})
    qc = qc_table(values, ranges)
    # the ranges describe the final flat: a D2 master alone is not normalised to 1 (mean ~48 on the D2 set)
    per_lamp = {tag: qc_table(runs[lamp][0]["qc"], {}) for lamp, tag in tags.items()}
    log_failures(qc)
    say("writing products")
    outdir.mkdir(parents=True, exist_ok=True)
    products = {}
    for lamp, tag in tags.items():
        res, ct, lay, flats = runs[lamp]
        products.update(write_lamp_products(s, lamp, p, res, ct, lay, flats, per_lamp[tag], paths, overwrite, tag))
    products.update(write_lamp_products(s, "QFLAT", p, final, ct_q, layout, flats_d + flats_q, qc, paths, overwrite, "",
                                        cals_extra=[s.order_tabs["DFLAT"]]))
    return products, qc, per_lamp
