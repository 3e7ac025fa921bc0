"""QC PDFs, made to be read at a glance: ORDER LOC RES (edge detections, fitted edges, residuals per order)
and BKGROUND (flat, scattered-light model, inter-order residual, a cut across the orders).

Every page starts with a header block (instrument, arm, lamp, date, number of flats, QC pass/fail, key
parameters). Images are embedded at up to MAX_DISPLAY pixels per axis; edges, points and labels are vectors,
so zooming into the PDF shows an edge against the pixels. The dispersion axis is always horizontal."""
from __future__ import annotations

import io
import warnings
from typing import Sequence

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from . import _core
from .core import OrderLayout, poly_eval
from .plotserver import PlotInfo

__all__ = ["PlotInfo", "order_loc_pdf", "order_loc_figure", "background_pdf", "background_figure"]

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


# ---------------------------------------------------------------------------------------------- drawing
def _header(fig: Figure, info: PlotInfo, page: str, lines: Sequence[str], keys: Sequence[str]) -> float:
    """The header block: what, when, how many, QC verdict, key parameters; returns where the panels may
    start (figure fraction)."""
    fig.text(0.02, 0.985, f"soxs_mflat · {info.instrument} {info.arm} · {info.lamp} · {page}", fontsize=13,
             weight="bold", va="top")
    when = f"DATE-OBS {info.date_obs or '?'}" + (f" (night {info.night})" if info.night else "")
    fig.text(0.02, 0.962, f"{when} · {info.n_flats} flats", fontsize=9, va="top")
    ranged = [r for r in info.qc if r.flag != "-"]
    bad = [r for r in ranged if r.flag == "fail"]
    if not ranged:
        verdict, colour = "QC: no ranges apply to this product", "black"
    elif bad:
        verdict = "QC: FAIL — " + "; ".join(f"{r.name} = {r.value:.4g} not in [{r.low:g}, {r.high:g}]" for r in bad)
        colour = FAIL
    else:
        verdict, colour = f"QC: PASS (all {len(ranged)} range-checked values in range)", PASS
    fig.text(0.02, 0.946, verdict, fontsize=10, weight="bold", color=colour, va="top")
    for i, line in enumerate(lines):
        fig.text(0.02, 0.929 - 0.014 * i, line, fontsize=8.5, va="top")
    shown = [f"{k} {info.params[k]}" for k in keys if k in info.params]
    half = (len(shown) + 1) // 2 if len(", ".join(shown)) > 150 else len(shown)
    for i, part in enumerate((shown[:half], shown[half:])):
        if part:
            fig.text(0.02, 0.929 - 0.014 * (len(lines) + i), ("parameters: " if i == 0 else "    ") + ", ".join(part),
                     fontsize=7.5, va="top", color="0.25")
    return 0.929 - 0.014 * (len(lines) + (2 if half < len(shown) else 1)) - 0.022


def _image(fig, ax, small, extent, title, cmap="gray", vmin=None, vmax=None, label="", norm=None):
    if norm is None and vmin is None:
        vmin, vmax = np.nanpercentile(small, (1, 99.5))
    im = ax.imshow(small, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, norm=norm, aspect="auto",
                   interpolation="none", extent=extent)
    ax.set_xlim(extent[0], extent[1])       # the image, nothing beyond it
    ax.set_ylim(extent[2], extent[3])
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xlabel("along the order (binned px)", fontsize=8)
    ax.set_ylabel("cross-dispersion (binned px)", fontsize=8)
    ax.tick_params(labelsize=7)
    cb = fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)
    cb.ax.yaxis.get_major_locator().set_params(nbins=5)
    return im


def _label_orders(ax, curves) -> None:
    """Order numbers in black on white boxes, staggered along the orders so that narrow, close orders
    (SOXS NIR) do not overlap."""
    for k, (o, bb, lo, up) in enumerate(curves):
        i = int(len(bb) * (0.12, 0.5, 0.88)[k % 3])
        ax.text(bb[i], 0.5 * (lo[i] + up[i]), str(o), fontsize=7.5, ha="center", va="center", color="black",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="0.3", lw=0.4, alpha=0.9))


