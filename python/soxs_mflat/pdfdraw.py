"""The QC pages' drawing layer over reportlab's canvas: a page in PDF points (y up) with text in the PDF's
own Helvetica, axes with round-number ticks, images, markers, polylines, bars, legends and colour bars.

Why not matplotlib, which drew these pages before: importing it costs ~0.5 s of CPU and drawing a page
~0.3 s, as much as the rest of a SOXS VIS run (docs/benchmarks.md); two fixed layouts need none of its
generality. reportlab writes the document, the text and the images; the bulk geometry (thousands of edge
points, the frames and ticks) goes in as PDF path operators (Canvas.addLiteral), formatted in one pass,
each group inside q ... Q so that reportlab's own graphics state stays true. Every text drawn is recorded
in Page.texts with its box, and every axes and colour bar in Page.axes / Page.bars: tests read what a page
says and where."""
from __future__ import annotations

import io
import json
import math
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np
from reportlab import rl_config
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfdoc
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

FONT, BOLD = "Helvetica", "Helvetica-Bold"
ENCODING = "cp1252"              # the standard fonts have the WinAnsi characters only; others print as blanks
ASCENT, DESCENT = 0.718, 0.207   # Helvetica's cap height and descender, per unit of font size
TICK = 3.5                       # tick length (pt), outwards


@lru_cache(maxsize=None)
def colormaps() -> dict[str, np.ndarray]:
    """The stored colour maps, name -> (N, 3) uint8 table (data/colormaps.json, written from matplotlib by
    scripts/make_colormaps.py), read once."""
    text = resources.files("soxs_mflat").joinpath("data/colormaps.json").read_text()
    return {name: np.asarray(rows, np.uint8) for name, rows in json.loads(text).items()}


def colormap(name: str) -> np.ndarray:
    """One of matplotlib's colour maps as an (N, 3) uint8 table."""
    return colormaps()[name]


def colourise(img: np.ndarray, lut: np.ndarray, vmin: float, vmax: float, bad=(217, 217, 217)) -> np.ndarray:
    """RGB of ``img`` through ``lut`` as matplotlib maps values (N equal bins over [vmin, vmax], clipped);
    non-finite pixels get ``bad``."""
    finite = np.isfinite(img)
    scale = len(lut) / (vmax - vmin if vmax > vmin else 1.0)
    t = np.where(finite, img, vmin).astype(np.float64)   # float64: bins as matplotlib's
    t -= vmin
    t *= scale
    np.clip(t, 0, len(lut) - 1, out=t)
    out = lut[t.astype(np.intp)]
    out[~finite] = bad
    return out


