"""Header values: every value the recipe reads is converted here, with the type, range and key
fallbacks of the input contract (data/contract/inputs.yaml); a bad value is a ``bad-keyword`` error
naming the file and the key. The esorex plugin has the same rules, generated from the same file."""
from __future__ import annotations

import math
from typing import Any, Mapping

from .contract import section
from .rules import rule_error

_MISSING = object()


def _contract() -> dict:
    return section("inputs")


def hierarch(name: str) -> str:
    """The astropy name of a header key ('ESO DET BINX' -> 'HIERARCH ESO DET BINX')."""
    return f"HIERARCH {name}" if " " in name else name


def detector_keys(instrument: str, what: str) -> list[str]:
    """Header keys (astropy names) of a detector value, in the order they are tried."""
    return [hierarch(k) for k in _contract()["detector_keys"][instrument][what]]


def key(instrument: str, what: str) -> str:
    """The first header key of a detector value; '' where the instrument has none."""
    keys = detector_keys(instrument, what)
    return keys[0] if keys else ""


def convert(value: Any, what: str, file: str, key_name: str):
    """``value`` as the contract's type of ``what``, inside its range, else a bad-keyword error."""
    spec = _contract()["values"][what]

    def bad(problem: str):
        return rule_error("bad-keyword", file=file, key=key_name.replace("HIERARCH ", ""), value=shown(value),
                          problem=problem)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad("is not a number")
    v = float(value)
    if not math.isfinite(v):
        raise bad("is not finite")
    if spec["type"] == "int":
        if v != int(v):
            raise bad("is not an integer")
        v = int(v)
    lo, hi = spec.get("min"), spec.get("max")
    if (lo is not None and v < lo) or (hi is not None and v > hi) or (spec.get("positive") and v <= 0):
        lims = f"> 0 and <= {hi:g}" if spec.get("positive") else f"in [{lo:g}, {hi:g}]"
        raise bad(f"is outside the accepted range ({lims})")
    return v


def shown(value: Any, other=repr) -> str:
    """A header value in a message: numbers as %g (as the plugin prints them), anything else as ``other``
    gives it (repr: a string quoted)."""
    number_like = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"{value:g}" if number_like else other(value)


def number(header: Mapping, name: str, file: str, what: str | None = None, default: Any = _MISSING):
    """The value of header key ``name`` converted as ``what`` (default: the key itself, e.g. EXPTIME);
    ``default`` when absent (no default: a bad-keyword error)."""
    k = hierarch(name)
    if k not in header:
        if default is _MISSING:
            raise rule_error("bad-keyword", file=file, key=name, value="(missing)", problem="is required")
        return default
    return convert(header[k], what or name, file, k)


def detector_value(header: Mapping, instrument: str, what: str, file: str, default: Any = None):
    """A detector value from the first of its keys that is present (X-shooter binning: CDELT1/2 too)."""
    for k in detector_keys(instrument, what):
        if k in header:
            return convert(header[k], what, file, k)
    return default


def binning(header: Mapping, instrument: str, nir_like: bool, file: str) -> tuple[int, int]:
    """(binx, biny): NIR detectors are never binned; a binning missing from every key is 1."""
    if nir_like:
        return 1, 1
    return (detector_value(header, instrument, "binx", file, 1), detector_value(header, instrument, "biny", file, 1))


def gain_e_per_adu(header: Mapping, instrument: str, nominal: float, file: str = "header") -> float:
    """e-/ADU: CONAD (SOXS: the larger of CONAD and GAIN, as soxspipe), else the arm's nominal value."""
    conad = detector_value(header, instrument, "conad", file)
    if conad is None:
        return nominal
    gain = detector_value(header, instrument, "gain", file, 0.0) if detector_keys(instrument, "gain") else 0.0
    return max(conad, gain)


def text(header: Mapping, name: str) -> str | None:
    """A string-like value (instrument, arm, DPR keys, slit, readout), upper case, spaces removed
    at the ends; None when absent."""
    v = header.get(hierarch(name))
    return None if v is None else str(v).strip().upper()
