"""QC pages on synthetic order geometry: header verdict, labels and texts that do not overlap, per-order
normalised display, axes limited to the image, edges as vectors, labelled colour bars."""
import re
import zlib

import numpy as np
import pytest

from soxs_mflat import plots
from soxs_mflat.core import OrderLayout
from soxs_mflat.qc import QCRow

NB, NA = 600, 1000                  # along the order (B, horizontal), cross-dispersion (A): orders ~8 px apart on the page
ORDERS = list(range(10, 26))        # 16 narrow, closely packed orders, like SOXS NIR


def _edges(width=12.0, spacing=24.0, a0=60.0):
    """Straight edges lower = a0 + spacing (n - 10), upper = lower + width, as polynomial coefficients
    c[i, j] of n^i b^j, with points every 25 px and tiny residuals."""
    lower = np.array([[a0 - 10 * spacing, 0.0], [spacing, 0.0]])
    upper = lower + np.array([[width, 0.0], [0.0, 0.0]])
    b = np.tile(np.arange(12.0, NB, 25.0), len(ORDERS))
    n = np.repeat(ORDERS, len(np.arange(12.0, NB, 25.0)))
    rng = np.random.default_rng(1)
    fit = lambda c: {"coeffs": c, "clipped": np.zeros(b.size, np.uint8), "residuals": rng.normal(0, 0.01, b.size),  # noqa: E731
                     "rms": 0.01}
    pts = {"b": b, "order": n, "lower": lower[0, 0] + lower[1, 0] * n, "upper": upper[0, 0] + upper[1, 0] * n}
    return {"points": pts, "lower": fit(lower), "upper": fit(upper)}, lower, upper


def _flat(lower, upper, levels):
    """Orders filled with their level (A vertical = rows: a_is_x False), 0 between them."""
    img = np.zeros((NA, NB), np.float32)
    a = np.arange(NA)[:, None]
    for n, lev in zip(ORDERS, levels):
        lo, up = lower[0, 0] + lower[1, 0] * n, upper[0, 0] + upper[1, 0] * n
        img[((a >= lo) & (a <= up)).repeat(NB, 1)] = lev
    return img


LAYOUT = OrderLayout(ORDERS, [0.0] * len(ORDERS), [NB - 1.0] * len(ORDERS), a_is_x=False)


def _info(qc=(), lamp="lamp flats"):
    return plots.PlotInfo("SOXS", "NIR", lamp, "2025-10-12T11:14:44", "2025-10-11", 5, list(qc),
                          {"order_deg": 6, "disp_axis_deg": 5, "bspline_deg": 2})


def _texts(page):
    return [t.text for t in page.texts]


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_header_says_what_when_and_the_qc_verdict():
    edges, lo, up = _edges()
    ok = [QCRow("X RES SD", 0.01, "pixels", "", 0.0, 0.2), QCRow("N LOW SENS", 3, "pixels", "")]
    page = plots.order_loc_page(_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info(ok))
    head = "\n".join(_texts(page))
    assert "SOXS NIR" in head and "2025-10-12T11:14:44" in head and "night 2025-10-11" in head and "5 flats" in head
    assert "QC: PASS (all 1 range-checked values in range)" in head and "order_deg 6" in head
    bad = [QCRow("X RES SD", 0.5, "pixels", "", 0.0, 0.2)]
    page = plots.order_loc_page(_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info(bad))
    verdict = next(t for t in page.texts if t.text.startswith("QC:"))
    assert verdict.text == "QC: FAIL — X RES SD = 0.5 not in [0, 0.2]" and verdict.colour == plots.FAIL


def test_order_labels_are_dark_on_white_and_do_not_overlap():
    edges, lo, up = _edges()
    page = plots.order_loc_page(_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info())
    labels = [t for t in page.texts if t.kind == "order"]
    assert sorted(int(t.text) for t in labels) == ORDERS
    assert all(t.colour == "black" and t.boxed for t in labels)
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            assert not _overlap(labels[i].box, labels[j].box), (labels[i].text, labels[j].text)
    image = next(ax for ax in page.axes if ax.has_image and ax.notes["title"].startswith("fitted"))
    for t in labels:   # each on its order, inside the image
        assert image.x < t.box[0] < t.box[2] < image.x + image.w and image.y < t.box[1] < t.box[3] < image.y + image.h


def test_no_text_overlaps_another():
    """Titles, tick labels, axis labels, legends and the header never collide (order labels sit on the image)."""
    edges, lo, up = _edges()
    model = np.full((NA, NB), 0.01, np.float32)
    flat = _flat(lo, up, [1.0] * 16)
    for page in (plots.order_loc_page(flat, edges, LAYOUT, _info()),
                 plots.background_page(flat + model, model, edges, LAYOUT, _info())):
        texts = [t for t in page.texts if t.kind != "order"]
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                assert not _overlap(texts[i].box, texts[j].box), (texts[i].text, texts[j].text)
        assert all(0 <= t.box[0] and t.box[2] <= page.width and 0 <= t.box[1] and t.box[3] <= page.height
                   for t in page.texts)