def _order_colours(orders):
    """One distinct colour per order (tab20 cycled) and the matching discrete colour map / norm for a key."""
    from matplotlib import colormaps
    base = colormaps["tab20"].colors
    cols = [base[(2 * k) % 20 if len(orders) <= 10 else k % 20] for k in range(len(orders))]
    cmap = ListedColormap(cols)
    norm = BoundaryNorm(np.arange(len(orders) + 1) - 0.5, len(orders))
    return cols, cmap, norm


# zlib level 1: faster pages, files 2 % larger (SOXS VIS); the PDF's 14 standard fonts (Helvetica, not
# embedded): text costs a third of embedding DejaVu (pages 0.37 -> 0.25 s of CPU), but only WinAnsi characters
# exist in them, hence ASCII minus signs and no other symbols in the texts (tests/test_plots.py checks)
PDF_RC = {"pdf.compression": 1, "pdf.use14corefonts": True, "axes.unicode_minus": False}
PDF_ENCODING = "cp1252"


def _pdf(fig: Figure) -> bytes:
    import logging
    from matplotlib import rc_context
    buf = io.BytesIO()
    fonts = logging.getLogger("matplotlib.font_manager")
    level = fonts.level
    fonts.setLevel(logging.ERROR)   # "Failed to find font weight normal for Helvetica, now using medium"
    try:
        with rc_context(PDF_RC):
            fig.savefig(buf, format="pdf", dpi=100)
    finally:
        fonts.setLevel(level)
    return buf.getvalue()


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


def _points(ax, edges: dict, layout: OrderLayout) -> None:
    pts = edges["points"]
    b = _to_binned(pts["b"], layout.bin_b)
    for key, colour, mk in (("lower", LOWER, "^"), ("upper", UPPER, "v")):
        a = _to_binned(pts[key], layout.bin_a)
        clip = np.asarray(edges[key]["clipped"], bool)
        ax.plot(b[~clip], a[~clip], mk, ms=2.2, mew=0, color=colour, label=f"{key} edge points")
        ax.plot(b[clip], a[clip], "x", ms=4, mew=0.8, color=CLIPPED)
    ax.plot([], [], "x", ms=4, color=CLIPPED, label="clipped from the fit")
    ax.legend(fontsize=7, loc="upper right", framealpha=0.9, markerscale=2)


def _fits(ax, curves) -> None:
    for o, bb, lo, up in curves:
        ax.plot(bb, lo, "-", lw=0.7, color=LOWER)
        ax.plot(bb, up, "--", lw=0.7, color=UPPER)
    ax.plot([], [], "-", color=LOWER, label="lower edge fit")
    ax.plot([], [], "--", color=UPPER, label="upper edge fit")
    ax.legend(fontsize=7, loc="upper right", framealpha=0.9)
    _label_orders(ax, curves)


