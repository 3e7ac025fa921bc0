"""QC PDFs, made to be read at a glance: ORDER LOC RES (edge detections, fitted edges, residuals per order)
and BKGROUND (flat, scattered-light model, inter-order residual, a cut across the orders).

Every page starts with a header block (instrument, arm, lamp, date, number of flats, QC pass/fail, key
parameters). Images are embedded at up to MAX_DISPLAY pixels per axis, not interpolated; edges, points,
labels and text are vectors, so zooming into the PDF shows an edge against the pixels. The dispersion axis
is always horizontal. Drawn with soxs_mflat.pdfdraw (reportlab), which says why not matplotlib."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from . import _core
from .core import OrderLayout, poly_eval
from .pdfdraw import BOLD, FONT, Axes, Page, colormap, colormaps, colourise
from .plotserver import PlotInfo

__all__ = ["PlotInfo", "order_loc_pdf", "order_loc_page", "background_pdf", "background_page"]

MAX_DISPLAY = 800         # image pixels per axis embedded in the PDF (the page is ~1000 px wide at 100 dpi)
LEVEL_SPREAD = 5.0        # orders whose median levels differ by more than this are shown normalised per order
LOWER, UPPER, CLIPPED = "#00b4ff", "#ff8c00", "#e8000b"
PASS, FAIL = "#1a7f37", "#cf222e"
EDGE_PARAMS = ("order_deg", "disp_axis_deg", "min_percentage_threshold_for_edge_detection",
               "max_percentage_threshold_for_edge_detection", "slice_length_for_edge_detection",
               "slice_width_for_edge_detection", "poly_fitting_residual_clipping_sigma",
               "poly_clipping_iteration_limit", "edge_min_snr")
BKG_PARAMS = ("bspline_deg", "gaussian_blur_sigma", "background_margin")


# ---------------------------------------------------------------------------------------------- geometry
def _to_binned(x, binning):
    """Unbinned coordinate to binned pixel: soxspipe's convention (binned pixel i is unbinned bin * i)."""
    return np.asarray(x, float) / binning


