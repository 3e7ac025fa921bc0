"""Clip-and-stack benchmark: soxs-mflat core vs astropy sigma_clip + mean, same data, same run.

    python benchmarks/bench_core.py [--repeat 3] [--write docs/benchmarks.md]

Each measurement runs in a fresh subprocess (so peak RSS belongs to one method only); the two
methods alternate. Data: 5 frames of 4000 x 2048 float32, Gaussian noise plus 2000 cosmics per
frame; sigma 5, 5 iterations, median centre, MAD sigma.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import json, sys, time
import numpy as np
method = sys.argv[1]
rng = np.random.default_rng(0)
cube = np.empty((5, 4000, 2048), np.float32)
for k in range(5):
    cube[k] = rng.standard_normal((4000, 2048), dtype=np.float32) * 30 + 1000
    idx = rng.choice(cube[k].size, 2000, replace=False)
    cube[k].flat[idx] += 20000
def status_mb(key):
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
if method == 'soxs':
    import soxs_mflat as sm
    sm.clip_and_stack(list(cube[:, :8]), sigma_lower=5, sigma_upper=5, max_iters=5)  # warm-up import
else:
    from astropy.stats import sigma_clip
    sigma_clip(cube[:, :8], sigma=5, maxiters=5, cenfunc='median', stdfunc='mad_std', axis=0)
base = status_mb('VmRSS')
with open('/proc/self/clear_refs', 'w') as fh:  # reset the high-water mark (VmHWM) to now
    fh.write('5')
t = time.perf_counter()
if method == 'soxs':
    r = sm.clip_and_stack(list(cube), sigma_lower=5, sigma_upper=5, max_iters=5)
    mean = r.mean
else:
    c = sigma_clip(cube, sigma=5, maxiters=5, cenfunc='median', stdfunc='mad_std', axis=0)
    mean = c.mean(axis=0).filled(0).astype(np.float32)
dt = time.perf_counter() - t
peak = status_mb('VmHWM')
cube_mb = cube.nbytes / 2**20
extra = peak - base
print(json.dumps(dict(method=method, seconds=dt, cube_mb=cube_mb, extra_mb=max(extra, 0.0),
                      checksum=float(np.float64(mean).sum()))))
"""


def run(method: str) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, method], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", type=Path, help="update this markdown file's clip-and-stack section")
    args = ap.parse_args()
    res = {"soxs": [], "astropy": []}
    for _ in range(args.repeat):
        for m in ("soxs", "astropy"):
            res[m].append(run(m))
    summary = {}
    for m, rs in res.items():
        summary[m] = dict(seconds=statistics.median(r["seconds"] for r in rs),
                          extra_mb=statistics.median(r["extra_mb"] for r in rs), cube_mb=rs[0]["cube_mb"],
                          checksum=rs[0]["checksum"])
    s, a = summary["soxs"], summary["astropy"]
    rel = abs(s["checksum"] - a["checksum"]) / abs(a["checksum"])
    lines = [
        "## clip-and-stack: 5 x 4000 x 2048 float32, sigma 5, 5 iterations, median/MAD",
        "",
        f"Measured with `python benchmarks/bench_core.py --repeat {args.repeat}` (median of {args.repeat} alternating runs,",
        "each in a fresh process; peak = cube + extra RSS during the call).",
        "",
        "| method | time (s) | extra peak RSS (MB) | peak / cube |",
        "|---|---|---|---|",
    ]
    for name, m in (("soxs-mflat core (2 threads)", s), ("astropy sigma_clip + mean", a)):
        lines.append(f"| {name} | {m['seconds']:.3f} | {m['extra_mb']:.0f} | "
                     f"{(m['cube_mb'] + m['extra_mb']) / m['cube_mb']:.2f} |")
    lines += ["", f"Speed ratio astropy / soxs-mflat: **{a['seconds'] / s['seconds']:.1f}x**; "
              f"cube {s['cube_mb']:.0f} MB; relative difference of the summed means: {rel:.1e}.", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        _update(args.write, text)
    return 0


def _update(path: Path, section: str) -> None:
    head = "## clip-and-stack"
    old = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if head in old:
        pre, rest = old.split(head, 1)
        nxt = rest.find("\n## ")
        old = pre + (rest[nxt + 1:] if nxt >= 0 else "")
    path.write_text(old.rstrip() + "\n\n" + section)


if __name__ == "__main__":
    sys.exit(main())
