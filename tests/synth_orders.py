"""Tiny synthetic echelle frames with exactly known edges, for kernel tests."""
from __future__ import annotations

import numpy as np

from soxs_mflat.simulate.profile import edge_offset, pixel_profile

SIGMA = 1.5


def centre_coeffs() -> np.ndarray:
    """c[i, j]: centre A = 40 + 80 n + 0.01 B + 2e-5 B^2 (+ 0.002 n B), unbinned px."""
    c = np.zeros((2, 3))
    c[0, 0], c[1, 0], c[0, 1], c[0, 2], c[1, 1] = 40.0, 80.0, 0.01, 2e-5, 0.002
    return c


def half_width(n):
    return 18.0 + 1.0 * np.asarray(n, float)


def frame(ny=600, nx=420, orders=(1, 2, 3, 4), a_is_x=True, level=1000.0, scatter=0.0, flip=False):
    """Noiseless frame: per order a top-hat of half-width 18+n px around the centre polynomial,
    Gaussian-blurred (sigma 1.5) and pixel-integrated, times a smooth spectrum along B."""
    la, lb = nx, ny
    a = np.arange(la)[None, :]
    b = np.arange(lb)[:, None]
    c = centre_coeffs()
    img = np.zeros((lb, la))
    for n in orders:
        cen = sum(c[i, j] * n**i * b**j for i in range(2) for j in range(3))
        if flip:
            cen = la - 1 - cen
        hw = half_width(n)
        img += pixel_profile(a, cen - hw, cen + hw, SIGMA) * (1 + 0.3 * np.sin(b / lb * np.pi))
    img = np.maximum(level * img + scatter * level * (1 + a / la), 0.0)
    img = img.astype(np.float32)
    return img if a_is_x else np.ascontiguousarray(img.T)


def true_edges(n, b, level=0.2, pixel=1.0):
    """The edges at ``level`` of the profile integrated over ``pixel`` px (2: a 2x2-binned frame)."""
    c = centre_coeffs()
    cen = sum(c[i, j] * n**i * b**j for i in range(2) for j in range(3))
    d = np.vectorize(lambda w: edge_offset(level, SIGMA, w, pixel))(2 * half_width(n))
    return cen - half_width(n) - d, cen + half_width(n) + d


def edge_coeffs(level=0.2, flip_la=None):
    """Lower/upper edge polynomials c[i, j] at a profile level (exact for this geometry)."""
    d = edge_offset(level, SIGMA, 2 * half_width(1))  # independent of width for wide top-hats
    lo, up = centre_coeffs().copy(), centre_coeffs().copy()
    lo[0, 0] -= 18.0 + d
    lo[1, 0] -= 1.0
    up[0, 0] += 18.0 + d
    up[1, 0] += 1.0
    if flip_la is not None:  # A -> la - 1 - A swaps the roles of lower and upper
        lo, up = -up, -lo
        lo[0, 0] += flip_la - 1
        up[0, 0] += flip_la - 1
    return lo, up
