"""Archive throughput: soxs-mflat batch on Dask against a shell loop of `soxs-mflat run` and soxspipe
0.17.4 per set, on the same simulated SOXS VIS nights, side by side in one run.

    flock /work/bench.lock python benchmarks/bench_batch.py [--work /tmp/bench-batch] [--nights 6] [--many 52]

1. An archive of N+1 SOXS VIS nights (a 2x2 and a 1x1 set of 5 flats each a night; the 2x2 set of
   the last night made incomplete); `soxs-mflat organise` (timed: time per file) writes the SOFs.
2. Wall time of: batch --workers 2 --plots none; batch --workers 2 (PDFs); a bash loop of
   `soxs-mflat run SOF -q` (PDFs, one process per set); soxspipe mflat per set (its SOFs: ours
   without the static bad-pixel map, which soxspipe ships itself); batch --plots none once more at
   the end (the drift of the machine over the run). Sets per hour of each.
3. Per-set cost in a warm process (what a Dask worker is after its first set): read + verify,
   detrend (the raw pixels read and bias-subtracted), C++ core, write, from the recipe's progress
   steps; against the FITS I/O floor (astropy reading every input's pixels; writing the products'
   HDUs, already in memory, to disk). Peak RSS per Dask worker (ru_maxrss, reported by the workers).
4. Dask's own cost: LocalCluster start-up and the overhead per task (many no-op tasks).
5. A batch of >= 50 small sets (SOXS VIS 2x2 and 1x2, 3 flats) on 2 workers: where the time goes
   when a set is cheap (scheduler, organiser, start-up), with the warm per-set breakdown of those sets.
soxspipe lives in its own venv (/work/sxp-venv or --soxspipe-venv; see benchmarks/compare.py).
Results: WORK/bench_batch.json and the markdown tables on stdout (docs/benchmarks.md, issue 15).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from compare import soxspipe_settings, soxspipe_venv, timed  # noqa: E402

CLI = [sys.executable, "-m", "soxs_mflat.cli"]


def simulate(work: Path, nights: int, setups, nflats: int) -> tuple[Path, float]:
    from soxs_mflat.simulate.archive import simulate_archive
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    simulate_archive(work, nights, setups=setups, nflats=nflats, compress=("",))
    dt = time.perf_counter() - t0
    print(f"simulated {work} in {dt:.0f} s", flush=True)
    return work / "archive", dt


def organise_run(archive: Path, sof_dir: Path) -> dict:
    shutil.rmtree(sof_dir, ignore_errors=True)
    r = timed([*CLI, "organise", archive, "--sof-dir", sof_dir], ROOT)
    r["files"] = sum(len(f) for _, _, f in os.walk(archive))
    r["sofs"] = sorted(sof_dir.glob("*.sof"))
    return r


def _csv(path: Path) -> list[dict]:
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def batch_run(archive: Path, out: Path, extra) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    r = timed([*CLI, "batch", archive, "-o", out, "--workers", "2", "-q", *extra], ROOT)
    rows = _csv(out / "qc_summary.csv")
    done = [row for row in rows if row["status"] == "done"]
    r["sets"] = len(done)
    r["task_s"] = [float(row["seconds"]) for row in done]
    r["worker_mb"] = max((float(row["worker_peak_rss_mib"]) for row in done if row["worker_peak_rss_mib"]),
                         default=None)
    print(f"batch {' '.join(extra) or '(PDFs)'}: {r['sets']} sets in {r['s']:.1f} s", flush=True)
    return r


def loop_run(sofs: list[Path], out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = "".join(f"{' '.join(CLI)} run {s} -o {out / s.stem} -q || exit 1\n" for s in sofs)
    (out / "loop.sh").write_text(script)
    r = timed(["bash", out / "loop.sh"], out)
    r["sets"] = len(sofs) if r["rc"] == 0 else 0
    print(f"loop: {r['sets']} sets in {r['s']:.1f} s", flush=True)
    return r


def soxspipe_run(sofs: list[Path], work: Path, venv: Path) -> dict:
    exe = soxspipe_venv(venv)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settings = soxspipe_settings(venv, "soxs", work)
    total, ok, mb, per, cpu = 0.0, 0, 0.0, [], 0.0
    for s in sofs:
        sof = work / s.name           # soxspipe's SOF: without our static bad-pixel map
        sof.write_text("".join(ln + "\n" for ln in s.read_text().splitlines() if "BP_MAP_RP" not in ln))
        r = timed([exe, "mflat", sof, "-s", settings, "-x"], work)
        good = r["rc"] == 0 and any((work / "reduced").rglob(f"{s.stem}*.fits"))
        total, ok, mb, cpu = total + r["s"], ok + good, max(mb, r["mb"]), cpu + r["cpu"]
        per.append(r["s"])
        if not good:
            print(f"soxspipe failed on {s.name}:\n{r['log'][-1500:]}", flush=True)
    print(f"soxspipe: {ok} sets in {total:.1f} s", flush=True)
    return {"s": total, "sets": ok, "mb": mb, "rc": 0 if ok == len(sofs) else 1, "per_set_s": per, "cpu": cpu}


def _floor(sof: Path, products: dict, out: Path) -> tuple[float, float, int, int]:
    """The FITS I/O floor of one set: astropy reading every FITS input's pixels (as float32 for the
    images, as the recipe does), and writing the products' HDUs (loaded beforehand) to disk."""
    import numpy as np
    from astropy.io import fits
    from soxs_mflat.frames import load_frames
    t0 = time.perf_counter()
    nread = 0
    for f in load_frames(sof):
        with fits.open(f.path, memmap=False) as hl:
            for h in hl:
                if h.data is not None:
                    d = np.asarray(h.data)
                    nread += d.nbytes
                    if d.dtype.kind in "iuf" and d.ndim == 2:
                        d.astype(np.float32)
    t_read = time.perf_counter() - t0
    hls = []
    for p in products.values():
        if p.suffix == ".fits":
            hl = fits.open(p, memmap=False)
            for h in hl:
                _ = h.data
            hls.append(hl)
    t1 = time.perf_counter()
    for k, hl in enumerate(hls):
        hl.writeto(out / f"floor{k}.fits", overwrite=True)
    t_write = time.perf_counter() - t1
    nwrite = sum((out / f"floor{k}.fits").stat().st_size for k in range(len(hls)))
    for hl in hls:
        hl.close()
    return t_read, t_write, nread, nwrite


