"""Detector header keywords per instrument: the single source for the Python front end and, through
scripts/gen_recipe_header.py, the esorex plugin (names without the HIERARCH prefix)."""
from __future__ import annotations

from typing import Mapping

DETECTOR_KEYS = {
    "SOXS": {"binx": "ESO DET BINX", "biny": "ESO DET BINY", "conad": "ESO DET OUT1 CONAD",
             "gain": "ESO DET OUT1 GAIN", "ron": "ESO DET CHIP RON", "readout": "ESO DET READ CURID"},
    # X-shooter has no OUT1 GAIN: its gain is CONAD alone
    "XSHOOTER": {"binx": "ESO DET WIN1 BINX", "biny": "ESO DET WIN1 BINY", "conad": "ESO DET OUT1 CONAD",
                 "gain": "", "ron": "ESO DET OUT1 RON", "readout": "ESO DET READ SPEED"},
}


def key(instrument: str, what: str) -> str:
    """The astropy name (HIERARCH ...) of a detector keyword; '' where the instrument has none."""
    k = DETECTOR_KEYS[instrument][what]
    return f"HIERARCH {k}" if k else ""


def gain_e_per_adu(header: Mapping, instrument: str, nominal: float) -> float:
    """e-/ADU: CONAD (SOXS: the larger of CONAD and GAIN, as soxspipe), else the arm's nominal value."""
    conad = header.get(key(instrument, "conad"))
    if conad is None:
        return nominal
    g = key(instrument, "gain")
    return max(float(conad), float(header.get(g, 0.0))) if g else float(conad)
