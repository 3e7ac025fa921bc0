"""soxs-mflat (Python CLI and esorex plugin) against soxspipe 0.17.4 on identical simulated sets.

    python benchmarks/compare.py [--work /tmp/soxs-compare] [--repeat 2] [--write docs/benchmarks.md]
    python benchmarks/compare.py --breakdown 7 [--before OTHER/.venv/bin/python]   # SOXS VIS time split

For every arm configuration (SOXS VIS/NIR, X-shooter UVB/VIS/NIR; 5 flats, 1x1) the simulator writes
one set; the three tools run on it in alternation (wall time and peak RSS from GNU time), and their
products are scored against the simulator's truth. soxspipe is installed from PyPI into its own venv
(with `six`) and is not patched: its failures are results. Then the scaling of soxs-mflat with the
number of frames (3, 5, 10, 20) and the binning. Run `bash scripts/setup.sh` first (venv, plugin).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from astropy.io import fits

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "build" / "esorex" / "recipes"
CONFIGS = [("soxs", "vis"), ("soxs", "nir"), ("xshooter", "uvb"), ("xshooter", "vis"), ("xshooter", "nir")]
QC_KEYS = ["ORDEXP50", "X RES SD", "N LOW SENS", "INNER ORDER PIX MEAN"]


def timed(cmd, cwd) -> dict:
    """Wall time (s) and peak RSS (MB) of a command, via GNU time."""
    p = subprocess.run(["/usr/bin/time", "-f", "@@%e %M %U %S", *map(str, cmd)], cwd=cwd, capture_output=True, text=True)
    tail = [ln for ln in p.stderr.splitlines() if ln.startswith("@@")][-1][2:].split()
    return {"rc": p.returncode, "s": float(tail[0]), "mb": float(tail[1]) / 1024, "cpu": float(tail[2]) + float(tail[3]),
            "log": (p.stdout + p.stderr)[-3000:]}


def soxspipe_venv(path: Path) -> Path:
    exe = path / "bin" / "soxspipe"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", "soxspipe==0.17.4", "six"], check=True)
    return exe


def soxspipe_settings(venv: Path, inst: str, workdir: Path) -> Path:
    py = venv / "bin" / "python"
    src = subprocess.run([str(py), "-c", "import soxspipe, os; print(os.path.dirname(soxspipe.__file__))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    name = "soxs_default_settings.yaml" if inst == "soxs" else "xsh_default_settings.yaml"
    text = Path(src, name).read_text().replace("/Users/Dave/.config/soxspipe/soxspipe.log", str(workdir / "sxp.log"))
    out = workdir / "soxspipe.yaml"
    out.write_text(text)
    return out


def run_tools(cfg_dir: Path, w: dict, sxp: Path, settings: Path, repeat: int) -> dict:
    runs = {"soxs-mflat": [], "esorex": [], "soxspipe": []}
    sxp_sof = next((cfg_dir / "set" / "soxspipe").glob("*.sof"))
    for _ in range(repeat):
        runs["soxs-mflat"].append(timed([sys.executable, "-m", "soxs_mflat.cli", "run", w["sof"], "-o", cfg_dir / "py",
                                         "--overwrite", "-q"], cfg_dir))
        if shutil.which("esorex") and (PLUGIN_DIR / "soxs_mflat.so").exists():
            (cfg_dir / "es").mkdir(exist_ok=True)
            runs["esorex"].append(timed(["esorex", f"--recipe-dir={PLUGIN_DIR}", f"--output-dir={cfg_dir / 'es'}",
                                         f"--log-dir={cfg_dir / 'es'}", "soxs_mflat", w["sof"]], cfg_dir / "es"))
        (cfg_dir / "sxp").mkdir(exist_ok=True)
        runs["soxspipe"].append(timed([sxp, "mflat", sxp_sof, "-s", settings, "-x"], cfg_dir / "sxp"))
    return runs


def soxspipe_products(cfg_dir: Path, sof: Path):
    stem = sof.stem
    flats = [p for p in glob.glob(str(cfg_dir / "sxp" / "reduced" / "*" / "soxs-mflat" / f"{stem}.fits"))]
    olocs = glob.glob(str(cfg_dir / "sxp" / "reduced" / "*" / "soxs-mflat" / "*OLOC*.fits"))
    olocs = [p for p in olocs if "LAMP" not in Path(p).name] or olocs
    return (Path(flats[0]), Path(olocs[0])) if flats and olocs else (None, None)


def score(flat, tab, truth, inst, arm, any_flag=False) -> dict:
    from soxs_mflat.simulate.evaluate import evaluate
    lamp = "QTH"
    if arm == "uvb":
        c = fits.getval(flat, "ESO QC CROSSOVER ORDER") if not any_flag else 21
        lamp = {o: ("D2" if o >= c else "QTH") for o in range(13, 25)}
    ev = evaluate(flat, tab, truth, lamp, any_flag=any_flag)
    h = fits.getheader(flat)
    qc = {k: h.get(f"ESO QC {k}") for k in QC_KEYS}
    return {"edge_rms": max(max(v) for v in ev["edge_rms"].values()), "resp": ev["response_rms"],
            "noise": ev["noise_rms"], "recall": ev["low_recall"], "false": ev["false_rate"],
            "inter1": ev["inter_order_values"] == [1.0], "cr": ev["max_abs_z_cosmics"], "qc": qc}


def compare(work: Path, repeat: int, configs=CONFIGS, venv: Path | None = None) -> list[dict]:
    from soxs_mflat.simulate.run import simulate_set
    venv = venv or work / "soxspipe-venv"
    sxp = soxspipe_venv(venv)
    rows = []
    for inst, arm in configs:
        d = work / f"{inst}_{arm}"
        shutil.rmtree(d, ignore_errors=True)
        w = simulate_set(inst, arm, d / "set", nflats=5, seed=1)
        runs = run_tools(d, w, sxp, soxspipe_settings(venv, inst, d), repeat)
        row = {"cfg": f"{inst} {arm}".upper(), "runs": {}}
        for tool, rs in runs.items():
            if rs:
                row["runs"][tool] = {"s": statistics.median(r["s"] for r in rs), "mb": max(r["mb"] for r in rs),
                                     "rc": rs[-1]["rc"], "log": rs[-1]["log"]}
        row["ours"] = score(d / "py" / f"master_flat_{arm}.fits", d / "py" / f"order_tab_{arm}.fits", w["truth"], inst, arm)
        flat, tab = soxspipe_products(d, next((d / "set" / "soxspipe").glob("*.sof")))
        if flat is None:
            import re
            log = row["runs"]["soxspipe"]["log"].splitlines()
            err = [ln for ln in log if re.match(r"^[A-Za-z]+(Error|Exception): ", ln.strip())]
            row["soxspipe_error"] = (err[0] if err else "no product written").strip()[:160]
        else:
            row["theirs"] = score(flat, tab, w["truth"], inst, arm, any_flag=True)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "runs"}, default=str)[:400], flush=True)
    return rows


def scaling(work: Path) -> list[dict]:
    from soxs_mflat.simulate.run import simulate_set
    out = []
    for n, binning in ((3, "1x1"), (5, "1x1"), (10, "1x1"), (20, "1x1"), (5, "2x2")):
        d = work / f"scale_{n}_{binning}"
        shutil.rmtree(d, ignore_errors=True)
        w = simulate_set("xshooter", "vis", d / "set", nflats=n, binning=binning, seed=2)
        py = timed([sys.executable, "-m", "soxs_mflat.cli", "run", w["sof"], "-o", d / "py", "-q"], d)
        row = {"n": n, "binning": binning, "py": py}
        if shutil.which("esorex") and (PLUGIN_DIR / "soxs_mflat.so").exists():
            (d / "es").mkdir()
            row["es"] = timed(["esorex", f"--recipe-dir={PLUGIN_DIR}", "soxs_mflat", w["sof"]], d / "es")
        out.append(row)
    return out


STEPS = {1: "read + verify", 2: "detrend", 3: "core (C++)"}


def _log_figures(log: str) -> dict:
    """Step durations and the product timings from a `soxs-mflat run --log` file."""
    import re
    out = {f"step {m[1]}": float(m[2]) for m in re.finditer(r"step (\d) took ([\d.]+) s", log)}
    fits_s = [float(m[1]) for m in re.finditer(r"FITS products\S* built and written in ([\d.]+) s", log)]
    out["fits"] = sum(fits_s) if fits_s else float("nan")
    m = re.search(r"QC pages ready ([\d.]+) s after", log)
    out["pdf wait"] = float(m[1]) if m else float("nan")
    m = re.search(r"finished in ([\d.]+) s", log)
    out["run"] = float(m[1]) if m else float("nan")
    return out


def io_floor(sof: Path, out: Path) -> float:
    """Seconds to read every input of the SOF and write products of the same sizes with astropy (FLUX, QUAL,
    ERRS of a master flat, a background image), no processing: what any Python front end pays."""
    import time
    import numpy as np
    t0 = time.perf_counter()
    shape = None
    for line in Path(sof).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            with fits.open(line.split()[0], memmap=False) as hl:
                for h in hl:
                    if h.data is not None and shape is None and h.data.ndim == 2:
                        shape = h.data.shape
    out.mkdir(parents=True, exist_ok=True)
    img = np.zeros(shape, ">f4")
    fits.HDUList([fits.PrimaryHDU(img), fits.ImageHDU(np.zeros(shape, np.uint8)), fits.ImageHDU(img)]).writeto(
        out / "mf.fits", overwrite=True, checksum=True)
    fits.PrimaryHDU(img).writeto(out / "bkg.fits", overwrite=True, checksum=True)
    return time.perf_counter() - t0


def breakdown(work: Path, repeat: int, venv: Path | None, before: str | None = None) -> dict:
    """SOXS VIS: soxs-mflat (-q --log) and soxspipe in alternation; the CLI's time split by its log, the
    imports (python -c 'import soxs_mflat.recipe' less an empty interpreter) and the FITS I/O floor.
    ``before``: another installation's python (e.g. main's venv), run in the same alternation."""
    from soxs_mflat.simulate.run import simulate_set
    venv = venv or work / "soxspipe-venv"
    sxp = soxspipe_venv(venv)
    d = work / "breakdown"
    shutil.rmtree(d, ignore_errors=True)
    w = simulate_set("soxs", "vis", d / "set", nflats=5, seed=1)
    settings = soxspipe_settings(venv, "soxs", d)
    sxp_sof = next((d / "set" / "soxspipe").glob("*.sof"))
    (d / "sxp").mkdir()
    runs, logs, sx, imp, empty, floor, old, old_logs = [], [], [], [], [], [], [], []
    for i in range(repeat):
        if before:
            old.append(timed([before, "-m", "soxs_mflat.cli", "run", w["sof"], "-o", d / "old", "--overwrite", "-q",
                              "--log", d / "old.log"], d))
            old_logs.append(_log_figures((d / "old.log").read_text()))
        runs.append(timed([sys.executable, "-m", "soxs_mflat.cli", "run", w["sof"], "-o", d / "py", "--overwrite", "-q",
                           "--log", d / "run.log"], d))
        logs.append(_log_figures((d / "run.log").read_text()))
        sx.append(timed([sxp, "mflat", sxp_sof, "-s", settings, "-x"], d / "sxp"))
        imp.append(timed([sys.executable, "-c", "import soxs_mflat.recipe"], d)["s"])
        empty.append(timed([sys.executable, "-c", "pass"], d)["s"])
        floor.append(io_floor(Path(w["sof"]), d / "floor"))
    med = statistics.median
    row = {k: med(x[k] for x in logs) for k in logs[0]}
    row.update({"wall": med(r["s"] for r in runs), "best": min(r["s"] for r in runs), "cpu": med(r["cpu"] for r in runs),
                "soxspipe": med(r["s"] for r in sx), "soxspipe best": min(r["s"] for r in sx),
                "soxspipe cpu": med(r["cpu"] for r in sx), "load": os.getloadavg()[0],
                "imports": med(imp) - med(empty), "python": med(empty), "floor": med(floor), "n": repeat})
    if before:
        row["before"] = {k: med(x[k] for x in old_logs) for k in old_logs[0]}
        row["before"].update({"wall": med(r["s"] for r in old), "best": min(r["s"] for r in old),
                              "cpu": med(r["cpu"] for r in old), "exe": before})
    return row


def breakdown_markdown(b: dict) -> str:
    o = b.get("before")
    nan = float("nan")

    def row(label, key=None, value=None, old=None):
        after = b.get(key, nan) if key else value
        before = (o.get(key, nan) if key else old) if o else None
        fmt = lambda v: "–" if v is None or v != v else f"{v:.2f}"  # noqa: E731
        return f"| {label} | " + (f"{fmt(before)} | " if o else "") + f"{fmt(after)} |"
    L = ["## Where the CLI's time goes (SOXS VIS, 5 flats)", "",
         f"`python benchmarks/compare.py --breakdown {b['n']}" + (" --before PYTHON" if o else "") + f"`: medians of "
         f"{b['n']} alternating runs (1-min load average at the end: {b['load']:.1f} on this machine's cores). soxspipe "
         f"{b['soxspipe']:.2f} s (best {b['soxspipe best']:.2f} s, CPU {b['soxspipe cpu']:.2f} s); soxs-mflat {b['wall']:.2f} s "
         f"(best {b['best']:.2f} s, CPU {b['cpu']:.2f} s with its plot processes): **{b['soxspipe'] / b['wall']:.1f}x** "
         f"(best/best {b['soxspipe best'] / b['best']:.1f}x, CPU {b['soxspipe cpu'] / b['cpu']:.1f}x; 20x needs "
         f"{b['soxspipe'] / 20:.2f} s)."]
    if o:
        L.append(f"Before ({o['exe']}, same alternation): {o['wall']:.2f} s (best {o['best']:.2f} s, CPU {o['cpu']:.2f} s): "
                 f"**{b['soxspipe'] / o['wall']:.1f}x** (best/best {b['soxspipe best'] / o['best']:.1f}x, CPU "
                 f"{b['soxspipe cpu'] / o['cpu']:.1f}x).")
    L += ["", "| part | " + ("before (s) | " if o else "") + "after (s) |", "|---|" + ("---|" if o else "") + "---|",
          row("wall time (GNU time)", "wall"),
          row("interpreter start, imports, exit (outside the recipe)", value=b["wall"] - b["run"],
              old=o["wall"] - o["run"] if o else None),
          row("of which `import soxs_mflat.recipe` (numpy, astropy.io.fits, core), this installation", "imports"),
          row("of which an empty interpreter", "python")]
    L += [row(f"step {k}: {name}", f"step {k}") for k, name in STEPS.items()]
    L += [row("step 4: products, all", "step 4"),
          row("step 4: FITS products built and written (the QC pages render meanwhile)", "fits"),
          row("step 4: then waiting for the QC pages", "pdf wait"),
          row("recipe total (`finished in`)", "run"),
          row("FITS I/O floor: read the inputs, write same-size products (astropy, no processing)", "floor")]
    return "\n".join(L) + "\n"


def markdown(rows, scale, repeat) -> str:
    L = ["## soxs-mflat vs soxspipe 0.17.4 on the same simulated sets", "",
         f"`python benchmarks/compare.py --repeat {repeat}`: 5 flats per set (UVB: 5 D2 + 5 QTH; NIR: 5 on + 5 off), "
         "1x1; median wall time of alternating runs and the largest peak RSS (GNU time; the Python CLI's QC-plot "
         "workers are separate processes and not included). Accuracy against the simulator's truth: worst order's "
         "edge RMS at the 20 % level, pixel-response RMS in the orders over the stack's noise (error map), "
         "recall of injected pixels with response <= 0.5, false flags per in-order pixel, inter-order pixels = 1, "
         "largest residual on cosmic-ray hits.", "",
         "| set | tool | wall (s) | peak RSS (MB) | speed-up vs soxspipe | edge RMS (px) | resp. RMS (1e-3) | "
         "resp. RMS / stack noise | low-sens recall | false flags | inter-order = 1 | CR max (σ) |", "|" + "---|" * 12]
    for r in rows:
        base = r["runs"]["soxspipe"]["s"] if "theirs" in r else None
        for tool, key in (("soxs-mflat", "ours"), ("esorex", "ours"), ("soxspipe", "theirs")):
            if tool not in r["runs"]:
                continue
            run = r["runs"][tool]
            sp = f"{base / run['s']:.1f}x" if base and tool != "soxspipe" else "–"
            if key in r:
                a = r[key]
                noise = r["ours"]["noise"]   # the stack's noise limit (same data for every tool)
                acc = (f"{a['edge_rms']:.3f} | {1e3 * a['resp']:.2f} | {a['resp'] / noise:.2f} | {100 * a['recall']:.1f} % | "
                       f"{100 * a['false']:.4f} % | {'yes' if a['inter1'] else 'no'} | {a['cr']:.1f}")
            else:
                acc = f"failed: {r.get('soxspipe_error', '')} | | | | | |"
            L.append(f"| {r['cfg']} | {tool} | {run['s']:.2f} | {run['mb']:.0f} | {sp} | {acc} |")
    L += ["", "QC values side by side (soxs-mflat / soxspipe):", "",
          "| set | " + " | ".join(QC_KEYS) + " |", "|" + "---|" * (len(QC_KEYS) + 1)]
    for r in rows:
        theirs = r.get("theirs", {}).get("qc", {})
        fmt = lambda v: f"{float(v):.4g}" if v not in (None, "–") else "–"  # noqa: E731
        L.append(f"| {r['cfg']} | " + " | ".join(f"{fmt(r['ours']['qc'].get(k))} / {fmt(theirs.get(k, '–'))}"
                                                  for k in QC_KEYS) + " |")
    if scale:
        L += ["", "## Scaling (X-shooter VIS, soxs-mflat)", "",
              "| flats | binning | CLI wall (s) | CLI peak RSS (MB) | esorex wall (s) | esorex peak RSS (MB) |",
              "|---|---|---|---|---|---|"]
        for s in scale:
            es = s.get("es", {"s": float("nan"), "mb": float("nan")})
            L.append(f"| {s['n']} | {s['binning']} | {s['py']['s']:.2f} | {s['py']['mb']:.0f} | {es['s']:.2f} | "
                     f"{es['mb']:.0f} |")
    return "\n".join(L) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/soxs-compare"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--write", type=Path)
    ap.add_argument("--from-json", action="store_true", help="re-render the tables from WORK/results.json")
    ap.add_argument("--only", action="append", choices=[f"{i}_{a}" for i, a in CONFIGS],
                    help="run only these sets (repeatable), e.g. --only soxs_vis --skip-scaling")
    ap.add_argument("--soxspipe-venv", type=Path, help="an existing venv with soxspipe 0.17.4 and six "
                    "(default: WORK/soxspipe-venv, created when missing)")
    ap.add_argument("--breakdown", type=int, metavar="N", help="only the SOXS VIS time breakdown, N alternating runs")
    ap.add_argument("--before", metavar="PYTHON", help="with --breakdown: also time this installation's CLI")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.breakdown:
        b = breakdown(args.work, args.breakdown, args.soxspipe_venv, args.before)
        (args.work / "breakdown.json").write_text(json.dumps(b))
        print(breakdown_markdown(b))
        return 0
    saved = args.work / "results.json"
    if args.from_json:
        data = json.loads(saved.read_text())
        rows, scale = data["rows"], data["scale"]
    else:
        configs = [c for c in CONFIGS if not args.only or f"{c[0]}_{c[1]}" in args.only]
        rows = compare(args.work, args.repeat, configs, args.soxspipe_venv)
        scale = [] if args.skip_scaling else scaling(args.work)
        saved.write_text(json.dumps({"rows": rows, "scale": scale}, default=str))
    text = markdown(rows, scale, args.repeat)
    print(text)
    if args.write:
        old = args.write.read_text() if args.write.exists() else "# Benchmarks\n"
        head, notes = "## soxs-mflat vs soxspipe", "## Where the time goes"   # notes: hand-written, kept
        tail = old[old.index(notes):] if notes in old else ""
        if head in old:
            old = old[:old.index(head)]
        args.write.write_text(old.rstrip() + "\n\n" + text.rstrip() + ("\n\n" + tail if tail else "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
