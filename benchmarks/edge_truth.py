"""Fitted order edges against the simulator's truth at the 20 % level, per arm and binning (docs/benchmarks.md,
"Edges of binned orders"): the mean of (fit - truth) of the lower and upper edges over all orders, the worst
order's RMS (unbinned px) and the QC X RES SD, for one simulated set each (3 flats, seed 3).

    python benchmarks/edge_truth.py [--work /tmp/soxs-edges]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import soxs_mflat.simulate.evaluate as E
from soxs_mflat.recipe import run_mflat
from soxs_mflat.simulate.run import simulate_set

SETS = [("soxs", "vis", "1x1"), ("soxs", "vis", "2x2"), ("soxs", "vis", "1x2"), ("soxs", "nir", "1x1"),
        ("xshooter", "vis", "2x2"), ("xshooter", "nir", "1x1"), ("xshooter", "uvb", "1x1")]


def one(root: Path, inst: str, arm: str, binning: str) -> str:
    d = root / f"{inst}{arm}{binning}"
    if not (d / "truth.fits").exists():
        simulate_set(inst, arm, d, nflats=3, seed=3, binning=binning)
    r = run_mflat(next(d.glob("*.sof")), d / "out", plots=False, overwrite=True)
    t = E._truth(d / "truth.fits")
    _, _, _, lower, upper = E._read(r.products["MFLAT"], r.products["ORDER LOC"])
    ml, mu, worst = [], [], 0.0
    for o, b0, b1 in zip(t["orders"], t["b_min"], t["b_max"]):
        b = np.linspace(b0 + 50, b1 - 50, 300)
        dl = E.poly_eval(lower, o, b) - E.poly_eval(t["polys"][(0.2, "lower")], o, b)
        du = E.poly_eval(upper, o, b) - E.poly_eval(t["polys"][(0.2, "upper")], o, b)
        ml.append(dl.mean())
        mu.append(du.mean())
        worst = max(worst, np.sqrt(np.mean(dl ** 2)), np.sqrt(np.mean(du ** 2)))
    sd = next(q.value for q in r.qc if q.name == "X RES SD")
    return f"| {inst} {arm} {binning} | {np.mean(ml):+.4f} | {np.mean(mu):+.4f} | {worst:.4f} | {sd:.4f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/soxs-edges"))
    args = ap.parse_args()
    print("| set | lower: fit - truth (px) | upper: fit - truth (px) | worst order RMS (px) | X RES SD |")
    print("|---|---|---|---|---|")
    for inst, arm, binning in SETS:
        print(one(args.work, inst, arm, binning), flush=True)


if __name__ == "__main__":
    main()