def test_axes_limited_to_the_image_and_colour_bars_labelled():
    edges, lo, up = _edges()
    page = plots.order_loc_page(_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info())
    images = [ax for ax in page.axes if ax.has_image]
    assert len(images) == 2 and all(ax.xlim == (-0.5, NB - 0.5) and ax.ylim == (-0.5, NA - 0.5) for ax in images)
    assert len(page.bars) == 3 and all(b.label for b in page.bars)   # two images, the order key
    key = next(b for b in page.bars if b.label == "order")
    assert key.discrete and key.ticklabels == [str(o) for o in ORDERS]


def test_lamps_orders_of_magnitude_apart_are_shown_per_order():
    edges, lo, up = _edges(width=14.0, spacing=30.0, a0=20.0)
    levels = [1.5] * 8 + [0.04] * 8                  # QTH orders next to D2 orders, as on the stitched UVB flat
    small, extent, blocks = plots._display(_flat(lo, up, levels), LAYOUT)
    curves = plots._edge_curves(edges, LAYOUT)
    shown, spread = plots._per_order_normalised(small, plots._order_map(small.shape, blocks, curves), len(curves))
    assert spread == pytest.approx(1.5 / 0.04)
    for n in ORDERS:                                  # the middle of every order displays at 1
        mid = 20 + 30 * (n - 10) + 7                  # unreduced row; the display averages blocks of rows
        assert shown[mid // blocks[0], (NB // 2) // blocks[1]] == pytest.approx(1.0), n
    same, one = plots._per_order_normalised(small * 0 + 1, np.zeros(small.shape, np.int16), 1)
    assert one == 1.0 and (same == 1).all()           # similar levels: the image is left as is


def _content(pdf: bytes) -> bytes:
    """The page's decompressed content streams."""
    out = []
    for raw in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            out.append(zlib.decompressobj().decompress(raw))
        except zlib.error:
            pass
    return b"\n".join(out)


def test_edges_points_and_labels_are_vectors():
    edges, lo, up = _edges()
    pdf = plots.order_loc_pdf(_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info())
    # rasters: the flat (shown twice, stored once) and its colour bar; the edge points, fitted edges,
    # labels, residuals and the 16-colour order key are vectors
    assert len(re.findall(rb"/Subtype\s*/Image", pdf)) == 2
    ops = _content(pdf)
    n = edges["points"]["b"].size
    assert ops.count(b" l h") == 2 * n + 2           # a closed triangle per point of each edge, two in the legend
    assert b"(QC: no ranges apply to this product) Tj" in ops   # the header is text, not pixels
    model = np.full((NA, NB), 0.01, np.float32)
    pdf = plots.background_pdf(_flat(lo, up, [1.0] * 16) + model, model, edges, LAYOUT, _info())
    assert len(re.findall(rb"/Subtype\s*/Image", pdf)) == 6      # flat, model, residual and their colour bars


def test_background_residual_is_measured_between_the_orders_only():
    edges, lo, up = _edges()
    model = np.full((NA, NB), 0.01, np.float32)
    before = _flat(lo, up, [1.0] * 16) + model
    small, extent, blocks = plots._display(before, LAYOUT)
    curves = plots._edge_curves(edges, LAYOUT)
    resid = plots._residual_map(small, plots._display(model, LAYOUT)[0], blocks, curves, LAYOUT, _info())
    finite = np.isfinite(resid)
    assert finite.any() and np.nanmax(np.abs(resid)) < 1e-6    # the model is exact between the orders
    # more than 30 px beyond the outermost orders (rows 0-19 and 940-999): not measured
    assert not finite[: 20 // blocks[0]].any() and not finite[940 // blocks[0]:].any()


def test_block_means_equal_numpy_means():
    rng = np.random.default_rng(3)
    img = rng.normal(1.0, 0.1, (1703, 2411)).astype(np.float32)
    img[5, 7] = np.nan                               # a NaN spoils its block only
    for data, transpose in ((img, False), (img, True)):
        small, extent, (fy, fx) = plots._reduce(data, transpose)
        d = data.T if transpose else data
        ny, nx = d.shape[0] // fy * fy, d.shape[1] // fx * fx
        twin = d[:ny, :nx].astype(np.float64).reshape(ny // fy, fy, nx // fx, fx).mean(axis=(1, 3))
        assert small.shape == twin.shape and max(small.shape) <= plots.MAX_DISPLAY
        assert extent == (-0.5, nx - 0.5, -0.5, ny - 0.5)
        assert np.array_equal(np.isnan(small), np.isnan(twin))
        np.testing.assert_allclose(small[~np.isnan(small)], twin[~np.isnan(twin)], rtol=1e-6)


def test_every_text_exists_in_the_pdf_standard_fonts():
    """The pages use the PDF's own Helvetica (not embedded), which has only the WinAnsi characters: any
    other (a Unicode minus, a triangle) would print as a blank."""
    from soxs_mflat.pdfdraw import ENCODING
    edges, lo, up = _edges()
    flat = _flat(lo, up, [1.0] * 16)
    model = np.full((NA, NB), 0.01, np.float32)
    bad = [QCRow("X RES SD", -0.5, "pixels", "", 0.0, 0.2)]
    for page in (plots.order_loc_page(flat, edges, LAYOUT, _info(bad)),
                 plots.background_page(flat + model, model - 0.02, edges, LAYOUT, _info(bad))):
        texts = _texts(page)
        assert any(t.startswith("-") for t in texts)      # negative tick labels are drawn
        for t in texts:
            t.encode(ENCODING)


def test_degenerate_inputs_still_make_readable_pages():
    """A constant model (no scattered light), an all-NaN residual and five failed QC values: the pages are
    written, the verdict wraps inside the page, and no scale repeats a label."""
    edges, lo, up = _edges()
    flat = _flat(lo, up, [1.0] * 16)
    bad = [QCRow(f"QC VALUE {k}", 1000.5 + k, "pixels", "", 0.0, 0.2) for k in range(5)]
    model = np.full((NA, NB), 0.01, np.float32)
    for page in (plots.background_page(model.copy(), model, edges, LAYOUT, _info(bad)),
                 plots.order_loc_page(flat, edges, LAYOUT, _info(bad))):
        verdict = [t for t in page.texts if t.kind == "verdict"]
        assert len(verdict) >= 2 and all(t.box[2] <= page.width - 10 for t in verdict)
        assert "; ".join(t.text.strip() for t in verdict).count("not in [0, 0.2]") == 5
        for bar in page.bars:
            assert len(set(bar.ticklabels)) == len(bar.ticklabels), (bar.label, bar.ticklabels)
        assert page.pdf().startswith(b"%PDF")


@pytest.mark.parametrize("n", [4, 12, 16, 25])
def test_neighbouring_orders_never_share_a_hue(n):
    from soxs_mflat.pdfdraw import colormap
    from soxs_mflat.plots import _order_colours
    tab = [tuple(c) for c in colormap("tab20") / 255.0]
    idx = [tab.index(c) for c in _order_colours(list(range(n)))]
    assert all(a // 2 != b // 2 for a, b in zip(idx, idx[1:]))          # tab20 pairs (2j, 2j+1) share a hue
    assert len(set(idx)) == min(n, 20)                                   # distinct while there are colours


def test_background_cut_draws_the_fitted_gaps_apart_from_the_order_flanks(monkeypatch):
    """The cut's 'between the orders' dots included the flanks within background_margin of an edge (at 3-4x the
    model on SOXS VIS), which the fit leaves out; they are drawn in their own colour and key entry now."""
    from soxs_mflat import pdfdraw
    edges, lo, up = _edges()
    model = np.full((NA, NB), 0.01, np.float32)
    before = _flat(lo, up, [1.0] * 16) + model
    drawn = []
    real = pdfdraw.Axes.markers
    monkeypatch.setattr(pdfdraw.Axes, "markers", lambda self, x, y, shape, size, colour, *a, **k: (
        drawn.append((np.asarray(x, float), colour)), real(self, x, y, shape, size, colour, *a, **k))[1])
    page = plots._page(_info(), "scattered-light background")
    plots._cut(page, 100.0, 150.0, before, model, plots._edge_curves(edges, LAYOUT), LAYOUT, 4.0)
    gaps = next(x for x, c in drawn if c == "black" and x.size > 10)
    flank = next(x for x, c in drawn if c == "#e69f00" and x.size > 10)
    n = np.array(ORDERS, float)[:, None]
    lower, upper = lo[0, 0] + lo[1, 0] * n, up[0, 0] + up[1, 0] * n       # the orders' rows (A)
    dist = lambda a: np.min(np.maximum(lower - a[None, :], a[None, :] - upper), axis=0)   # noqa: E731  > 0 outside
    assert (dist(gaps) > 4.0).all() and ((dist(flank) > 0) & (dist(flank) <= 4.0)).all()
    assert flank.size == 16 * 2 * 4                                       # 4 px on each side of each order
    assert gaps.size + flank.size + sum(int(u - l) + 1 for l, u in zip(lower.ravel(), upper.ravel())) == NA
    assert "order flanks (± 4 px, not fitted)" in _texts(page)
