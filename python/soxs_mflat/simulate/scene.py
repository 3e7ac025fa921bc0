"""Noiseless scene of a flat set: order geometry (polynomials), illumination, edge truth."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, zoom

from ..core import poly_eval
from ..instruments import Arm
from .profile import edge_offset, pixel_profile

LEVELS = (0.2, 0.3, 0.4, 0.5)


@dataclass
class Geometry:
    arm: Arm
    binx: int
    biny: int
    centre: np.ndarray          # c[i, j] of the true order centre (unbinned science px)
    b_min: np.ndarray
    b_max: np.ndarray
    width_delta: float = 0.0    # slit image this much wider than the arm's nominal (stale-table stress)

    @property
    def bin_a(self):
        return self.binx if self.arm.a_is_x else self.biny

    @property
    def bin_b(self):
        return self.biny if self.arm.a_is_x else self.binx

    def half_width(self, n):
        o = np.asarray(self.arm.orders, float)
        w0, w1 = self.arm.widths
        return 0.5 * (w0 + self.width_delta + (w1 - w0) * (np.asarray(n, float) - o[0]) / (o[-1] - o[0]))

    def edge_poly(self, level: float, side: str) -> np.ndarray:
        """Exact polynomial of the edge at ``level`` of the pixel-integrated profile."""
        o = np.asarray(self.arm.orders, float)
        d = edge_offset(level, self.arm.sigma, 2 * float(self.half_width(o[0])), self.bin_a)
        w0, w1 = self.arm.widths
        slope = 0.5 * (w1 - w0) / (o[-1] - o[0])
        c = self.centre.copy()
        sign = -1.0 if side == "lower" else 1.0
        c[0, 0] += sign * (0.5 * (w0 + self.width_delta) - slope * o[0] + d)
        c[1, 0] += sign * slope
        return c


def make_geometry(arm: Arm, binx: int, biny: int, width_delta: float = 0.0) -> Geometry:
    """Centre A(n, B) = A_mid(n) + t(n) (B - Bm) + k (B - Bm)^2, expanded analytically into a
    (3, 2)-degree power series (A_mid: the cubic through the arm's order centres)."""
    o = np.asarray(arm.orders, float)
    ny, nx = arm.science_shape
    len_b = ny if arm.a_is_x else nx
    bm, k = 0.5 * (len_b - 1), 1.2e-5
    mid = np.polynomial.polynomial.Polynomial.fit(o, arm.centres, 3).convert().coef
    t = np.array([0.01 - 0.002 * o.mean(), 0.002])         # t(n) = t0 + t1 n
    centre = np.zeros((4, 3))
    centre[: mid.size, 0] = mid
    centre[:2, 0] -= bm * t
    centre[0, 0] += k * bm * bm
    centre[:2, 1] = t
    centre[0, 1] -= 2 * k * bm
    centre[0, 2] = k
    f = (o - o[0]) / max(o[-1] - o[0], 1)
    (l0, h0), (l1, h1) = arm.b_ranges
    return Geometry(arm, binx, biny, centre, l0 + (l1 - l0) * f, h0 + (h1 - h0) * f, width_delta)


def lamp_levels(arm: Arm, lamp: str) -> np.ndarray:
    """Relative brightness per order: D2 bright in 21-24, QTH bright in 13-20 (UVB)."""
    o = np.asarray(arm.orders, float)
    base = 0.7 + 0.3 * (o - o.min()) / max(np.ptp(o), 1)
    if arm.arm == "UVB" and lamp == "D2":
        return np.where(o >= 21, 1.0 - 0.05 * (o - 21), 0.02 * 0.7 ** (21 - o))
    if arm.arm == "UVB":
        return np.where(o <= 20, base, 0.03 * 0.7 ** (o - 20))
    return base


def illumination(geo: Geometry, levels: np.ndarray) -> np.ndarray:
    """Expected electrons per (binned) pixel per unit level, processing frame, science region."""
    arm = geo.arm
    ny, nx = arm.science_shape
    la, lb = (nx, ny) if arm.a_is_x else (ny, nx)
    na, nb = la // geo.bin_a, lb // geo.bin_b
    # geometry in soxspipe's order-table convention: binned pixel i is unbinned coordinate bin * i (and
    # covers bin unbinned px centred there), so truth and order-centre tables are in that convention
    a_unb = geo.bin_a * np.arange(na, dtype=float)
    img = np.zeros((nb, na), np.float32)
    for k, n in enumerate(arm.orders):
        b_all = geo.bin_b * np.arange(nb, dtype=float)
        rows = np.flatnonzero((b_all >= geo.b_min[k] - 30) & (b_all <= geo.b_max[k] + 30))
        b = b_all[rows]
        c = poly_eval(geo.centre, n, b)
        hw = float(geo.half_width(n))
        span = np.flatnonzero((a_unb > c.min() - hw - 12) & (a_unb < c.max() + hw + 12))
        prof = pixel_profile(a_unb[span][None, :], (c - hw)[:, None], (c + hw)[:, None], arm.sigma, geo.bin_a)
        length = geo.b_max[k] - geo.b_min[k]
        centre_b = 0.5 * (geo.b_max[k] + geo.b_min[k])
        blaze = 0.35 + 0.65 * np.exp(-0.5 * ((b - centre_b) / (0.35 * length)) ** 2)
        taper = 1 / (1 + np.exp(-(b - geo.b_min[k]) / 4)) / (1 + np.exp((b - geo.b_max[k]) / 4))
        spec = levels[k] * blaze * taper * geo.bin_a * geo.bin_b
        img[np.ix_(rows, span)] += (prof * spec[:, None]).astype(np.float32)
    return img if arm.a_is_x else np.ascontiguousarray(img.T)


def scattered(illum: np.ndarray, fraction: float = 0.012) -> np.ndarray:
    """Smooth scattered light, ~1 % of the local order flux: the illumination blurred at 1/8 scale
    (8 x 8 block means: a subsampled grid would alias the sharp order edges into blobs), the edge
    blocks continued beyond the detector (orders run off it). The block means sit at the blocks'
    centres (``grid_mode``): zoom's default aligns the corner samples and stretched the light by
    up to +-3.5 px off the orders that cause it."""
    ny, nx = illum.shape
    pad = np.pad(illum, ((0, -ny % 8), (0, -nx % 8)))
    small = pad.reshape(pad.shape[0] // 8, 8, pad.shape[1] // 8, 8).mean(axis=(1, 3))
    blurred = gaussian_filter(small, 6.0, mode="nearest")
    big = zoom(blurred, 8, order=1, grid_mode=True, mode="nearest")
    return (fraction * big[: illum.shape[0], : illum.shape[1]]).astype(np.float32)


def edge_points(geo: Geometry, step: float = 25.0) -> dict:
    """Sampled true edges: per order every ``step`` px along B, at every level of LEVELS."""
    rows = {"order": [], "b": [], "level": [], "lower": [], "upper": []}
    for k, n in enumerate(geo.arm.orders):
        b = np.arange(np.ceil(geo.b_min[k]), geo.b_max[k] + 1, step)
        for lev in LEVELS:
            rows["order"] += [n] * b.size
            rows["b"] += list(b)
            rows["level"] += [lev] * b.size
            rows["lower"] += list(poly_eval(geo.edge_poly(lev, "lower"), n, b))
            rows["upper"] += list(poly_eval(geo.edge_poly(lev, "upper"), n, b))
    return {k: np.asarray(v) for k, v in rows.items()}
