"""soxs-mflat: master flats and order edges for SOXS and X-shooter (C++ core, Python face)."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["OrderLayout", "StackResult", "clip_and_stack", "detect_edges", "fit_background", "fit_global_poly",
           "flag_low_sensitivity", "in_order_mask", "inner_order_stats", "master_flat", "poly_eval", "stitch",
           "InputError", "ProcessingError", "SoxsMflatError", "__version__"]
_ERRORS = ("InputError", "ProcessingError", "SoxsMflatError")


def __getattr__(name: str):
    """The core's functions and the error classes, imported on first use (PEP 562): the command line
    imports this package first, and must be able to take Ctrl-C before numpy is imported."""
    if name in __all__ and name != "__version__":
        from importlib import import_module
        value = getattr(import_module(".errors" if name in _ERRORS else ".core", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
