"""X-shooter UVB: D2 and QTH master flats and their stitching (see the UVB issue)."""
from __future__ import annotations

from .errors import ProcessingError


def run_uvb(s, p, outdir, overwrite, say):
    raise ProcessingError("X-shooter UVB D2/QTH stitching is not implemented yet")
