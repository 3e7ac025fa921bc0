"""2x2 round trip of order tables against soxspipe 0.17.4's own ``toolkit.unpack_order_table``.

soxspipe installs into its own venv (it pins old dependencies), so this is a script, not a test:

    python3 -m venv /work/sxp-venv && /work/sxp-venv/bin/pip install soxspipe==0.17.4 six
    .venv/bin/python benchmarks/soxspipe_binned_roundtrip.py [--soxspipe-python /work/sxp-venv/bin/python]

A simulated 2x2 X-shooter VIS set is reduced by soxs-mflat. soxspipe then unpacks (binx = biny = 2)
the input order-centre table and our output order table, giving binned positions on binned lines.
Compared, as integers, with what soxs-mflat's core does on the same lines:

* centres: the pixel the core puts an order's centre on (``inner_order_stats`` with a 1-px window on
  an image whose value is its column index) against ``round`` of soxspipe's ``xcoord_centre``;
* edges: the first and last in-order pixel of the core's ``in_order_mask`` against ``ceil`` of
  soxspipe's ``xcoord_edgelow`` and ``floor`` of ``xcoord_edgeup``.

It also counts how many would differ under the old mapping ``bin * i + (bin - 1) / 2``. Exit code 1
when any position differs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from soxs_mflat import core
from soxs_mflat.ordertable import read_edges
from soxs_mflat.recipe import run_mflat
from soxs_mflat.simulate.run import simulate_set

BIN = 2
UNPACK = """
import json, logging, sys
from soxspipe.commonutils.toolkit import unpack_order_table
out = {}
for name, path in json.loads(sys.argv[1]).items():
    _, px, _ = unpack_order_table(logging.getLogger("rt"), path, binx=%d, biny=%d)
    out[name] = {c: px[c].tolist() for c in px.columns}
print(json.dumps(out))
""" % (BIN, BIN)


def soxspipe_unpack(python: str, tables: dict) -> dict:
    r = subprocess.run([python, "-c", UNPACK, json.dumps({k: str(v) for k, v in tables.items()})],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def centre_pixels(centre, orders, lines, ny, nx) -> np.ndarray:
    """The column the core centres each (order, binned line) on: a 1-px window on an index image."""
    cols = np.tile(np.arange(nx, dtype=np.float32), (ny, 1))
    out = []
    for o, y in zip(orders, lines):
        lay = core.OrderLayout([int(o)], [BIN * y], [BIN * y], True, BIN, BIN)
        out.append(core.inner_order_stats(cols, centre, lay, window=1)["median"])
    return np.array(out)


def edge_pixels(lower, upper, orders, lines, shape, b_ranges) -> tuple[np.ndarray, np.ndarray]:
    """First and last in-order column of the core's mask on each (order, binned line)."""
    first, last, masks = [], [], {}
    for o, y in zip(orders, lines):
        if o not in masks:
            lay = core.OrderLayout([int(o)], [b_ranges[o][0]], [b_ranges[o][1]], True, BIN, BIN)
            masks[o] = core.in_order_mask(shape, lower, upper, lay)
        cols = np.flatnonzero(masks[o][y])
        first.append(cols[0] if cols.size else -1)
        last.append(cols[-1] if cols.size else -1)
    return np.array(first), np.array(last)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--soxspipe-python", default="/work/sxp-venv/bin/python")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="sxp-roundtrip-"))
    w = simulate_set("xshooter", "vis", work / "set", nflats=3, binning="2x2", seed=5)
    res = run_mflat(w["sof"], work / "out", overwrite=True)
    centre_tab, edge_tab = w["order_tab"][0], res.products["ORDER LOC"]
    sx = soxspipe_unpack(args.soxspipe_python, {"centre": centre_tab, "edges": edge_tab})
    with fits.open(res.products["MFLAT"]) as hl:
        shape = hl[0].data.shape
    with fits.open(centre_tab) as hl:
        row, meta = hl[1].data[0], hl[2].data
        dn, db = int(row["degorder_cent"]), int(row["degy_cent"])
        centre = np.array([[row[f"cent_{i}{j}"] for j in range(db + 1)] for i in range(dn + 1)], float)
        b_ranges = {int(o): (float(a), float(b)) for o, a, b in zip(meta["order"], meta["ymin"], meta["ymax"])}
    lower, upper = read_edges(edge_tab)
    report = {}
    # centres on every 10th line soxspipe returns, inside the detector
    c = sx["centre"]
    sel = [k for k in range(0, len(c["ycoord"]), 10) if 0 <= c["ycoord"][k] < shape[0]]
    o_c, y_c = np.array(c["order"])[sel].astype(int), np.array(c["ycoord"])[sel].astype(int)
    x_sx = np.array(c["xcoord_centre"])[sel]
    ours = centre_pixels(centre, o_c, y_c, *shape)
    old = np.round((core.poly_eval(centre, o_c, BIN * y_c + 0.5) - 0.5) / BIN)
    report["centre"] = {"positions": len(sel), "differ": int(np.sum(ours != np.round(x_sx))),
                        "differ_old_mapping": int(np.sum(old != np.round(x_sx)))}
    e = sx["edges"]
    inside = lambda k: (0 <= e["ycoord"][k] < shape[0] and  # noqa: E731  (soxspipe's arange starts at floor(ymin))
                        b_ranges[int(e["order"][k])][0] <= BIN * e["ycoord"][k] <= b_ranges[int(e["order"][k])][1])
    sel = [k for k in range(0, len(e["ycoord"]), 10) if inside(k)]
    o_e, y_e = np.array(e["order"])[sel].astype(int), np.array(e["ycoord"])[sel].astype(int)
    lo_sx, up_sx = np.ceil(np.array(e["xcoord_edgelow"])[sel]), np.floor(np.array(e["xcoord_edgeup"])[sel])
    first, last = edge_pixels(lower, upper, o_e, y_e, shape, b_ranges)
    old_lo = np.ceil((core.poly_eval(lower, o_e, BIN * y_e + 0.5) - 0.5) / BIN)
    old_up = np.floor((core.poly_eval(upper, o_e, BIN * y_e + 0.5) - 0.5) / BIN)
    report["edges"] = {"positions": 2 * len(sel),
                       "differ": int(np.sum(first != lo_sx) + np.sum(last != up_sx)),
                       "differ_old_mapping": int(np.sum(old_lo != lo_sx) + np.sum(old_up != up_sx))}
    print(json.dumps(report, indent=1))
    return 1 if report["centre"]["differ"] or report["edges"]["differ"] else 0


if __name__ == "__main__":
    sys.exit(main())
