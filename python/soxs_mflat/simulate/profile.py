"""Cross-order profile of a slit flat: a top-hat slit image convolved with a Gaussian and
integrated over each pixel, with its level crossings (the simulator's edge truth).

The truth of an edge at level ``f`` is where the pixel-integrated profile ``P(a)`` (what a pixel
centred at ``a`` records) equals ``f`` times its plateau; for a symmetric profile the 50 % level
is exactly the top-hat edge.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

_SQRT2PI = np.sqrt(2.0 * np.pi)


def _g(t: np.ndarray) -> np.ndarray:
    """Antiderivative of the normal CDF: t Phi(t) + phi(t)."""
    return t * ndtr(t) + np.exp(-0.5 * t * t) / _SQRT2PI


def pixel_profile(a: np.ndarray, lo: np.ndarray, up: np.ndarray, sigma: float, pixel: float = 1.0) -> np.ndarray:
    """Mean over the pixel [a - pixel/2, a + pixel/2] of a unit top-hat [lo, up] convolved with
    N(0, sigma); ``pixel`` is the binning along this axis (all lengths in unbinned px)."""
    a, lo, up = np.broadcast_arrays(np.asarray(a, float), np.asarray(lo, float), np.asarray(up, float))
    s, h = float(sigma), 0.5 * float(pixel)
    rise = _g((a + h - lo) / s) - _g((a - h - lo) / s)
    fall = _g((a + h - up) / s) - _g((a - h - up) / s)
    return s * (rise - fall) / float(pixel)


def edge_offset(level: float, sigma: float, width: float, pixel: float = 1.0) -> float:
    """Distance outward from the top-hat edge where the profile falls to ``level`` of its plateau.

    Negative values mean inside the top-hat (levels above 50 %). Solved by bisection on the
    pixel-integrated profile of a top-hat of the given width.
    """
    plateau = float(pixel_profile(0.0, -width / 2, width / 2, sigma, pixel))
    lo_x, hi_x = -width / 2, width / 2 + 10 * sigma + 2 * pixel
    for _ in range(80):  # profile decreases monotonically on the upper side
        mid = 0.5 * (lo_x + hi_x)
        if float(pixel_profile(mid, -width / 2, width / 2, sigma, pixel)) > level * plateau:
            lo_x = mid
        else:
            hi_x = mid
    return 0.5 * (lo_x + hi_x) - width / 2
