"""QC PDFs: order-edge detections and fits (ORDER LOC RES), scattered-light model (BKGROUND)."""
from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .core import OrderLayout, poly_eval

# pyplot and tight_layout cost ~1 s per run here; a Figure with a fixed layout renders the same pages.
LAYOUT = dict(left=0.07, right=0.97, top=0.96, bottom=0.05, hspace=0.32)


MAX_DISPLAY = 800   # image pixels per axis embedded in the PDF (the page shows fewer)


def _reduce(data):
    """Block-average to at most MAX_DISPLAY pixels per axis (float32 is plenty for a display);
    returns the image and its extent."""
    fy = max(1, -(-data.shape[0] // MAX_DISPLAY))
    fx = max(1, -(-data.shape[1] // MAX_DISPLAY))
    ny, nx = data.shape[0] // fy * fy, data.shape[1] // fx * fx
    small = data[:ny, :nx].reshape(ny // fy, fy, nx // fx, fx).mean(axis=(1, 3), dtype=np.float32)
    return small, (-0.5, nx - 0.5, -0.5, ny - 0.5)


def _show(ax, img, title, a_is_x, cmap="gray", stretch=(2, 98), reduced=None):
    """Display with the dispersion axis horizontal (B along x of the plot)."""
    data, extent = reduced or _reduce(img.T if a_is_x else img)
    lo, hi = np.nanpercentile(data, stretch)
    im = ax.imshow(data, origin="lower", cmap=cmap, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest",
                   extent=extent)
    ax.set_title(title, fontsize=9)
    return im


def _to_binned(x, binning):
    """Unbinned coordinate to binned pixel: soxspipe's convention (binned pixel i is unbinned bin * i)."""
    return np.asarray(x, float) / binning


def order_loc_pdf(flat: np.ndarray, edges: dict, layout: OrderLayout, title: str) -> bytes:
    pts, lo_fit, up_fit = edges["points"], edges["lower"], edges["upper"]
    fig = Figure(figsize=(11, 12))
    axes = fig.subplots(3, 1, gridspec_kw={"height_ratios": [3, 3, 2]})
    small = _reduce(flat.T if layout.a_is_x else flat)   # shown twice
    _show(axes[0], flat, f"{title}: detected edge points (green), clipped (red x)", layout.a_is_x, reduced=small)
    b = _to_binned(pts["b"], layout.bin_b)
    for key, fit in (("lower", lo_fit), ("upper", up_fit)):
        a = _to_binned(pts[key], layout.bin_a)
        clip = fit["clipped"].astype(bool)
        axes[0].plot(b[~clip], a[~clip], ".", ms=2, color="lime", rasterized=True)
        axes[0].plot(b[clip], a[clip], "x", ms=5, color="red")
    _show(axes[1], flat, "global polynomial fits, orders filled and labelled", layout.a_is_x, reduced=small)
    colors = colormaps["tab20"](np.linspace(0, 1, max(len(layout.orders), 2)))
    for k, (o, b0, b1) in enumerate(zip(layout.orders, layout.b_min, layout.b_max)):
        bb = np.linspace(b0, b1, 200)
        lo = _to_binned(poly_eval(lo_fit["coeffs"], o, bb), layout.bin_a)
        up = _to_binned(poly_eval(up_fit["coeffs"], o, bb), layout.bin_a)
        x = _to_binned(bb, layout.bin_b)
        axes[1].fill_between(x, lo, up, color=colors[k], alpha=0.35, lw=0)
        axes[1].text(x[len(x) // 2], 0.5 * (lo + up)[len(x) // 2], str(o), color="white", fontsize=8,
                     ha="center", va="center", weight="bold")
    for ax in axes[:2]:
        ax.set_xlabel("along the order (px)")
        ax.set_ylabel("cross-dispersion (px)")
    ax = axes[2]
    for key, fit, mk in (("lower", lo_fit, "o"), ("upper", up_fit, "s")):
        keep = ~fit["clipped"].astype(bool)
        ax.scatter(pts["b"][keep], fit["residuals"][keep], s=3, marker=mk, c=pts["order"][keep], cmap="tab20",
                   label=f"{key} edge (rms {fit['rms']:.3f} px)", rasterized=True)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("along the order (unbinned px)")
    ax.set_ylabel("fit - measured (px)")
    ax.legend(fontsize=8)
    return _pdf(fig)


def background_pdf(before: np.ndarray, model: np.ndarray, layout: OrderLayout, title: str) -> bytes:
    fig = Figure(figsize=(11, 12))
    axes = fig.subplots(3, 1)
    _show(axes[0], before, f"{title}: master flat before background subtraction", layout.a_is_x)
    im = _show(axes[1], model, "fitted scattered-light model", layout.a_is_x, cmap="viridis", stretch=(0, 100))
    fig.colorbar(im, ax=axes[1], fraction=0.03)
    resid = before - model
    _show(axes[2], resid, "after subtraction", layout.a_is_x)
    for ax in axes:
        ax.set_xlabel("along the order (px)")
        ax.set_ylabel("cross-dispersion (px)")
    return _pdf(fig)


def _pdf(fig: Figure) -> bytes:
    fig.subplots_adjust(**LAYOUT)
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf", dpi=110)
    return buf.getvalue()