def _residuals(fig, axes, edges: dict, layout: OrderLayout) -> None:
    """Residuals of each edge coloured by order, with an order key; per-order rms bars."""
    pts, orders = edges["points"], list(map(int, layout.orders))
    cols, cmap, norm = _order_colours(orders)
    index = {o: k for k, o in enumerate(orders)}
    idx = np.array([index.get(int(o), 0) for o in pts["order"]])
    lim = 0.0
    for ax, key in zip(axes[:2], ("lower", "upper")):
        fit = edges[key]
        keep = ~np.asarray(fit["clipped"], bool) & np.isfinite(fit["residuals"])
        for k, colour in enumerate(cols):   # one marker line per order: far cheaper in the PDF than a scatter
            sel = keep & (idx == k)
            ax.plot(pts["b"][sel], fit["residuals"][sel], "o", ms=1.4, mew=0, color=colour)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{key} edge: fit - measured (rms {fit['rms']:.3f} px)", fontsize=9, loc="left")
        ax.set_xlabel("along the order (unbinned px)", fontsize=8)
        ax.tick_params(labelsize=7)
        lim = max(lim, float(np.nanmax(np.abs(fit["residuals"][keep]))) if keep.any() else 0.0)
    axes[0].set_ylabel("residual (px)", fontsize=8)
    for ax in axes[:2]:
        ax.set_ylim(-1.1 * lim - 1e-6, 1.1 * lim + 1e-6)
    from matplotlib.cm import ScalarMappable
    cb = fig.colorbar(ScalarMappable(norm, cmap), ax=axes[1], fraction=0.05, pad=0.02, ticks=np.arange(len(orders)))
    cb.ax.set_yticklabels([str(o) for o in orders], fontsize=5.5 if len(orders) > 16 else 6.5)
    cb.set_label("order", fontsize=7)
    ax = axes[2]
    for k, o in enumerate(orders):
        sel = idx == k
        for dx, key, hatch in ((-0.2, "lower", None), (0.2, "upper", "////")):
            fit = edges[key]
            keep = sel & ~np.asarray(fit["clipped"], bool) & np.isfinite(fit["residuals"])
            rms = float(np.sqrt(np.mean(fit["residuals"][keep] ** 2))) if keep.any() else 0.0
            ax.bar(k + dx, rms, 0.4, color=cols[k], hatch=hatch, edgecolor="0.2", lw=0.3)
    ax.set_xticks(range(len(orders)), [str(o) for o in orders], fontsize=5.5 if len(orders) > 16 else 6.5)
    ax.set_title("rms per order (plain lower, hatched upper)", fontsize=9, loc="left")
    ax.set_xlabel("order", fontsize=8)
    ax.set_ylabel("rms (px)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)


def order_loc_pdf(flat: np.ndarray, edges: dict, layout: OrderLayout, info: PlotInfo) -> bytes:
    return _pdf(order_loc_figure(flat, edges, layout, info))


def order_loc_figure(flat: np.ndarray, edges: dict, layout: OrderLayout, info: PlotInfo) -> Figure:
    small, extent, blocks = _display(flat, layout)
    curves = _edge_curves(edges, layout)
    omap = _order_map(small.shape, blocks, curves, pad_b=END_MARGIN / layout.bin_b)
    shown, spread = _per_order_normalised(small, omap, len(curves))
    fig = Figure(figsize=(11, 15))
    top = _header(fig, info, "order-edge detection and fit", _edge_summary(edges, layout, info, small.shape, spread),
                  EDGE_PARAMS)
    gs = fig.add_gridspec(3, 3, height_ratios=[3, 3, 2], top=top, bottom=0.04, left=0.07, right=0.96, hspace=0.28,
                          wspace=0.4)
    label = "flux / order median" if spread > 1 else "flux (normalised)"
    vlim = np.nanpercentile(shown, (1, 99.5))
    ax0 = fig.add_subplot(gs[0, :])
    _image(fig, ax0, shown, extent, "detected edge points on the stacked flat (triangles pointing up: lower edge, down: upper edge)", vmin=vlim[0],
           vmax=vlim[1], label=label)
    _points(ax0, edges, layout)
    ax1 = fig.add_subplot(gs[1, :], sharex=ax0, sharey=ax0)
    _image(fig, ax1, shown, extent, "fitted edges (global polynomial) and order numbers", vmin=vlim[0], vmax=vlim[1],
           label=label)
    _fits(ax1, curves)
    _residuals(fig, [fig.add_subplot(gs[2, i]) for i in range(3)], edges, layout)
    return fig


def _cut(ax, before: np.ndarray, model: np.ndarray, curves, layout: OrderLayout) -> None:
    """Flat and model along the cross-dispersion axis at the middle of the orders, full resolution: the
    model must run through the inter-order light."""
    f = before.T if layout.a_is_x else before
    m = model.T if layout.a_is_x else model
    col = f.shape[1] // 2
    a = np.arange(f.shape[0])
    inside = np.zeros(f.shape[0], bool)
    for _, bb, lo, up in curves:
        if bb[0] <= col <= bb[-1]:
            l, u = sorted((np.interp(col, bb, lo), np.interp(col, bb, up)))
            inside |= (a >= l) & (a <= u)
    ax.plot(a, f[:, col], "-", lw=0.5, color="0.55", label="stacked flat")
    ax.plot(a[~inside], f[~inside, col], ".", ms=1.5, color="black", label="between the orders")
    ax.plot(a, m[:, col], "-", lw=1.0, color=FAIL, label="background model")
    top = float(np.nanmax(m[:, col])) if np.isfinite(m[:, col]).any() else 1.0
    gap = f[~inside, col]
    low = float(np.nanpercentile(gap, 1)) if np.isfinite(gap).any() else 0.0
    ax.set_ylim(min(low, -0.2 * top), 4 * max(top, 1e-6))
    ax.set_xlim(0, f.shape[0] - 1)
    ax.set_title(f"cut across the orders at along-order pixel {col} (y axis clipped at 4× the model)",
                 fontsize=9, loc="left")
    ax.set_xlabel("cross-dispersion (binned px)", fontsize=8)
    ax.set_ylabel("flux (normalised)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right", markerscale=4)


def _residual_map(sb, sm, blocks, curves, layout: OrderLayout, info: PlotInfo):
    """Flat − model between the orders, kept clear of the edges by the background margin plus one display
    bin, and limited to where the model is measured (30 px beyond the outermost orders on each line and
    25 px past the order ends, as the core)."""
    margin = float(info.params.get("background_margin", _BG["margin"])) / layout.bin_a + max(blocks)
    pad_b = END_MARGIN / layout.bin_b
    keep = (_order_map(sb.shape, blocks, curves, pad=margin, pad_b=pad_b) < 0) & \
        _fitted_region(sb.shape, blocks, curves, OUTER_WIDTH / layout.bin_a, pad_b)
    return np.where(keep, sb - sm, np.nan)


def background_pdf(before: np.ndarray, model: np.ndarray, edges: dict, layout: OrderLayout, info: PlotInfo) -> bytes:
    return _pdf(background_figure(before, model, edges, layout, info))


def background_figure(before: np.ndarray, model: np.ndarray, edges: dict, layout: OrderLayout,
                      info: PlotInfo) -> Figure:
    sb, extent, blocks = _display(before, layout)
    sm = _display(model, layout)[0]
    curves = _edge_curves(edges, layout)
    resid = _residual_map(sb, sm, blocks, curves, layout, info)
    ok = np.isfinite(resid).any()
    peak = float(np.nanmax(sm)) if np.isfinite(sm).any() else 0.0
    med = float(np.nanmedian(resid)) if ok else 0.0
    rms = float(1.4826 * np.nanmedian(np.abs(resid - med))) if ok else 0.0
    lines = [f"model: {float(np.nanmin(sm)):.3g} to {peak:.3g} (normalised flux) · between the orders, flat - model: "
             f"median {med:.2g}, robust rms {rms:.2g}" + (f" = {100 * rms / peak:.1f} % of the model's peak"
                                                          if peak > 0 else "")]
    fig = Figure(figsize=(11, 15))
    top = _header(fig, info, "scattered-light background", lines, BKG_PARAMS)
    gs = fig.add_gridspec(4, 1, height_ratios=[2.2, 2.2, 2.2, 1.8], top=top, bottom=0.04, left=0.07, right=0.96,
                          hspace=0.32)
    ax0 = fig.add_subplot(gs[0])
    _image(fig, ax0, sb, extent, "stacked flat before subtraction (stretched to 3× the model: orders saturate)",
           vmin=0.0, vmax=3 * max(peak, 1e-6), label="flux (normalised)")
    ax1 = fig.add_subplot(gs[1], sharex=ax0, sharey=ax0)
    _image(fig, ax1, sm, extent, "fitted scattered-light model", cmap="viridis", vmin=float(np.nanmin(sm)),
           vmax=max(peak, float(np.nanmin(sm)) + 1e-9), label="background (normalised flux)")
    ax2 = fig.add_subplot(gs[2], sharex=ax0, sharey=ax0)
    from matplotlib import colormaps
    cmap = colormaps["RdBu_r"].with_extremes(bad="0.85")
    s = max(5 * rms, 1e-9)
    _image(fig, ax2, resid, extent, f"flat - model where the model is measured (grey: orders ± margin, and beyond "
           f"30 px of the outermost orders) · colour scale ±5 rms", cmap=cmap, vmin=med - s, vmax=med + s,
           label="flat - model (normalised flux)")
    _cut(fig.add_subplot(gs[3]), before, model, curves, layout)
    return fig

