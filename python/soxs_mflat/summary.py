"""QC across nights: ``OUT/qc_summary.csv`` (and ``.parquet`` where pyarrow is installed), one row per
set with every QC value and its flag (read from each set's qc.json), and ``OUT/qc_trends.pdf``:
each QC value against night, per instrument and arm, with its acceptable range drawn."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

BASE_COLUMNS = ["night", "instrument", "arm", "setup", "set", "status", "reason", "products", "seconds",
                "worker_peak_rss_mib", "qc_passed"]


def _qc_record(outdir: Path) -> dict | None:
    try:
        from .contract import section
        return json.loads((outdir / section("qc")["json"]["file"]).read_text())
    except (OSError, ValueError):
        return None


def rows(jobs: Iterable) -> list[dict]:
    """One dict per set: the BASE_COLUMNS, then "<QC>" and "<QC> flag" for each QC of its qc.json."""
    out = []
    for j in jobs:
        row = {"night": j.night, "instrument": j.instrument, "arm": j.arm, "setup": j.setup, "set": j.name,
               "status": j.status, "reason": j.reason, "products": "", "seconds": round(j.seconds, 3),
               "worker_peak_rss_mib": None if j.peak_rss_mib is None else round(j.peak_rss_mib, 1), "qc_passed": ""}
        rec = _qc_record(j.outdir) if j.status in ("done", "skipped") else None
        if rec is not None:
            row["products"] = ";".join(str(Path(j.outdir, n)) for n in rec["products"].values())
            row["qc_passed"] = rec["passed"]
            for q in rec["qc"]:
                row[q["name"]] = q["value"]
                row[f"{q['name']} flag"] = q["flag"]
                if q["range"] is not None:
                    row[f"{q['name']} range"] = q["range"]
        out.append(row)
    return out


def _columns(table: list[dict]) -> list[str]:
    cols = list(BASE_COLUMNS)
    for r in table:
        cols += [k for k in r if k not in cols and not k.endswith(" range")]
    return cols


def _write_atomic(path: Path, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
    return path


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def write_csv(table: list[dict], path: Path) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, _columns(table), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    return _write_atomic(path, buf.getvalue().encode())


def write_parquet(table: list[dict], path: Path) -> Path | None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    cols = _columns(table)
    data = {c: [r.get(c) for r in table] for c in cols}
    data["qc_passed"] = [v if isinstance(v, bool) else None for v in data.get("qc_passed", [])]   # a boolean
    for c in cols:    # one type per column: QC values are numbers, qc_passed a boolean (null: not reduced), the rest text
        if c != "qc_passed" and not all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool)
                                        for v in data[c]):
            data[c] = [None if v is None else str(v) for v in data[c]]
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table(data), buf)
    return _write_atomic(path, buf.getvalue().to_pybytes())


def trends_pdf(table: list[dict], path: Path) -> Path:
    """One page per QC value: a panel per instrument/arm that has the value (CROSSOVER ORDER: UVB only), at most
    three panels a row, value against night, one colour per setup, the acceptable range shaded green, values
    outside it as red crosses, and the nights of that arm's failed sets marked (a failed night looked like one
    without data). Without a range the y axis spans at least +-2 % of the values' centre, with no offset."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages
    done = [r for r in table if r["qc_passed"] != ""]
    failed = [r for r in table if r.get("status") == "failed"]
    names = [c[:-5] for c in _columns(done) if c.endswith(" flag")]
    nights = sorted({r["night"] for r in done + failed if r.get("night")})   # a SOF that did not read has none
    from .qc import definitions
    units = {n: u for n, (u, _) in definitions().items()}
    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        for name in names or [None]:
            groups = sorted({(r["instrument"], r["arm"]) for r in done if name is None or r.get(name) is not None})
            groups = groups or [("", "")]
            ncol = min(3, len(groups))
            nrow = -(-len(groups) // ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(max(7.0, 4.2 * ncol + 0.8), 3.6 * nrow + 0.8), squeeze=False)
            for ax in axes.flat[len(groups):]:
                ax.axis("off")
            for ax, (inst, arm) in zip(axes.flat, groups):
                _trend_panel(ax, [r for r in done if (r["instrument"], r["arm"]) == (inst, arm)], name, nights,
                             [r for r in failed if (r["instrument"], r["arm"]) == (inst, arm) and r.get("night")])
                ax.set_title(f"{inst} {arm}", fontsize=10)
                if name is not None:
                    ax.set_ylabel(f"{name} ({units[name]})" if units.get(name) else name, fontsize=8)
            if name is None:   # an empty run: one page saying so
                fig.suptitle("no reduced sets: no QC to plot", fontsize=10)
            else:
                fig.suptitle(f"{name} per night: {len(done)} reduced sets, {len(failed)} failed\n(green: acceptable "
                             "range; red x: outside it; red dashes: a night with a failed set)", fontsize=9)
            fig.tight_layout()
            pdf.savefig(fig)
            plt.close(fig)
    return _write_atomic(path, buf.getvalue())


def _trend_panel(ax, rs: list[dict], name: str | None, nights: list[str], failed=()) -> None:
    xs = {n: i for i, n in enumerate(nights)}
    for x in sorted({xs[r["night"]] for r in failed}):
        ax.axvline(x, color="tab:red", ls="--", lw=1.0, alpha=0.7)
    if name is None:
        ax.text(0.5, 0.5, "no reduced sets", transform=ax.transAxes, ha="center", color="0.5")
        ax.axis("off")
        return
    for lo, hi in {tuple(r[f"{name} range"]) for r in rs if r.get(f"{name} range")}:
        ax.axhspan(lo, hi, color="tab:green", alpha=0.12, lw=0)
        ax.axhline(lo, color="tab:green", lw=0.8)
        ax.axhline(hi, color="tab:green", lw=0.8)
    setups = sorted({r["setup"] for r in rs})
    for k, setup in enumerate(setups):
        pts = [(xs[r["night"]], r[name], r.get(f"{name} flag")) for r in rs if r["setup"] == setup
               and r.get(name) is not None]
        colour = f"C{k % 10}"
        ax.plot([x for x, _, _ in pts], [y for _, y, _ in pts], "o-", color=colour, ms=4, lw=0.8, label=setup)
        bad = [(x, y) for x, y, f in pts if f == "fail"]
        if bad:
            ax.plot(*zip(*bad), "x", color="tab:red", ms=9, mew=2)
    values = [r[name] for r in rs if r.get(name) is not None]
    ranged = any(r.get(f"{name} range") for r in rs)
    if values and not ranged:   # no range to frame it: a 0.5 % drift must not fill the panel as a 50 % one would
        mid, half = (max(values) + min(values)) / 2, (max(values) - min(values)) / 2 * 1.2
        half = max(half, 0.02 * abs(mid), 1e-12)
        ax.set_ylim(mid - half, mid + half)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)   # "+1.06285e6" above the axis was misread
    ax.set_xticks(range(len(nights)))
    ax.set_xticklabels(nights, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_xlim(-0.5, max(len(nights), 1) - 0.5)   # half a night of room: the last label and point are not clipped
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(alpha=0.3)
    if setups:
        ax.legend(fontsize=7, loc="best", title="setup", title_fontsize=7)
    else:
        ax.text(0.5, 0.5, "no value", transform=ax.transAxes, ha="center", color="0.5")


def write_summary(jobs, out: Path, plots: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = rows(jobs)
    paths = [write_csv(table, out / "qc_summary.csv")]
    pq = write_parquet(table, out / "qc_summary.parquet")
    if pq is not None:
        paths.append(pq)
    if plots:
        paths.append(trends_pdf(table, out / "qc_trends.pdf"))
    else:   # an older batch's pages beside this batch's table would disagree with it
        (out / "qc_trends.pdf").unlink(missing_ok=True)
    return paths
