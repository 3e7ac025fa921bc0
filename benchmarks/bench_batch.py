"""Archive throughput: soxs-mflat batch on Dask against a shell loop of `soxs-mflat run` and soxspipe
0.17.4 per set, on the same simulated SOXS VIS nights, side by side in one run.

    python benchmarks/bench_batch.py [--work /tmp/bench-batch] [--nights 6] [--many 52] [--write docs/benchmarks.md]

1. An archive of N SOXS VIS nights (1x1, 5 flats per set); `soxs-mflat organise` writes the SOFs.
2. Wall time of: batch --workers 2 --plots none; batch --workers 2 (PDFs); a bash loop of
   `soxs-mflat run SOF -q` (PDFs, one process per set); soxspipe mflat per set (its SOFs: ours
   without the static bad-pixel map, which soxspipe ships itself). Sets per hour of each.
3. Per-set cost in a warm process (read + verify, detrend, C++ core, write) from the recipe's
   progress steps, against the FITS I/O floor (reading the raw pixels, writing the products' bytes);
   peak RSS per Dask worker (from the workers).
4. A run of >= 50 small sets (2x2, 3 flats) on 2 workers: the scheduler's overhead per task.
soxspipe lives in its own venv (/work/sxp-venv or --soxspipe-venv; see benchmarks/compare.py).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from compare import soxspipe_settings, soxspipe_venv, timed  # noqa: E402


def simulate(work: Path, nights: int, setups, nflats: int) -> Path:
    from soxs_mflat.simulate.archive import simulate_archive
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    simulate_archive(work, nights, setups=setups, nflats=nflats, compress=("",))
    print(f"simulated {work} in {time.perf_counter() - t0:.0f} s", flush=True)
    return work / "archive"


def batch_run(archive: Path, out: Path, extra) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    r = timed([sys.executable, "-m", "soxs_mflat.cli", "batch", archive, "-o", out, "--workers", "2", "-q", *extra],
              ROOT)
    rows = json.loads(json.dumps(_csv(out / "qc_summary.csv")))
    r["sets"] = sum(row["status"] == "done" for row in rows)
    r["task_s"] = [float(row["seconds"]) for row in rows if row["status"] == "done"]
    r["worker_mb"] = max((float(row["worker_peak_rss_mib"]) for row in rows if row.get("worker_peak_rss_mib")),
                         default=None)
    return r


def _csv(path: Path) -> list[dict]:
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def loop_run(sofs: list[Path], out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = "".join(f"{sys.executable} -m soxs_mflat.cli run {s} -o {out / s.stem} -q || exit 1\n" for s in sofs)
    (out / "loop.sh").write_text(script)
    r = timed(["bash", out / "loop.sh"], out)
    r["sets"] = len(sofs) if r["rc"] == 0 else 0
    return r


def soxspipe_run(sofs: list[Path], work: Path, venv: Path) -> dict:
    exe = soxspipe_venv(venv)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settings = soxspipe_settings(venv, "soxs", work)
    total, ok, mb = 0.0, 0, 0.0
    for s in sofs:
        sof = work / s.name           # soxspipe's SOF: without our static bad-pixel map
        sof.write_text("".join(ln + "\n" for ln in s.read_text().splitlines() if "BP_MAP_RP" not in ln))
        r = timed([exe, "mflat", sof, "-s", settings, "-x"], work)
        total, ok, mb = total + r["s"], ok + (r["rc"] == 0), max(mb, r["mb"])
    return {"s": total, "sets": ok, "mb": mb, "rc": 0 if ok == len(sofs) else 1}


def warm_breakdown(sofs: list[Path], out: Path) -> dict:
    """Per-set step times in one warm process (the recipe's progress steps), and the I/O floor."""
    import numpy as np
    from astropy.io import fits
    from soxs_mflat.frames import load_frames
    from soxs_mflat.recipe import run_mflat
    steps: dict[str, list[float]] = {}
    run_mflat(sofs[0], out / "warmup", plots=False)
    floor_r, floor_w = [], []
    for s in sofs[1:]:
        marks = []
        t0 = time.perf_counter()
        res = run_mflat(s, out / s.stem, plots=False, progress=lambda m: marks.append((time.perf_counter(), m)))
        marks.append((time.perf_counter(), "end"))
        names = ["read+verify", "detrend (pixels read)", "core", "write"]
        for name, (a, _), (b, _) in zip(names, marks, marks[1:]):
            steps.setdefault(name, []).append(b - a)
        steps.setdefault("total", []).append(marks[-1][0] - t0)
        t1 = time.perf_counter()
        raws = [f for f in load_frames(s) if f.is_raw_flat]
        arrays = [fits.getdata(f.path).astype(np.float32) for f in raws]
        floor_r.append(time.perf_counter() - t1)
        t2 = time.perf_counter()
        for label, p in res.products.items():
            if p.suffix == ".fits":
                with fits.open(p) as hl:
                    hl.writeto(out / "floor.fits", overwrite=True)
        floor_w.append(time.perf_counter() - t2)
        del arrays
    med = {k: statistics.median(v) for k, v in steps.items()}
    med["floor read"], med["floor write"] = statistics.median(floor_r), statistics.median(floor_w)
    return med


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/bench-batch")
    ap.add_argument("--nights", type=int, default=6)
    ap.add_argument("--many", type=int, default=52, help="small sets for the scheduler run (0: skip)")
    ap.add_argument("--soxspipe-venv", default="/work/sxp-venv")
    ap.add_argument("--no-soxspipe", action="store_true")
    ap.add_argument("--write", help="append the table to this markdown file")
    a = ap.parse_args()
    work = Path(a.work)
    # one 1x1 set per night plus one 2x2 (the 2x2 of the last night is made incomplete)
    archive = simulate(work / "sim", a.nights + 1, ["soxs/vis/2x2@%d" % a.nights, "soxs/vis/1x1"], 5)
    subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "organise", archive, "--sof-dir", work / "sofs"],
                   check=True, capture_output=True)
    sofs = sorted((work / "sofs").glob("*.sof"))
    res = {"n_sets": len(sofs)}
    res["batch none"] = batch_run(archive, work / "out-none", ["--plots", "none"])
    res["batch pdf"] = batch_run(archive, work / "out-pdf", [])
    res["loop"] = loop_run(sofs, work / "out-loop")
    if not a.no_soxspipe:
        res["soxspipe"] = soxspipe_run(sofs, work / "out-sxp", Path(a.soxspipe_venv))
    res["warm"] = warm_breakdown(sofs, work / "out-warm")
    if a.many:
        nights = -(-(a.many + 1) // 2)     # two setups a night (one set is made incomplete)
        small = simulate(work / "sim-many", nights, ["soxs/vis/2x2", "soxs/vis/1x2"], 3)
        res["many"] = batch_run(small, work / "out-many", ["--plots", "none"])
    for k, v in res.items():
        if isinstance(v, dict):
            v.pop("log", None)
    print(json.dumps(res, indent=1))
    (work / "bench_batch.json").write_text(json.dumps(res, indent=1))
    if a.write:
        with open(a.write, "a") as f:
            f.write(markdown(res))


def markdown(res: dict) -> str:
    def rate(r):
        return 3600 * r["sets"] / r["s"] if r.get("s") and r.get("sets") else float("nan")
    base = rate(res["soxspipe"]) if "soxspipe" in res else None
    L = ["", "## Archive throughput (soxs-mflat batch on Dask)", "",
         f"`python benchmarks/bench_batch.py`: {res['n_sets']} complete simulated SOXS VIS sets (1x1, 5 flats; "
         "one per night, plus one 2x2), this 2-core machine shared with other jobs, one run side by side.", "",
         "| tool | sets | wall (s) | sets / hour | vs soxspipe | peak RSS (MB) |", "|---|---|---|---|---|---|"]
    for key, label in (("batch none", "batch --workers 2 --plots none"), ("batch pdf", "batch --workers 2 (PDFs)"),
                       ("loop", "bash loop of soxs-mflat run (PDFs)"), ("soxspipe", "soxspipe 0.17.4 mflat per set")):
        if key in res:
            r = res[key]
            mb = r.get("worker_mb") or r.get("mb")
            vs = f"{rate(r) / base:.1f}x" if base else "-"
            L.append(f"| {label} | {r['sets']} | {r['s']:.1f} | {rate(r):.0f} | {vs} | {mb:.0f} |")
    w = res["warm"]
    L += ["", "Per set in a warm process (median, s): " + ", ".join(f"{k} {v:.3f}" for k, v in w.items()) + "."]
    if "many" in res:
        m = res["many"]
        busy = sum(m["task_s"]) / 2
        L += ["", f"Scheduler run: {m['sets']} small sets (2x2, 3 flats) on 2 workers in {m['s']:.1f} s wall; "
              f"sum of task times / 2 workers = {busy:.1f} s, so {m['s'] - busy:.1f} s of start-up, organising, "
              f"scheduling and summary ({(m['s'] - busy) / max(1, m['sets']) * 1000:.0f} ms per set)."]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
