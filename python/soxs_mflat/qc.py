"""QC metrics of the spec's table: units, comments, inclusive acceptable ranges and flags."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from . import settings

log = logging.getLogger("soxs_mflat")

# name: (unit, comment)
QC_DEFS = {
    "ORDEXP10": ("electrons", "10th percentile of inner-order flux of the raw flats (median over frames)"),
    "ORDEXP50": ("electrons", "50th percentile of inner-order flux of the raw flats (median over frames)"),
    "ORDEXP90": ("electrons", "90th percentile of inner-order flux of the raw flats (median over frames)"),
    "X RES MIN": ("pixels", "minimum residual (fit - measured) of the order-edge fits"),
    "X RES MAX": ("pixels", "maximum residual (fit - measured) of the order-edge fits"),
    "X RES SD": ("pixels", "standard deviation of the order-edge fit residuals"),
    "N LOW SENS": ("pixels", "low-sensitivity pixels added to the bad-pixel mask"),
    "COLDPIX NUM": ("pixels", "pixels flagged in QUAL (static, low-sensitivity, no data)"),
    "COLDPIX FRAC": ("", "fraction of pixels flagged in QUAL"),
    "INNER ORDER PIX MEAN": ("", "mean master-flat value inside the orders (normalised units)"),
    "INNER ORDER PIX SUM": ("", "sum of master-flat values inside the orders (normalised units)"),
}


@dataclass
class QCRow:
    name: str
    value: float | int
    unit: str
    comment: str
    low: float | None = None
    high: float | None = None

    @property
    def flag(self) -> str:
        if self.low is None:
            return "-"
        return "pass" if self.low <= self.value <= self.high else "fail"


def qc_table(values: dict[str, float], instrument: str, arm: str, extra: dict | None = None) -> list[QCRow]:
    ranges = settings.qc_ranges(instrument, arm)
    rows = []
    defs = dict(QC_DEFS, **(extra or {}))
    for name, (unit, comment) in defs.items():
        if name not in values:
            continue
        lo, hi = ranges.get(name, (None, None))
        v = values[name]
        v = int(v) if isinstance(v, (int,)) or getattr(v, "dtype", None) is not None and v.dtype.kind in "iu" else float(v)
        rows.append(QCRow(name, v, unit, comment, lo, hi))
        if rows[-1].flag == "fail":
            log.warning("QC %s = %.6g is outside its acceptable range [%g, %g]", name, values[name], lo, hi)
    return rows


def format_table(rows: list[QCRow]) -> str:
    head = f"{'QC':22s} {'value':>14s} {'unit':10s} {'range':22s} flag"
    lines = [head, "-" * len(head)]
    for r in rows:
        rng = f"[{r.low:g}, {r.high:g}]" if r.low is not None else ""
        lines.append(f"{r.name:22s} {r.value:14.6g} {r.unit:10s} {rng:22s} {r.flag}")
    return "\n".join(lines)
