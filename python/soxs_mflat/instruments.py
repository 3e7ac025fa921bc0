"""Instrument facts per arm, used by the recipe (detector layout, orientation, gain, read noise,
calibration scheme) and by the simulator (orders, their positions and widths, exposure times).

Numbers come from the reference docs (soxspipe detector YAMLs, ESO spectral-format and pinhole
tables as summarised in ``instruments-and-peers.md``). Positions are in the processing frame
(after soxspipe's ``np.rot90(raw, rotation / 90)`` and the science-region trim), unbinned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Arm:
    instrument: str            # "SOXS" or "XSHOOTER"
    arm: str                   # "UVB", "VIS", "NIR"
    full_shape: tuple          # processing-frame shape before trimming (rows, cols)
    science: tuple             # (row0, row1, col0, col1) science region, unbinned
    rotation: int              # soxspipe clockwise-rotation (applied as np.rot90 k = rotation/90)
    gain: float                # e-/ADU
    ron: float                 # e-
    a_is_x: bool               # cross-dispersion axis is x (columns)
    orders: tuple              # echelle order numbers
    centres: tuple             # order centre along A at mid-B (science-region coordinates)
    widths: tuple              # (first, last) slit image width in px, linear in order index
    b_ranges: tuple            # ((first min, max), (last min, max)) along B, linear in order index
    exptime: float
    sigma: float = 1.5         # Gaussian blur of the slit edges (px)
    nir_like: bool = False     # dark/lamp-off calibration instead of a bias
    lamps: tuple = ("QTH",)
    slit: str = "1.0"
    extra: dict = field(default_factory=dict)

    @property
    def science_shape(self):
        r0, r1, c0, c1 = self.science
        return (r1 - r0, c1 - c0)


def _centres_from_seps(first: float, seps, sign: int) -> tuple:
    return tuple(float(v) for v in first + sign * np.concatenate([[0], np.cumsum(seps)]))


ARMS = {
    ("xshooter", "uvb"): Arm(
        "XSHOOTER", "UVB", (3000, 2144), (0, 3000, 48, 2096), 180, 1.61, 2.60, True, tuple(range(13, 25)),
        (1737, 1659, 1575, 1487, 1392, 1291, 1183, 1068, 945, 813, 672, 521),
        (64.5, 68.9), ((19, 2999), (627, 2334)), 4.0, lamps=("D2", "QTH"), slit="1.0x11"),
    ("xshooter", "vis"): Arm(
        "XSHOOTER", "VIS", (4000, 2106), (0, 4000, 10, 2058), 0, 1.4, 5.3, True, tuple(range(16, 31)),
        _centres_from_seps(1844, [80, 83, 87, 91, 95, 101, 106, 112, 117, 124, 131, 138, 146, 153], -1),
        (67.1, 70.8), ((1, 3999), (1194, 3115)), 3.0, slit="1.0x11"),
    ("xshooter", "nir"): Arm(
        "XSHOOTER", "NIR", (2048, 1100), (4, 2044, 20, 1076), 90, 2.12, 8.0, True, tuple(range(11, 27)),
        _centres_from_seps(1003, [70, 64, 59, 56, 55, 56, 56, 57, 59, 60, 63, 64, 67, 70, 72], -1),
        (41.7, 45.2), ((1, 2039), (541, 1620)), 10.0, nir_like=True, slit="1.2x11"),
    ("soxs", "vis"): Arm(
        "SOXS", "VIS", (4096, 908), (0, 4096, 50, 858), 0, 1.0, 3.8, True, (1, 2, 3, 4),
        (172, 315, 471, 646), (43.6, 45.0), ((0, 4095), (0, 4095)), 20.0, slit="SLIT1.0"),
    ("soxs", "nir"): Arm(
        "SOXS", "NIR", (2048, 2048), (4, 2044, 4, 2044), 0, 2.3, 7.3, False, tuple(range(10, 25)),
        _centres_from_seps(399, [44, 50, 53, 59, 65, 70, 74, 79, 84, 91, 96, 103, 109, 112], 1),
        (34.6, 41.9), ((0, 2039), (0, 2039)), 10.0, nir_like=True, slit="SLIT1.0"),
}


def get_arm(instrument: str, arm: str) -> Arm:
    key = (instrument.lower(), arm.lower())
    if key not in ARMS:
        raise ValueError(f"unknown instrument/arm {instrument} {arm}; "
                         f"available: {', '.join(f'{i}/{a}' for i, a in ARMS)}")
    return ARMS[key]