def rgb(colour) -> tuple[float, float, float]:
    """'#rrggbb', a grey level as a string ('0.25'), 'black', 'white' or an RGB tuple in [0, 1]."""
    if isinstance(colour, str):
        if colour.startswith("#"):
            return tuple(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
        grey = {"black": 0.0, "white": 1.0}.get(colour)
        g = float(colour) if grey is None else grey
        return g, g, g
    return tuple(float(c) for c in colour[:3])


def _ops_colour(colour, fill: bool) -> str:
    r, g, b = rgb(colour)
    return f"{r:.3f} {g:.3f} {b:.3f} {'rg' if fill else 'RG'}"


def nice_ticks(lo: float, hi: float, n: int = 6) -> tuple[np.ndarray, list[str]]:
    """Round-number ticks within [lo, hi] (steps 1, 2, 2.5, 5 x 10^k, about ``n`` of them) and their
    labels with as many decimals as the step needs (ASCII minus)."""
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(hi - lo)) or hi <= lo:
        return np.array([lo]), [f"{lo:g}"]
    raw = (hi - lo) / n
    mag = 10.0 ** math.floor(math.log10(raw))
    mult = next(m for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    step = mult * mag
    ticks = np.arange(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1) * step
    dec = max(0, -int(math.floor(math.log10(step) + 1e-9)) + (1 if mult == 2.5 else 0))
    top = max(abs(lo), abs(hi))
    if top >= 1e6 or dec > 6:   # exponent form, with the digits that tell neighbouring ticks apart
        digits = max(1, int(math.floor(math.log10(top))) - int(math.floor(math.log10(step))) + 1 + (mult == 2.5))
        labels = [f"{t:.{digits}g}" for t in ticks]
    else:
        labels = [f"{t:.{dec}f}" for t in ticks]
    return ticks, ["0" if float(s) == 0 else s for s in labels]


@dataclass
class Text:
    text: str
    box: tuple[float, float, float, float]   # x0, y0, x1, y1 (pt, y up)
    size: float
    colour: object
    kind: str = ""                           # "order" (an order label), "tick", "title", ...
    boxed: bool = False                      # drawn on a white box


@dataclass
class ColourBar:
    label: str
    ticklabels: list[str]
    discrete: bool = False


class Page:
    """One PDF page of ``width`` x ``height`` points; ``pdf()`` ends it and returns the document."""

    def __init__(self, width: float, height: float, title: str = "", creator: str = ""):
        self._buf = io.BytesIO()
        # invariant: the same page gives the same bytes (no creation time or random document id)
        self.canvas = Canvas(self._buf, pagesize=(width, height), pageCompression=1, invariant=1)
        self.canvas.setTitle(title)
        self.canvas.setAuthor(creator)
        self.canvas.setCreator(creator)
        self.canvas.setSubject(title)
        self.width, self.height = width, height
        self.texts: list[Text] = []
        self.axes: list[Axes] = []
        self.bars: list[ColourBar] = []

    def text(self, x: float, y: float, s: str, size: float = 8.0, colour="black", bold: bool = False,
             ha: str = "left", va: str = "baseline", rotation: int = 0, kind: str = "", box: float | None = None):
        """``s`` at (x, y) aligned by ``ha`` / ``va``, turned by 0 or 90 degrees; ``box``: the padding of
        a white box drawn behind it (order labels)."""
        c, font = self.canvas, BOLD if bold else FONT
        w = stringWidth(s, font, size)
        dx = {"left": 0.0, "center": -0.5 * w, "right": -w}[ha]
        dy = {"baseline": 0.0, "top": -ASCENT * size, "center": -0.5 * ASCENT * size, "bottom": DESCENT * size}[va]
        pad = box or 0.0
        x0, x1, y0, y1 = dx - pad, dx + w + pad, dy - DESCENT * size - pad, dy + ASCENT * size + pad
        c.saveState()
        c.translate(x, y)
        if rotation:
            c.rotate(rotation)
        if box is not None:
            c.setFillColorRGB(1, 1, 1)
            c.setStrokeColorRGB(0.3, 0.3, 0.3)
            c.setLineWidth(0.4)
            c.roundRect(x0, y0, x1 - x0, y1 - y0, min(2.0, pad + 1), stroke=1, fill=1)
        c.setFillColorRGB(*rgb(colour))
        c.setFont(font, size)
        c.drawString(dx, dy, s)
        c.restoreState()
        page_box = (x - y1, y + x0, x - y0, y + x1) if rotation == 90 else (x + x0, y + y0, x + x1, y + y1)
        self.texts.append(Text(s, page_box, size, colour, kind, box is not None))

    def literal(self, ops: str) -> None:
        """PDF operators, inside their own graphics state."""
        self.canvas.addLiteral(f"q\n{ops}\nQ")

    def image(self, rgb_img: np.ndarray, x: float, y: float, w: float, h: float) -> None:
        """An (ny, nx, 3) uint8 image, row 0 at the bottom, filling the rectangle; not interpolated, so
        zooming shows its pixels. Grey images are stored as such (a third of the bytes to compress), and
        identical images once (reportlab's cache)."""
        from PIL import Image
        grey = (rgb_img[..., 0] == rgb_img[..., 1]).all() and (rgb_img[..., 0] == rgb_img[..., 2]).all()
        pixels = np.ascontiguousarray(rgb_img[::-1, :, 0] if grey else rgb_img[::-1])
        with _binary_streams():
            self.canvas.drawImage(ImageReader(Image.fromarray(pixels)), x, y, w, h)

    def colourbar(self, x: float, y: float, w: float, h: float, lut: np.ndarray, vmin: float, vmax: float,
                  label: str) -> None:
        """A vertical colour bar with its scale and label on the right."""
        vmin, vmax = _usable((vmin, vmax))
        self.image(lut[:, None, :], x, y, w, h)
        ticks, labels = nice_ticks(vmin, vmax, 5)
        ys = y + (ticks - vmin) / (vmax - vmin if vmax > vmin else 1.0) * h
        self._bar_frame(x, y, w, h, ys, labels, label)
        self.bars.append(ColourBar(label, labels))

    def key(self, x: float, y: float, w: float, h: float, colours, labels: list[str], label: str,
            size: float = 6.5) -> None:
        """A discrete colour key (vector blocks), one block per label, bottom to top."""
        n = len(colours)
        ops = [f"{_ops_colour(c, True)} {x:.2f} {y + k * h / n:.2f} {w:.2f} {h / n:.2f} re f" for k, c in enumerate(colours)]
        self.literal("\n".join(ops))
        self._bar_frame(x, y, w, h, y + (np.arange(n) + 0.5) * h / n, labels, label, size)
        self.bars.append(ColourBar(label, list(labels), discrete=True))

    def _bar_frame(self, x, y, w, h, ys, labels, label, size=6.5) -> None:
        ticks = " ".join(f"{x + w:.2f} {t:.2f} m {x + w + TICK:.2f} {t:.2f} l" for t in ys)
        self.literal(f"0.6 w 0 0 0 RG {x:.2f} {y:.2f} {w:.2f} {h:.2f} re S {ticks} S")
        for t, s in zip(ys, labels):
            self.text(x + w + TICK + 1.5, t, s, size, va="center", kind="tick")
        width = max((stringWidth(s, FONT, size) for s in labels), default=0.0)
        self.text(x + w + TICK + 4 + width + 8, y + h / 2, label, 7.5, ha="center", va="center", rotation=90,
                  kind="label")

    def pdf(self) -> bytes:
        with _binary_streams():
            self.canvas.showPage()
            self.canvas.save()
        return self._buf.getvalue()


class _FastDeflate:
    """zlib for reportlab's streams at level 1: reportlab calls zlib.compress at its default level 6,
    which took 40 % of a page's time (SOXS VIS: 68 of 156 ms, against 17 ms at level 1) for pages 19 %
    larger (the two SOXS VIS pages 415 -> 495 kB); Flate streams of any level decode the same."""
    def __getattr__(self, name):
        return getattr(zlib, name)

    @staticmethod
    def compress(data, level: int = 1):
        return zlib.compress(data, level)


_STREAMS = threading.RLock()   # one page at a time changes reportlab's settings (threads would interleave)


@contextmanager
def _binary_streams():
    """Streams compressed (at zlib level 1) but not ASCII85-encoded (reportlab's pure-Python encoder: ~1 s
    for an image). Both are reportlab's module-level settings, restored on exit."""
    with _STREAMS:
        old, old_zlib = rl_config.useA85, pdfdoc.zlib
        rl_config.useA85, pdfdoc.zlib = 0, _FastDeflate()
        try:
            yield
        finally:
            rl_config.useA85, pdfdoc.zlib = old, old_zlib


def _usable(lim) -> tuple[float, float]:
    """Finite, increasing axis limits: a NaN or an empty range (one point, a constant) is widened."""
    lo, hi = (float(v) for v in lim)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = (lo, lo + 1.0) if math.isfinite(lo) else (hi - 1.0, hi) if math.isfinite(hi) else (0.0, 1.0)
    if hi <= lo:
        pad = max(abs(lo), 1.0) * 1e-3
        lo, hi = lo - pad, lo + pad
    return lo, hi


@dataclass
class Axes:
    """A data rectangle on a page: ``x, y, w, h`` in points, data limits ``xlim`` and ``ylim``."""
    page: Page
    x: float
    y: float
    w: float
    h: float
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    has_image: bool = False
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.xlim, self.ylim = _usable(self.xlim), _usable(self.ylim)
        self.page.axes.append(self)

    def tx(self, v) -> np.ndarray:
        return self.x + (np.asarray(v, float) - self.xlim[0]) * (self.w / (self.xlim[1] - self.xlim[0]))

    def ty(self, v) -> np.ndarray:
        return self.y + (np.asarray(v, float) - self.ylim[0]) * (self.h / (self.ylim[1] - self.ylim[0]))

    def _clipped(self, ops: str) -> None:
        self.page.literal(f"{self.x:.2f} {self.y:.2f} {self.w:.2f} {self.h:.2f} re W n\n{ops}")

    def image(self, rgb_img: np.ndarray) -> None:
        """The image over the whole axes (its extent is the axes' limits)."""
        self.page.image(rgb_img, self.x, self.y, self.w, self.h)
        self.has_image = True

    def line(self, x, y, colour, width: float = 0.7, dash: str | None = None) -> None:
        """A polyline; NaN points break it."""
        px, py = self.tx(x), self.ty(y)
        ok = np.isfinite(px) & np.isfinite(py)
        parts, start = [], True
        for a, b, good in zip(px.tolist(), py.tolist(), ok.tolist()):
            if good:
                parts.append(f"{a:.2f} {b:.2f} {'m' if start else 'l'}")
            start = not good
        if parts:
            style = f"[{dash}] 0 d " if dash else ""
            self._clipped(f"{_ops_colour(colour, False)} {width} w 1 j {style}" + " ".join(parts) + " S")

    def markers(self, x, y, shape: str, size: float, colour, width: float = 0.8) -> None:
        """Markers of ``size`` points: 'o' dots, '^' / 'v' filled triangles, 'x' crosses."""
        px, py = self.tx(x), self.ty(y)
        ok = np.isfinite(px) & np.isfinite(py)
        pts = np.column_stack([px[ok], py[ok]]).tolist()
        if not pts:
            return
        r = size / 2
        if shape == "o":   # round-capped 0.01-pt segments: filled circles (zero-length ones, valid PDF, are
            # skipped by some viewers, e.g. pdf.js)
            body = f"1 J {size:.2f} w {_ops_colour(colour, False)} " + " ".join(
                f"{a:.2f} {b:.2f} m {a + 0.01:.2f} {b:.2f} l" for a, b in pts) + " S"
        elif shape in "^v":
            s = 1 if shape == "^" else -1
            tip, base, half = s * r * 1.15, -s * r * 0.6, r
            body = _ops_colour(colour, True) + " " + " ".join(
                f"{a:.2f} {b + tip:.2f} m {a - half:.2f} {b + base:.2f} l {a + half:.2f} {b + base:.2f} l h"
                for a, b in pts) + " f"
        else:
            body = f"{width} w {_ops_colour(colour, False)} " + " ".join(
                f"{a - r:.2f} {b - r:.2f} m {a + r:.2f} {b + r:.2f} l {a - r:.2f} {b + r:.2f} m {a + r:.2f} {b - r:.2f} l"
                for a, b in pts) + " S"
        self._clipped(body)

    def hline(self, y: float, colour="black", width: float = 0.5) -> None:
        self.line(self.xlim, [y, y], colour, width)

    def bars(self, x, heights, width: float, colour, hatch: bool = False) -> None:
        """Vertical bars from 0, outlined; ``hatch``: diagonal lines across them."""
        ops = []
        for xc, hv in zip(np.atleast_1d(x).tolist(), np.atleast_1d(heights).tolist()):
            if not (math.isfinite(xc) and math.isfinite(hv)):
                continue
            x0, x1 = float(self.tx(xc - width / 2)), float(self.tx(xc + width / 2))
            y0, y1 = float(self.ty(0.0)), float(self.ty(hv))
            ops.append(f"{_ops_colour(colour, True)} 0.3 w 0.2 0.2 0.2 RG {x0:.2f} {y0:.2f} {x1 - x0:.2f} {y1 - y0:.2f} re B")
            if hatch and y1 > y0:
                lines = " ".join(f"{x0 + d:.2f} {y0:.2f} m {x0 + d + (y1 - y0):.2f} {y1:.2f} l"
                                 for d in np.arange(-(y1 - y0), x1 - x0, 3.0))
                ops.append(f"q {x0:.2f} {y0:.2f} {x1 - x0:.2f} {y1 - y0:.2f} re W n 0.4 w {lines} S Q")
        self._clipped("\n".join(ops))

    def label(self, x: float, y: float, s: str, size: float = 7.5) -> None:
        """Dark text on a white box, centred on a data point (order numbers)."""
        self.page.text(float(self.tx(x)), float(self.ty(y)), s, size, ha="center", va="center", kind="order", box=1.5)

    def frame(self, title: str = "", xlabel: str = "", ylabel: str = "", xticks=None, size: float = 7.0) -> None:
        """Frame, outward ticks with labels (``xticks``: (positions, labels) instead of round numbers),
        axis labels and a title above the top-left corner."""
        p = self.page
        xt, xl = xticks if xticks is not None else nice_ticks(*self.xlim)
        yt, yl = nice_ticks(*self.ylim, 6 if self.h > 120 else 5)
        xs, ys = self.tx(np.asarray(xt, float)), self.ty(yt)
        ops = [f"{self.x:.2f} {self.y:.2f} {self.w:.2f} {self.h:.2f} re S"]
        ops += [f"{a:.2f} {self.y:.2f} m {a:.2f} {self.y - TICK:.2f} l" for a in xs]
        ops += [f"{self.x:.2f} {b:.2f} m {self.x - TICK:.2f} {b:.2f} l" for b in ys]
        p.literal("0.8 w 0 0 0 RG " + " ".join(ops) + " S")
        for a, s in zip(xs, xl):
            p.text(float(a), self.y - TICK - 2, s, size, ha="center", va="top", kind="tick")
        for b, s in zip(ys, yl):
            p.text(self.x - TICK - 2, float(b), s, size, ha="right", va="center", kind="tick")
        if xlabel:
            p.text(self.x + self.w / 2, self.y - TICK - 4 - 2.2 * size, xlabel, 8, ha="center", va="top", kind="label")
        if ylabel:
            width = max((stringWidth(s, FONT, size) for s in yl), default=0.0)
            p.text(self.x - TICK - 6 - width, self.y + self.h / 2, ylabel, 8, ha="center", va="bottom", rotation=90,
                   kind="label")
        if title:
            p.text(self.x, self.y + self.h + 5, title, 9, kind="title")

    def legend(self, entries: list[tuple], size: float = 7.0) -> None:
        """A key in one row above the frame's right end (the title's row: it never covers data); entries:
        (label, 'marker', shape, colour) or (label, 'line', colour, dash or None)."""
        p = self.page
        widths = [stringWidth(e[0], FONT, size) + 24 for e in entries]
        x0, yc = self.x + self.w - sum(widths) + 6, self.y + self.h + 5 + 0.36 * size
        key = Axes(p, x0, yc - 5, sum(widths), 10, (x0, x0 + sum(widths)), (yc - 5, yc + 5))
        p.axes.remove(key)   # a drawing helper, not one of the page's axes
        for (label, kind, a, b), w in zip(entries, widths):
            if kind == "marker":
                key.markers([x0 + 7], [yc], a, 4.0 if a != "x" else 5.0, b)
            else:
                key.line([x0, x0 + 14], [yc, yc], a, 1.0, b)
            p.text(x0 + 18, yc, label, size, va="center", kind="legend")
            x0 += w