def warm_breakdown(sofs: list[Path], out: Path) -> dict:
    """Per-set step times in one warm process (the recipe's progress steps), and the I/O floor;
    the first set warms the process (imports, caches) and is not counted."""
    from soxs_mflat.recipe import run_mflat
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run_mflat(sofs[0], out / "warmup", plots=False)
    steps: dict[str, list[float]] = {}
    names = {"reading": "read+verify", "detrending": "detrend", "normalising": "core", "writing": "write"}
    for s in sofs[1:]:
        marks = []
        t0 = time.perf_counter()
        res = run_mflat(s, out / s.stem, plots=False, progress=lambda m: marks.append((time.perf_counter(), m)))
        marks.append((time.perf_counter(), "end"))
        for (a, msg), (b, _) in zip(marks, marks[1:]):
            key = names.get(msg.split()[0].rstrip(","), msg.split()[0])
            steps.setdefault(key, []).append(b - a)
        steps.setdefault("total", []).append(marks[-1][0] - t0)
        fr, fw, nr, nw = _floor(s, res.products, out)
        for k, v in (("floor read", fr), ("floor write", fw), ("MB read", nr / 1e6), ("MB written", nw / 1e6)):
            steps.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in steps.items()}


def dask_overhead(n_tasks: int) -> dict:
    """LocalCluster start-up (2 worker processes, as batch makes) and the cost per task of the
    scheduler and client (no-op tasks submitted at once, as batch submits its sets)."""
    from dask.distributed import Client, LocalCluster, wait
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    client = Client(cluster)
    t_start = time.perf_counter() - t0
    client.run(lambda: None)
    t1 = time.perf_counter()
    futures = [client.submit(_noop, i, pure=False) for i in range(n_tasks)]
    wait(futures)
    t_tasks = time.perf_counter() - t1
    client.close()
    cluster.close()
    return {"start_s": t_start, "n_tasks": n_tasks, "per_task_ms": 1000 * t_tasks / n_tasks}


def batch_phases(archive: Path, out: Path) -> dict:
    """The batch of ``archive`` in this process, phase by phase (what the CLI does, less the
    interpreter's start): organise, LocalCluster start, warming the workers, the sets, summary
    (CSV, Parquet, trends PDF), closing the cluster."""
    from soxs_mflat import batch as b
    from soxs_mflat.summary import write_summary
    shutil.rmtree(out, ignore_errors=True)
    t = [time.perf_counter()]
    jobs = b.plan([archive], out)
    t.append(time.perf_counter())
    client, cluster = b.make_client(2, None)
    t.append(time.perf_counter())
    b._warm(client)
    t.append(time.perf_counter())
    b.run_jobs(jobs, client, None, False, False, progress=False)
    t.append(time.perf_counter())
    write_summary(jobs, out)
    t.append(time.perf_counter())
    client.close()
    cluster.close()
    t.append(time.perf_counter())
    names = ["organise", "cluster start", "warm workers", "sets", "summary", "cluster close"]
    r = {n: b - a for n, a, b in zip(names, t, t[1:])}
    r["sets done"] = sum(j.status == "done" for j in jobs)
    r["task_s"] = sum(j.seconds for j in jobs)
    return r