def _block_mean(data: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Means of fy x fx blocks (float32), summed slice by slice: ~30x faster than a mean over the axes
    of a reshaped view (4096 x 808 px: 1.4 vs 40 ms)."""
    d = data[:data.shape[0] // fy * fy, :data.shape[1] // fx * fx]
    rows = d[0::fy].astype(np.float32, copy=True)
    for i in range(1, fy):
        rows += d[i::fy]
    small = rows[:, 0::fx].copy()
    for j in range(1, fx):
        small += rows[:, j::fx]
    small *= np.float32(1.0 / (fy * fx))
    return small


def _reduce(data: np.ndarray, transpose: bool = False):
    """Block-average to at most MAX_DISPLAY pixels per axis (float32), transposed first when asked; the
    image, its extent in binned pixels and the block factors (of the displayed axes)."""
    ny, nx = data.shape[::-1] if transpose else data.shape
    fy = max(1, -(-ny // MAX_DISPLAY))
    fx = max(1, -(-nx // MAX_DISPLAY))
    ny, nx = ny // fy * fy, nx // fx * fx
    small = _block_mean(data, fx, fy).T.copy() if transpose else _block_mean(data, fy, fx)
    return small, (-0.5, nx - 0.5, -0.5, ny - 0.5), (fy, fx)


def _display(img: np.ndarray, layout: OrderLayout):
    """The image with A vertical and B horizontal, reduced."""
    return _reduce(img, transpose=layout.a_is_x)


def _edge_curves(edges: dict, layout: OrderLayout, n: int = 300):
    """Per order: (order, B, lower A, upper A) in binned pixels, from the fitted polynomials."""
    out = []
    for o, b0, b1 in zip(layout.orders, layout.b_min, layout.b_max):
        bb = np.linspace(b0, b1, n)
        lo = poly_eval(edges["lower"]["coeffs"], o, bb)
        up = poly_eval(edges["upper"]["coeffs"], o, bb)
        out.append((int(o), _to_binned(bb, layout.bin_b), _to_binned(lo, layout.bin_a), _to_binned(up, layout.bin_a)))
    return out


_BG = _core.DEFAULTS["background"]   # the core's background geometry, drawn as the core fits it
END_MARGIN = float(_BG["end_margin"])   # unbinned px past an order's end still counted as the order
OUTER_WIDTH = float(_BG["outer_width"])   # unbinned px beyond the outermost orders where the model is fitted


def _columns(shape, blocks):
    (fy, fx), (ny, nx) = blocks, shape
    return (np.arange(ny) * fy + 0.5 * (fy - 1))[:, None], np.arange(nx) * fx + 0.5 * (fx - 1)


def _edges_per_column(b, curves, pad_b: float):
    """Lower and upper edge A of every order on every reduced column, NaN past the order's end (+ pad_b)."""
    out = np.full((len(curves), 2, b.size), np.nan)
    for k, (_, bb, lo, up) in enumerate(curves):
        inside = (b >= bb[0] - pad_b) & (b <= bb[-1] + pad_b)
        out[k, 0, inside] = np.minimum(np.interp(b, bb, lo), np.interp(b, bb, up))[inside]
        out[k, 1, inside] = np.maximum(np.interp(b, bb, lo), np.interp(b, bb, up))[inside]
    return out


def _order_map(shape, blocks, curves, pad: float = 0.0, pad_b: float = 0.0) -> np.ndarray:
    """Index of the order (into curves) covering each reduced pixel (edges widened by ``pad``, ends extended
    by ``pad_b`` binned px), -1 between orders."""
    a, b = _columns(shape, blocks)
    e = _edges_per_column(b, curves, pad_b)
    omap = np.full(shape, -1, np.int16)
    with np.errstate(invalid="ignore"):
        for k in range(len(curves)):
            omap[(a >= e[k, 0] - pad) & (a <= e[k, 1] + pad)] = k
    return omap


def _fitted_region(shape, blocks, curves, outer: float, pad_b: float) -> np.ndarray:
    """Reduced pixels from ``outer`` binned px below the lowest order to ``outer`` above the highest order
    present on the column: where the background model is measured (beyond, it is extrapolated)."""
    a, b = _columns(shape, blocks)
    e = _edges_per_column(b, curves, pad_b)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # columns without any order: all-NaN, excluded
        return (a >= np.nanmin(e[:, 0], axis=0) - outer) & (a <= np.nanmax(e[:, 1], axis=0) + outer)


def _per_order_normalised(small: np.ndarray, omap: np.ndarray, n_orders: int):
    """Each order divided by its median when the orders' levels spread by more than LEVEL_SPREAD
    (D2 orders at 0.04 next to QTH orders at 1.5); returns the image and the spread (1 if left as is)."""
    med = np.array([np.nanmedian(small[omap == k]) if (omap == k).any() else np.nan for k in range(n_orders)])
    good = med[np.isfinite(med) & (med > 0)]
    spread = float(good.max() / good.min()) if good.size else 1.0
    if spread <= LEVEL_SPREAD:
        return small, 1.0
    level = np.where(omap >= 0, med[np.clip(omap, 0, None)], np.nanmedian(good))
    return small / np.where(np.isfinite(level) & (level > 0), level, 1.0), spread


# ---------------------------------------------------------------------------------------------- layout
W, H = 792.0, 1080.0                  # the page: 11 x 15 inches, in points
LEFT, RIGHT, BOTTOM = 0.07 * W, 0.96 * W, 0.04 * H
BAR_W, BAR_GAP, BAR_ROOM = 10.0, 6.0, 54.0    # a colour bar, its gap to the image, the room it takes with its scale
ROW_GAP = 50.0                        # between panels: the tick labels and axis label above, the title below


def _rows(top: float, ratios: Sequence[float], gap: float = ROW_GAP) -> list[tuple[float, float]]:
    """(bottom, height) of panels stacked from ``top`` down to BOTTOM, heights in ``ratios``."""
    unit = (top - BOTTOM - gap * (len(ratios) - 1)) / sum(ratios)
    out, y = [], top
    for r in ratios:
        out.append((y - r * unit, r * unit))
        y -= r * unit + gap
    return out


# ---------------------------------------------------------------------------------------------- drawing
def _header(page: Page, info: PlotInfo, title: str, lines: Sequence[str], keys: Sequence[str]) -> float:
    """The header block: what, when, how many, QC verdict, key parameters; returns where the panels may
    start (pt from the bottom). Long verdicts and parameter lists wrap to the page's width."""
    x, step = 0.02 * W, 0.014 * H
    page.text(x, 0.985 * H, f"soxs_mflat · {info.instrument} {info.arm} · {info.lamp} · {title}", 13, bold=True,
              va="top", kind="title")
    when = f"DATE-OBS {info.date_obs or '?'}" + (f" (night {info.night})" if info.night else "")
    page.text(x, 0.962 * H, f"{when} · {info.n_flats} flats", 9, va="top")
    ranged = [r for r in info.qc if r.flag != "none"]
    bad = [r for r in ranged if r.flag == "fail"]
    if not ranged:
        verdict, colour = ["QC: no ranges apply to this product"], "black"
    elif bad:
        verdict = _wrap("QC: FAIL — ", [f"{r.name} = {r.value:.4g} not in [{r.low:g}, {r.high:g}]" for r in bad],
                        "; ", 10, True)
        colour = FAIL
    else:
        verdict, colour = [f"QC: PASS (all {len(ranged)} range-checked values in range)"], PASS
    y = 0.946 * H
    for line in verdict:
        page.text(x, y, line, 10, colour=colour, bold=True, va="top", kind="verdict")
        y -= step
    y -= 0.003 * H
    for line in lines:
        page.text(x, y, line, 8.5, va="top")
        y -= step
    shown = [f"{k} {info.params[k]}" for k in keys if k in info.params]
    for line in _wrap("parameters: ", shown, ", ", 8) if shown else []:
        page.text(x, y, line, 8, colour="0.2", va="top")
        y -= step
    return y - 0.016 * H


def _wrap(head: str, items: Sequence[str], sep: str, size: float, bold: bool = False) -> list[str]:
    """``head`` + the items joined by ``sep``, broken between items into lines that fit the page."""
    from reportlab.pdfbase.pdfmetrics import stringWidth
    font, room = (BOLD if bold else FONT), W - 0.04 * W
    out, line = [], head
    for i, item in enumerate(items):
        piece = item + (sep.rstrip() if i < len(items) - 1 else "")
        if line.strip() and line != head and stringWidth(line + piece, font, size) > room:
            out.append(line.rstrip())
            line = "    "
        line += piece + (" " if i < len(items) - 1 else "")
    return out + [line.rstrip()]


def _stretch(values: np.ndarray) -> tuple[float, float]:
    """The 1st and 99.5th percentiles of the finite values; (0, 1) when there are none."""
    v = values[np.isfinite(values)]
    return tuple(float(x) for x in np.percentile(v, (1, 99.5))) if v.size else (0.0, 1.0)


def _page(info: PlotInfo, what: str) -> Page:
    from . import __version__
    return Page(W, H, title=f"soxs_mflat {info.instrument} {info.arm} {info.lamp}: {what}",
                creator=f"soxs-mflat {__version__}")


def _image(page: Page, y: float, h: float, small, extent, title: str, cmap: str = "gray", vmin=None, vmax=None,
           label: str = "", bad=(217, 217, 217)) -> Axes:
    """An image panel across the page with its colour bar; returns the axes for the overlays (the frame
    is drawn by _finish, over them)."""
    if vmin is None:
        vmin, vmax = _stretch(small)
    ax = Axes(page, LEFT, y, RIGHT - BAR_ROOM - LEFT, h, (extent[0], extent[1]), (extent[2], extent[3]))
    lut = colormap(cmap)
    ax.image(colourise(small, lut, vmin, vmax, bad))
    page.colourbar(ax.x + ax.w + BAR_GAP, y, BAR_W, h, lut, vmin, vmax, label)
    ax.notes["title"] = title
    return ax


def _finish(ax: Axes, xlabel: str = "along the order (binned px)", ylabel: str = "cross-dispersion (binned px)") -> None:
    ax.frame(ax.notes.get("title", ""), xlabel, ylabel)


def _label_orders(ax: Axes, curves) -> None:
    """Order numbers in black on white boxes, staggered along the orders so that narrow, close orders
    (SOXS NIR) do not overlap."""
    for k, (o, bb, lo, up) in enumerate(curves):
        i = int(len(bb) * (0.12, 0.5, 0.88)[k % 3])
        ax.label(bb[i], 0.5 * (lo[i] + up[i]), str(o))


def _order_colours(orders) -> list[tuple[float, float, float]]:
    """One distinct colour per order from matplotlib's tab20: its darker ten, then its lighter ten, so that
    neighbouring orders never share a hue (tab20 in its own order pairs dark and light blue, ...: orders
    13 and 14 of the UVB looked alike); orders ten apart share one, dark and light."""
    base = colormap("tab20") / 255.0
    return [tuple(base[(2 * k) % 20 + (k // 10) % 2]) for k in range(len(orders))]


# ---------------------------------------------------------------------------------------------- pages
def _qc_value(info: PlotInfo, name: str, fmt: str = ".3f") -> str:
    for r in info.qc:
        if r.name == name:
            return format(r.value, fmt)
    return "?"


def _edge_summary(edges: dict, layout: OrderLayout, info: PlotInfo, small_shape, spread: float) -> list[str]:
    pts = edges["points"]
    n_pts = int(np.isfinite(np.asarray(pts["lower"], float)).sum() + np.isfinite(np.asarray(pts["upper"], float)).sum())
    n_clip = int(sum(np.asarray(edges[k]["clipped"], bool).sum() for k in ("lower", "upper")))
    orders = list(map(int, layout.orders))
    lines = [f"{len(orders)} orders ({min(orders)}–{max(orders)}) · binning {layout.bin_a}×{layout.bin_b} "
             "(cross-dispersion × along the order)",
             f"edge fit: X RES SD {_qc_value(info, 'X RES SD')} px, MIN {_qc_value(info, 'X RES MIN')}, "
             f"MAX {_qc_value(info, 'X RES MAX')} · rms lower {edges['lower']['rms']:.3f} px, "
             f"upper {edges['upper']['rms']:.3f} px · {n_pts - n_clip} of {n_pts} edge points used, {n_clip} clipped"]
    if spread > 1:
        lines.append(f"display: each order divided by its median (order levels differ by ×{spread:.0f})")
    return lines


def _points(ax: Axes, edges: dict, layout: OrderLayout) -> None:
    pts = edges["points"]
    b = _to_binned(pts["b"], layout.bin_b)
    for key, colour, mk in (("lower", LOWER, "^"), ("upper", UPPER, "v")):
        a = _to_binned(pts[key], layout.bin_a)
        clip = np.asarray(edges[key]["clipped"], bool)
        ax.markers(b[~clip], a[~clip], mk, 2.6, colour)
        ax.markers(b[clip], a[clip], "x", 4.0, CLIPPED)
    _finish(ax)
    ax.legend([("lower edge points", "marker", "^", LOWER), ("upper edge points", "marker", "v", UPPER),
               ("clipped from the fit", "marker", "x", CLIPPED)])


def _fits(ax: Axes, curves) -> None:
    for o, bb, lo, up in curves:
        ax.line(bb, lo, LOWER, 0.7)
        ax.line(bb, up, UPPER, 0.7, dash="3 1.5")
    _finish(ax)
    ax.legend([("lower edge fit", "line", LOWER, None), ("upper edge fit", "line", UPPER, "3 1.5")])
    _label_orders(ax, curves)


COL_GAP = 70.0                        # between the bottom row's three panels
COL_W = (RIGHT - LEFT - 2 * COL_GAP) / 3


def _kept(edges: dict) -> dict[str, np.ndarray]:
    """Per edge, the points that entered the fit (not clipped, finite residual)."""
    return {k: ~np.asarray(edges[k]["clipped"], bool) & np.isfinite(edges[k]["residuals"]) for k in ("lower", "upper")}


def _edge_residuals(page: Page, y: float, h: float, edges: dict, keeps: dict, idx, cols) -> float:
    """The lower and upper edges' residuals coloured by order, on one scale; returns the x of the second
    panel's right side (where the order key goes)."""
    lim = max((float(np.nanmax(np.abs(edges[k]["residuals"][keeps[k]]))) for k in keeps if keeps[k].any()), default=0.0)
    b = np.asarray(edges["points"]["b"], float)
    span = float(b.max() - b.min()) if b.size else 1.0
    xlim = (float(b.min()) - 0.05 * span, float(b.max()) + 0.05 * span) if b.size else (0.0, 1.0)
    for i, key in enumerate(("lower", "upper")):
        ax = Axes(page, LEFT + i * (COL_W + COL_GAP), y, COL_W - (22.0 if i else 0.0), h, xlim,
                  (-1.1 * lim - 1e-6, 1.1 * lim + 1e-6))
        fit, keep = edges[key], keeps[key]
        for k, colour in enumerate(cols):
            sel = keep & (idx == k)
            ax.markers(b[sel], fit["residuals"][sel], "o", 1.6, colour)
        ax.hline(0.0)
        ax.frame(f"{key} edge: fit - measured (rms {fit['rms']:.3f} px)", "along the order (unbinned px)",
                 "residual (px)" if i == 0 else "")
    return ax.x + ax.w


def _residuals(page: Page, y: float, h: float, edges: dict, layout: OrderLayout) -> None:
    """Residuals of each edge coloured by order, with an order key; per-order rms bars."""
    pts, orders = edges["points"], list(map(int, layout.orders))
    cols = _order_colours(orders)
    index = {o: k for k, o in enumerate(orders)}
    idx = np.array([index.get(int(o), 0) for o in pts["order"]])
    keeps = _kept(edges)
    right = _edge_residuals(page, y, h, edges, keeps, idx, cols)
    size = 5.5 if len(orders) > 16 else 6.5
    page.key(right + 6.0, y, 8.0, h, cols, [str(o) for o in orders], "order", size)
    rms = {}
    for key, keep in keeps.items():
        res = edges[key]["residuals"]
        rms[key] = [float(np.sqrt(np.mean(res[keep & (idx == k)] ** 2))) if (keep & (idx == k)).any() else 0.0
                    for k in range(len(orders))]
    top = max(max(rms["lower"], default=0.0), max(rms["upper"], default=0.0)) * 1.08 or 1.0
    ax = Axes(page, RIGHT - COL_W, y, COL_W, h, (-0.6, len(orders) - 0.4), (0.0, top))
    for k in range(len(orders)):
        ax.bars([k - 0.2], [rms["lower"][k]], 0.4, cols[k])
        ax.bars([k + 0.2], [rms["upper"][k]], 0.4, cols[k], hatch=True)
    ax.frame("rms per order (plain lower, hatched upper)", "order", "rms (px)",
             xticks=(np.arange(len(orders)), [str(o) for o in orders]), size=size)


def order_loc_pdf(flat: np.ndarray, edges: dict, layout: OrderLayout, info: PlotInfo) -> bytes:
    return order_loc_page(flat, edges, layout, info).pdf()


def order_loc_page(flat: np.ndarray, edges: dict, layout: OrderLayout, info: PlotInfo) -> Page:
    small, extent, blocks = _display(flat, layout)
    curves = _edge_curves(edges, layout)
    omap = _order_map(small.shape, blocks, curves, pad_b=END_MARGIN / layout.bin_b)
    shown, spread = _per_order_normalised(small, omap, len(curves))
    page = _page(info, "order-edge detection and fit")
    top = _header(page, info, "order-edge detection and fit", _edge_summary(edges, layout, info, small.shape, spread),
                  EDGE_PARAMS)
    (y0, h0), (y1, h1), (y2, h2) = _rows(top, [3, 3, 2])
    label = "flux / order median" if spread > 1 else "flux (normalised)"
    vmin, vmax = _stretch(shown[omap >= 0] if (omap >= 0).any() else shown)   # the orders' light sets the stretch
    ax0 = _image(page, y0, h0, shown, extent, "edge points on the stacked flat (triangles up: lower edge, down: "
                 "upper edge)", vmin=min(vmin, 0.0), vmax=vmax, label=label)
    _points(ax0, edges, layout)
    ax1 = _image(page, y1, h1, shown, extent, "fitted edges (global polynomial) and order numbers", vmin=min(vmin, 0.0),
                 vmax=vmax, label=label)
    _fits(ax1, curves)
    _residuals(page, y2, h2, edges, layout)
    return page


def _cut(page: Page, y: float, h: float, before: np.ndarray, model: np.ndarray, curves, layout: OrderLayout,
         margin: float) -> None:
    """Flat and model along the cross-dispersion axis at the middle of the orders, full resolution: the
    model must run through the inter-order light the fit used; the order flanks within ``margin`` binned
    px of an edge, which the fit leaves out (at several times the model), are drawn apart."""
    f = before.T if layout.a_is_x else before
    m = model.T if layout.a_is_x else model
    col = f.shape[1] // 2
    a = np.arange(f.shape[0])
    inside, flank = np.zeros(f.shape[0], bool), np.zeros(f.shape[0], bool)
    for _, bb, lo, up in curves:
        if bb[0] <= col <= bb[-1]:
            lo_a, up_a = sorted((np.interp(col, bb, lo), np.interp(col, bb, up)))
            inside |= (a >= lo_a) & (a <= up_a)
            flank |= (a >= lo_a - margin) & (a <= up_a + margin)
    gap, flank = ~flank, flank & ~inside
    top = float(np.nanmax(m[:, col])) if np.isfinite(m[:, col]).any() else 1.0
    low = float(np.nanpercentile(f[gap, col], 1)) if np.isfinite(f[gap, col]).any() else 0.0
    ax = Axes(page, LEFT, y, RIGHT - LEFT, h, (0.0, f.shape[0] - 1.0), (min(low, -0.2 * top), 4 * max(top, 1e-6)))
    ax.line(a, f[:, col], "0.55", 0.5)
    ax.markers(a[flank], f[flank, col], "o", 1.8, "#e69f00")
    ax.markers(a[gap], f[gap, col], "o", 1.8, "black")
    ax.line(a, m[:, col], FAIL, 1.0)
    ax.frame(f"cut across the orders at along-order pixel {col} (y axis clipped at 4× the model)",
             "cross-dispersion (binned px)", "flux (normalised)")
    ax.legend([("stacked flat", "line", "0.55", None), ("between the orders (fitted)", "marker", "o", "black"),
               (f"order flanks (± {margin:g} px, not fitted)", "marker", "o", "#e69f00"),
               ("background model", "line", FAIL, None)])


def _residual_map(sb, sm, blocks, curves, layout: OrderLayout, info: PlotInfo):
    """Flat − model between the orders, kept clear of the edges by the background margin plus one display
    bin, and limited to where the model is measured (OUTER_WIDTH unbinned px beyond the outermost orders on
    each line and END_MARGIN past the order ends, as the core)."""
    margin = float(info.params.get("background_margin", _BG["margin"])) / layout.bin_a + max(blocks)
    pad_b = END_MARGIN / layout.bin_b
    keep = (_order_map(sb.shape, blocks, curves, pad=margin, pad_b=pad_b) < 0) & \
        _fitted_region(sb.shape, blocks, curves, OUTER_WIDTH / layout.bin_a, pad_b)
    return np.where(keep, sb - sm, np.nan)


def background_pdf(before: np.ndarray, model: np.ndarray, edges: dict, layout: OrderLayout, info: PlotInfo) -> bytes:
    return background_page(before, model, edges, layout, info).pdf()


def background_page(before: np.ndarray, model: np.ndarray, edges: dict, layout: OrderLayout, info: PlotInfo) -> Page:
    sb, extent, blocks = _display(before, layout)
    sm = _display(model, layout)[0]
    curves = _edge_curves(edges, layout)
    resid = _residual_map(sb, sm, blocks, curves, layout, info)
    ok = np.isfinite(resid).any()
    peak = float(np.nanmax(sm)) if np.isfinite(sm).any() else 0.0
    low = float(np.nanmin(sm)) if np.isfinite(sm).any() else 0.0
    med = float(np.nanmedian(resid)) if ok else 0.0
    rms = float(1.4826 * np.nanmedian(np.abs(resid - med))) if ok else 0.0
    lines = [f"model: {low:.3g} to {peak:.3g} (normalised flux) · between the orders, flat - model: "
             f"median {med:.2g}, robust rms {rms:.2g}" + (f" = {100 * rms / peak:.1f} % of the model's peak"
                                                          if peak > 0 else "")]
    page = _page(info, "scattered-light background")
    top = _header(page, info, "scattered-light background", lines, BKG_PARAMS)
    rows = _rows(top, [2.2, 2.2, 2.2, 1.8])
    _finish(_image(page, *rows[0], sb, extent, "stacked flat before subtraction (stretched to 3× the model: orders "
                   "saturate)", vmin=0.0, vmax=3 * max(peak, 1e-6), label="flux (normalised)"))
    _finish(_image(page, *rows[1], sm, extent, "fitted scattered-light model", cmap="viridis", vmin=low,
                   vmax=peak, label="background (normalised flux)"))
    s = max(5 * rms, 1e-9)
    _finish(_image(page, *rows[2], resid, extent, "flat - model where the model is measured (grey: orders ± margin, "
                   f"and beyond {OUTER_WIDTH:g} unbinned px of the outermost orders) · colour scale ±5 rms", cmap="RdBu_r", vmin=med - s,
                   vmax=med + s, label="flat - model (normalised flux)"))
    _cut(page, *rows[3], before, model, curves, layout,
         float(info.params.get("background_margin", _BG["margin"])) / layout.bin_a)
    return page


def warm_up() -> None:
    """Load, once in the plot server, what every page would otherwise load in its own fork: the fonts'
    metrics and the image encoder (a tiny page), the colour maps, numpy.ma (numpy's nan-statistics) and
    the QC rows' module (unpickling a page's PlotInfo imports it, and the YAML contract with it)."""
    import numpy.ma  # noqa: F401
    from . import qc  # noqa: F401
    colormaps()
    np.nanpercentile(np.arange(4.0), (1, 99.5))
    page = Page(100.0, 100.0)
    page.text(10, 50, "warm", 8, bold=True)
    page.text(10, 30, "up", 8)
    page.image(np.zeros((2, 2, 3), np.uint8), 10, 10, 10, 10)
    page.pdf()
