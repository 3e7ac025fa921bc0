"""Flat-field fidelity per arm and stress, against the simulator's truth (issue 12's figures).

    python benchmarks/fidelity.py [--work /tmp/soxs-fidelity] [--arms soxs/vis,xshooter/uvb]
                                  [--stresses nominal,stress,bin2] [--json out.json]

Stresses: ``nominal`` (the default set), ``stress`` (scatter=0.02, level=0.08, tilt=0.04,
cosmics=2000, stale=1 together), ``bin2`` (nominal, 2x2; CCD arms only). For each: the pixel-
response RMS over the stack's photon limit, the RMS and max of the 32-px block z-score, the worst
cosmic residual in truth sigma (and how many exceed 5), the same against the product of the set's
frames without their cosmics (``clean_copy``: what the rejection left, without the noise that a perfect
product keeps too), the ERRS z-score std, the background error
(% RMS of its level in the orders), the worst edge RMS (px) and low-sensitivity recall / false rate.
X-shooter UVB is scored per lamp (its D2 and QTH masters) and stitched (background: not scored).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from astropy.io import fits

from soxs_mflat.recipe import run_mflat
from soxs_mflat.simulate.evaluate import evaluate
from soxs_mflat.simulate.run import simulate_set

ARMS = ["soxs/vis", "soxs/nir", "xshooter/uvb", "xshooter/vis", "xshooter/nir"]
STRESSES = {"nominal": ("", "1x1"), "stress": ("scatter=0.02,level=0.08,tilt=0.04,cosmics=2000,stale=1", "1x1"),
            "bin2": ("", "2x2")}
COLS = ["resp/limit", "block z rms", "block z max", "CR max sigma", "CR > 5 sigma", "CR vs clean", "ERRS z std",
        "bkg % rms", "edge px", "low recall", "false rate"]


def score(ev: dict) -> list:
    return [ev["response_ratio"], ev["block_z_rms"], ev["block_z_max"], ev["max_z_cosmics_truth"],
            ev["n_cosmics_over_5"], ev["max_z_cosmics_clean"], ev["errs_z_std"], ev.get("background_rms_pct", float("nan")),
            max(max(v) for v in ev["edge_rms"].values()), ev["low_recall"], ev["false_rate"]]


def run_one(arm: str, stress: str, work: Path, seed: int) -> list[tuple[str, list]]:
    inst, name = arm.split("/")
    text, binning = STRESSES[stress]
    root = work / f"{inst}_{name}_{stress}"
    w = simulate_set(inst, name, root / "set", nflats=5, binning=binning, seed=seed, stress=text, clean_copy=True)
    res = run_mflat(w["sof"], root / "out", overwrite=True)
    p, c = res.products, run_mflat(w["sof_clean"], root / "out_clean", overwrite=True, plots=False).products
    parts = [(" DLAMP", "D2"), (" QLAMP", "QTH")] if name == "uvb" else [("", "QTH")]
    rows = []
    for tag, lamp in parts:
        ev = evaluate(p[f"MFLAT{tag}"], p[f"ORDER LOC{tag}"], w["truth"], lamp=lamp,
                      background=p.get(f"BKGROUND FITS{tag}"), clean=c[f"MFLAT{tag}"])
        rows.append((f"{inst} {name}{' ' + lamp if tag else ''} {stress}", score(ev)))
    if name == "uvb":   # the stitched master: D2 from the crossover order up, QTH below
        cross = int(next(r.value for r in res.qc if r.name.endswith("CROSSOVER ORDER")))
        orders = fits.getdata(w["truth"], "ORDERS")["order"]
        ev = evaluate(p["MFLAT"], p["ORDER LOC"], w["truth"], lamp={int(o): "D2" if o >= cross else "QTH" for o in orders},
                      clean=c["MFLAT"])
        rows.append((f"{inst} {name} stitched {stress}", score(ev)))
    return rows


def fmt(v) -> str:
    if isinstance(v, int):
        return str(v)
    return f"{v:.2e}" if 0 < abs(v) < 1e-2 else f"{v:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/soxs-fidelity")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--stresses", default="nominal,stress,bin2")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    rows = []
    print("| set | " + " | ".join(COLS) + " |\n|---|" + "---|" * len(COLS), flush=True)
    for arm in a.arms.split(","):
        for stress in a.stresses.split(","):
            if stress == "bin2" and arm.endswith("nir"):
                continue
            t0 = time.perf_counter()
            for label, vals in run_one(arm, stress, Path(a.work), a.seed):
                rows.append({"set": label, **dict(zip(COLS, vals))})
                print(f"| {label} | " + " | ".join(fmt(v) for v in vals) + f" |  <!-- {time.perf_counter() - t0:.0f} s -->",
                      flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