def _noop(i):
    return i


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/bench-batch")
    ap.add_argument("--nights", type=int, default=6, help="nights of complete sets (one more holds the incomplete set)")
    ap.add_argument("--many", type=int, default=52, help="small sets for the scheduler run (0: skip)")
    ap.add_argument("--soxspipe-venv", default="/work/sxp-venv")
    ap.add_argument("--no-soxspipe", action="store_true")
    a = ap.parse_args()
    work = Path(a.work)
    res = {"load_before": os.getloadavg()}
    # a 2x2 and a 1x1 set each night (5 flats each); the 2x2 of the last night is made incomplete
    archive, res["simulate_s"] = simulate(work / "sim", a.nights + 1, ["soxs/vis/2x2", "soxs/vis/1x1"], 5)
    org = organise_run(archive, work / "sofs")
    sofs = org.pop("sofs")
    res["organise"], res["n_sets"] = org, len(sofs)
    res["batch none"] = batch_run(archive, work / "out-none", ["--plots", "none"])
    res["batch pdf"] = batch_run(archive, work / "out-pdf", ["--plots", "pdf"])
    res["loop"] = loop_run(sofs, work / "out-loop")
    if not a.no_soxspipe:
        res["soxspipe"] = soxspipe_run(sofs, work / "out-sxp", Path(a.soxspipe_venv))
    res["batch none again"] = batch_run(archive, work / "out-none", ["--plots", "none"])
    res["phases"] = batch_phases(archive, work / "out-phases")
    for b in ("1x1", "2x2"):
        res[f"warm {b}"] = warm_breakdown([s for s in sofs if f"_{b.upper()}_" in s.name], work / f"out-warm-{b}")
    res["dask"] = dask_overhead(500)
    if a.many:
        nights = -(-(a.many + 1) // 2)     # two setups a night (one set is made incomplete)
        small, res["many_simulate_s"] = simulate(work / "sim-many", nights, ["soxs/vis/2x2", "soxs/vis/1x2"], 3)
        org = organise_run(small, work / "sofs-many")
        small_sofs = org.pop("sofs")
        res["many organise"] = org
        res["many"] = batch_run(small, work / "out-many", ["--plots", "none"])
        res["many phases"] = batch_phases(small, work / "out-many-phases")
        res["many warm"] = warm_breakdown(small_sofs[:7], work / "out-warm-many")
    res["load_after"] = os.getloadavg()
    for v in res.values():
        if isinstance(v, dict):
            v.pop("log", None)
    (work / "bench_batch.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    print(markdown(res))


def _rate(r: dict) -> float:
    return 3600 * r["sets"] / r["s"] if r.get("s") and r.get("sets") else float("nan")


def markdown(res: dict) -> str:
    base = _rate(res["soxspipe"]) if "soxspipe" in res else None
    cbase = res["soxspipe"]["cpu"] / res["soxspipe"]["sets"] if "soxspipe" in res else None
    L = ["| tool | sets | wall (s) | sets / hour | vs soxspipe | CPU s per set | vs soxspipe (CPU) | peak RSS (MB) |",
         "|---|---|---|---|---|---|---|---|"]
    for key, label in (("batch none", "batch --workers 2 --plots none"), ("batch pdf", "batch --workers 2 (PDFs)"),
                       ("loop", "bash loop of soxs-mflat run (PDFs)"), ("soxspipe", "soxspipe 0.17.4 mflat per set"),
                       ("batch none again", "batch --workers 2 --plots none, again at the end")):
        if key in res:
            r = res[key]
            mb = r.get("worker_mb") or r.get("mb")
            vs = f"{_rate(r) / base:.1f}x" if base else "-"
            c = r["cpu"] / r["sets"] if r.get("sets") else float("nan")
            cvs = f"{cbase / c:.1f}x" if cbase else "-"
            L.append(f"| {label} | {r['sets']} | {r['s']:.1f} | {_rate(r):.0f} | {vs} | {c:.2f} | {cvs} | {mb:.0f} |")
    for key in ("warm 1x1", "warm 2x2", "many warm"):
        if key in res:
            L += ["", f"{key} (median per set, s): " + ", ".join(f"{k} {v:.3f}" for k, v in res[key].items())]
    d = res["dask"]
    L += ["", f"Dask: LocalCluster start {d['start_s']:.2f} s, {d['per_task_ms']:.2f} ms per no-op task "
          f"({d['n_tasks']} tasks)"]
    for key in ("organise", "many organise"):
        if key in res:
            o = res[key]
            L.append(f"{key}: {o['files']} files in {o['s']:.2f} s ({1000 * o['s'] / o['files']:.1f} ms per file)")
    if "many" in res:
        m = res["many"]
        busy = sum(m["task_s"]) / 2
        L.append(f"many: {m['sets']} sets in {m['s']:.1f} s wall, sum of task times / 2 = {busy:.1f} s, "
                 f"rest {m['s'] - busy:.1f} s ({(m['s'] - busy) / max(1, m['sets']) * 1000:.0f} ms per set), "
                 f"worker peak RSS {m['worker_mb']:.0f} MB")
    for key in ("phases", "many phases"):
        if key in res:
            L.append(f"{key} (in-process, s): " + ", ".join(f"{k} {v:.2f}" for k, v in res[key].items()))
    L.append(f"load average before {res['load_before']}, after {res['load_after']}")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
