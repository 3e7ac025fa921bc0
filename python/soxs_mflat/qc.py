"""QC metrics of the spec's table: names, units, comments and default ranges from the contract
(``data/contract/qc.yaml``), inclusive range checks, the QC table and ``qc.json``."""
from __future__ import annotations

import json
import math
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from . import contract
from .errors import InputError

log = logging.getLogger("soxs_mflat")
JSON_FORMAT = "soxs-mflat-qc/1"


def definitions() -> dict[str, tuple[str, str]]:
    """QC name -> (unit, comment), in table order."""
    return {n: (d["unit"], d["comment"]) for n, d in contract.section("qc")["metrics"].items()}


def default_ranges(instrument: str, arm: str) -> dict[str, tuple[float, float]]:
    r = ((contract.section("qc")["ranges"].get(instrument.lower()) or {}).get(arm.lower())) or {}
    return {k: (float(v[0]), float(v[1])) for k, v in r.items()}


def qc_name(key: str) -> str:
    """soxspipe's key normalisation: ``inner-order-pix-sum`` / ``inner_order_pix_sum`` -> ``INNER ORDER PIX SUM``."""
    return str(key).replace("-", " ").replace("_", " ").strip().upper()


def parse_ranges(block: Any, origin: str) -> dict[str, tuple[float, float]]:
    """A ``qc-acceptable-ranges`` block (soxspipe's format: ``name: [low, high]``), checked."""
    if not isinstance(block, Mapping):
        raise InputError(f"{origin}: qc-acceptable-ranges must map QC names to [low, high]")
    known, ignored = definitions(), set(contract.section("qc")["not_computed"])
    out = {}
    for key, val in block.items():
        name = qc_name(key)
        if name in ignored:
            continue
        if name not in known:   # listed as soxspipe's files spell them
            raise InputError(f"{origin}: qc-acceptable-ranges: unknown QC {key!r}; known: "
                             f"{', '.join(n.lower().replace(' ', '-') for n in known)}")
        try:
            if any(isinstance(v, bool) for v in val):   # YAML's true/false are no bounds (float(True) is 1.0)
                raise TypeError
            lo, hi = (float(v) for v in val)
        except (TypeError, ValueError):
            raise InputError(f"{origin}: qc-acceptable-ranges: {key} must be [low, high], got {val!r}") from None
        if math.isnan(lo) or math.isnan(hi):
            raise InputError(f"{origin}: qc-acceptable-ranges: {key} must be two numbers, got {val!r}")
        if not lo <= hi:
            raise InputError(f"{origin}: qc-acceptable-ranges: {key} has low {lo:g} > high {hi:g}")
        if not (math.isfinite(lo) and math.isfinite(hi)):   # qc.json (JSON has no infinity) could not hold it
            raise InputError(f"{origin}: qc-acceptable-ranges: {key} must be two finite numbers, got {val!r} "
                             "(for an open end give a large number, e.g. 1e30)")
        out[name] = (lo, hi)
    return out


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
        """pass / fail against the acceptable range; none without one (qc.json's words)."""
        if self.low is None:
            return "none"
        return "pass" if self.low <= self.value <= self.high else "fail"


def _number(v) -> float | int:
    kind = getattr(getattr(v, "dtype", None), "kind", "")
    return int(v) if isinstance(v, int) or (kind != "" and kind in "iu") else float(v)


def qc_table(values: Mapping[str, float], ranges: Mapping[str, tuple[float, float]]) -> list[QCRow]:
    """Rows in contract order for the QCs present in ``values``; ``ranges`` as from settings.qc_ranges."""
    rows = []
    for name, (unit, comment) in definitions().items():
        if name in values:
            lo, hi = ranges.get(name, (None, None))
            rows.append(QCRow(name, _number(values[name]), unit, comment, lo, hi))
    return rows


def failures(rows: Iterable[QCRow]) -> list[QCRow]:
    return [r for r in rows if r.flag == "fail"]


def failure_text(r: QCRow, what: str = "") -> str:
    where = f" ({what})" if what else ""
    return f"QC {r.name}{where} = {r.value:.6g} is outside its acceptable range [{r.low:g}, {r.high:g}]"


def log_failures(rows: Iterable[QCRow], what: str = "") -> None:
    for r in failures(rows):
        log.warning("%s", failure_text(r, what))


def format_table(rows: list[QCRow]) -> str:
    head = f"{'QC':22s} {'value':>14s} {'unit':10s} {'range':22s} flag"
    lines = [head, "-" * len(head)]
    for r in rows:
        rng = f"[{r.low:g}, {r.high:g}]" if r.low is not None else ""
        lines.append(f"{r.name:22s} {r.value:14.6g} {r.unit:10s} {rng:22s} {'-' if r.flag == 'none' else r.flag}")
    return "\n".join(lines)


def night_of(date_obs: str | None) -> str | None:
    """The observing night (soxspipe's convention): the date of DATE-OBS minus night_start_offset_hrs."""
    if not date_obs:
        return None
    try:
        t = datetime.fromisoformat(str(date_obs).strip())
    except ValueError:
        return None
    hours = contract.section("qc")["json"]["night_start_offset_hrs"]
    return (t - timedelta(hours=hours)).date().isoformat()


def rows_json(rows: Iterable[QCRow]) -> list[dict]:
    # JSON has no NaN: a value that could not be computed is null
    return [{"name": r.name, "value": r.value if math.isfinite(r.value) else None, "unit": r.unit,
             "range": None if r.low is None else [r.low, r.high],
             "flag": r.flag, "comment": r.comment} for r in rows]


def qc_record(rows: list[QCRow], run: Mapping[str, Any], per_lamp: Mapping[str, list[QCRow]] | None = None) -> dict:
    """The content of qc.json (format in docs/recipe.md "qc.json"). ``run`` holds instrument, arm,
    date_obs, inputs (list of {name, catg}), products (label -> file name), front_end, pipeline."""
    all_rows = list(rows) + [r for rs in (per_lamp or {}).values() for r in rs]
    rec = {"format": JSON_FORMAT, "recipe": "soxs_mflat", **run, "night": night_of(run.get("date_obs")),
           "passed": not failures(all_rows), "n_failed": len(failures(all_rows)), "qc": rows_json(rows)}
    if per_lamp:
        rec["per_lamp"] = {lamp: rows_json(rs) for lamp, rs in per_lamp.items()}
    return rec


def qc_json_bytes(record: dict) -> bytes:
    return (json.dumps(record, indent=1, allow_nan=False) + "\n").encode()
