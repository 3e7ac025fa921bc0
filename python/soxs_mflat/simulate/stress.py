"""Stress conditions of a simulated flat set (what real calibration nights bring), combinable.

``Stress.parse("scatter=0.02,level=0.08,tilt=0.04,cosmics=2000,stale=1")``; every field defaults to
the nominal set. The truth of each condition is analytic and written to ``truth.fits``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

NOMINAL_COSMIC_RATE = 2e-5     # events per pixel per frame


@dataclass(frozen=True)
class Stress:
    scatter: float = 0.0               # scattered light, median fraction of the in-order level (0: nominal)
    level: float = 0.0                 # one frame (the middle one) at a lamp level (1 + level) x the others
    tilt: float = 0.0                  # one frame (the last one) with a smooth +-tilt colour change
    cosmics: int = -1                  # cosmic-ray events per frame (-1: 2 per 1e5 pixels)
    stale: float = 0.0                 # px: order table tilted by this at the order ends, slit this much wider

    def __post_init__(self):
        if not 0 <= self.scatter <= 0.1:
            raise ValueError(f"stress scatter={self.scatter}: use 0 .. 0.1 (fraction of the order flux)")
        if not -0.5 < self.level < 0.5:
            raise ValueError(f"stress level={self.level}: use -0.5 .. 0.5")
        if not 0 <= self.tilt < 0.5:
            raise ValueError(f"stress tilt={self.tilt}: use 0 .. 0.5")
        if self.cosmics < -1 or self.cosmics > 100000:
            raise ValueError(f"stress cosmics={self.cosmics}: use 0 .. 100000 events per frame")
        if not 0 <= self.stale <= 5:
            raise ValueError(f"stress stale={self.stale}: use 0 .. 5 px")

    @classmethod
    def parse(cls, text: str | None) -> "Stress":
        """``key=value,...`` with keys scatter, level, tilt, cosmics, stale."""
        if not text:
            return cls()
        kinds = {f.name: f.type for f in fields(cls)}
        kw = {}
        for item in text.split(","):
            key, sep, val = item.partition("=")
            key = key.strip()
            if not sep or key not in kinds:
                raise ValueError(f"bad stress item {item!r}: use key=value with keys {', '.join(kinds)}")
            try:
                kw[key] = int(val) if key == "cosmics" else float(val)
            except ValueError:
                raise ValueError(f"bad stress value in {item!r}") from None
        return cls(**kw)

    def scale_scatter(self, scat: np.ndarray, illum: np.ndarray) -> np.ndarray:
        """Nominal scattered light as is; with ``scatter`` set, rescaled so that its median ratio to
        the illumination of the well-exposed in-order pixels is ``scatter``."""
        if not self.scatter:
            return scat
        sel = illum > 0.5 * illum.max()
        return (scat * (self.scatter / np.median(scat[sel] / illum[sel]))).astype(np.float32)

    def n_cosmics(self, npix: int) -> int:
        return int(NOMINAL_COSMIC_RATE * npix) if self.cosmics < 0 else int(self.cosmics)

    def frame_factors(self, nflats: int) -> tuple[np.ndarray, np.ndarray]:
        """(lamp level factor, tilt amplitude) per frame; the level frame is the middle one, the
        tilted one the last (different frames when there are at least two)."""
        lev, tilt = np.ones(nflats), np.zeros(nflats)
        lev[nflats // 2] += self.level
        tilt[nflats - 1] = self.tilt
        return lev, tilt


def tilt_pattern(shape: tuple, a_is_x: bool) -> np.ndarray:
    """Smooth colour change in [-1, 1]: linear along the orders (B) and across them (A), zero at the
    detector centre. A frame with tilt t is multiplied by 1 + t * pattern."""
    ny, nx = shape
    y = np.linspace(-1, 1, ny)[:, None]
    x = np.linspace(-1, 1, nx)[None, :]
    along, across = (y, x) if a_is_x else (x, y)
    return (0.7 * along + 0.3 * across).astype(np.float64)
