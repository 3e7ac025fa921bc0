"""Demo: simulate an X-shooter VIS flat set and run the master-flat engine on it.

    python -m soxs_mflat.demo [OUTDIR]

Prints the QC values and the accuracy of the fitted order edges against the simulator's truth.
(The full recipe with FITS products and the esorex front end are separate steps.)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from .core import OrderLayout, master_flat, poly_eval
from .prepare import prepare_raw
from .simulate.run import simulate_set


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:] or ["demo-out"])[0])
    t0 = time.perf_counter()
    w = simulate_set("xshooter", "vis", out, nflats=5, seed=0)
    print(f"simulated 5 XSH VIS flats in {time.perf_counter() - t0:.1f} s -> {w['sof']}")
    bias = fits.getdata(w["bias"])
    frames = [prepare_raw(p)[0] - bias for p in w["raw"]]
    errors = [np.sqrt(np.maximum(f, 0) + 5.3**2).astype(np.float32) for f in frames]
    with fits.open(w["order_tab"][0]) as tab, fits.open(w["truth"]) as truth:
        row, meta = tab[1].data[0], tab[2].data
        dn, db = int(row["degorder_cent"]), int(row["degy_cent"])
        centre = np.array([[row[f"cent_{i}{j}"] for j in range(db + 1)] for i in range(dn + 1)])
        polys = truth["EDGE_POLY"].data
        true_lo = polys["coeffs"][(polys["level"] == 0.2) & (polys["side"] == "lower")][0]
        true_up = polys["coeffs"][(polys["level"] == 0.2) & (polys["side"] == "upper")][0]
        bpm = fits.getdata(w["bpm"]) != 0
    layout = OrderLayout(meta["order"], meta["ymin"], meta["ymax"])
    params = dict(stacked_clipping_sigma=5, stacked_clipping_iterations=5, centre_order_window=20,
                  slice_length_for_edge_detection=90, order_deg=6, disp_axis_deg=4)
    t1 = time.perf_counter()
    r = master_flat(frames, centre, layout, errors=errors, bpm=bpm, params=params)
    print(f"master flat computed in {time.perf_counter() - t1:.2f} s")
    for k, v in r["qc"].items():
        print(f"  QC {k:22s} {v:.6g}")
    for side, true in (("lower", true_lo), ("upper", true_up)):
        rms = []
        for o, b0, b1 in zip(meta["order"], meta["ymin"], meta["ymax"]):
            b = np.linspace(b0 + 50, b1 - 50, 200)
            rms.append(np.sqrt(np.mean((poly_eval(r["edges"][side]["coeffs"], o, b) - poly_eval(true, o, b)) ** 2)))
        print(f"  {side} edge vs truth (20 % level): worst-order RMS {max(rms):.3f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
