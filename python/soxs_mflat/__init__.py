"""soxs-mflat: master flats and order edges for SOXS and X-shooter (C++ core, Python face)."""
from __future__ import annotations

from .core import (OrderLayout, StackResult, clip_and_stack, detect_edges, fit_background, fit_global_poly,
                   flag_low_sensitivity, in_order_mask, inner_order_stats, master_flat, poly_eval, stitch)
from .errors import InputError, ProcessingError, SoxsMflatError

__version__ = "0.1.0"
__all__ = ["OrderLayout", "StackResult", "clip_and_stack", "detect_edges", "fit_background", "fit_global_poly",
           "flag_low_sensitivity", "in_order_mask", "inner_order_stats", "master_flat", "poly_eval", "stitch",
           "InputError", "ProcessingError", "SoxsMflatError", "__version__"]
