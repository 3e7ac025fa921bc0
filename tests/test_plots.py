"""QC pages on synthetic order geometry: header verdict, labels that do not overlap, per-order normalised
display, axes limited to the image, edges as vectors, labelled colour bars."""
import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

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


def _texts(fig):
    return [t.get_text() for t in fig.texts]


def test_header_says_what_when_and_the_qc_verdict():
    edges, lo, up = _edges()
    ok = [QCRow("X RES SD", 0.01, "pixels", "", 0.0, 0.2), QCRow("N LOW SENS", 3, "pixels", "")]
    fig = plots.order_loc_figure(_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info(ok))
    head = "\n".join(_texts(fig))
    assert "SOXS NIR" in head and "2025-10-12T11:14:44" in head and "night 2025-10-11" in head and "5 flats" in head
    assert "QC: PASS (all 1 range-checked values in range)" in head and "order_deg 6" in head
    bad = [QCRow("X RES SD", 0.5, "pixels", "", 0.0, 0.2)]
    fig = plots.order_loc_figure(_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info(bad))
    verdict = next(t for t in fig.texts if t.get_text().startswith("QC:"))
    assert verdict.get_text() == "QC: FAIL — X RES SD = 0.5 not in [0, 0.2]" and verdict.get_color() == plots.FAIL


def test_order_labels_are_dark_on_white_and_do_not_overlap():
    edges, lo, up = _edges()
    fig = plots.order_loc_figure(_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info())
    ax = fig.axes[2]                                   # image, colour bar, fitted edges, ...
    labels = [t for t in ax.texts if re.fullmatch(r"\d+", t.get_text())]
    assert sorted(int(t.get_text()) for t in labels) == ORDERS
    assert all(t.get_color() == "black" and t.get_bbox_patch().get_facecolor()[:3] == (1, 1, 1) for t in labels)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    boxes = [t.get_bbox_patch().get_window_extent(canvas.get_renderer()) for t in labels]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())


def test_axes_limited_to_the_image_and_colour_bars_labelled():
    edges, lo, up = _edges()
    fig = plots.order_loc_figure(_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info())
    for ax in fig.axes:
        if ax.images and ax.get_label() != "<colorbar>":
            assert ax.get_xlim() == (-0.5, NB - 0.5) and ax.get_ylim() == (-0.5, NA - 0.5)
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 3 and all(ax.get_ylabel() for ax in bars)   # two images, the order key
    key = next(ax for ax in bars if ax.get_ylabel() == "order")
    assert [t.get_text() for t in key.get_yticklabels()] == [str(o) for o in ORDERS]


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


def test_edges_points_and_labels_are_vectors():
    edges, lo, up = _edges()
    pdf = plots.order_loc_pdf(_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info())
    # rasters: the two images and their colour bars (matplotlib rasterises bars of >= 50 colours); the edge
    # points, fitted edges, labels, residuals and the 16-colour order key are vectors
    assert len(re.findall(rb"/Subtype\s*/Image", pdf)) == 4
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
    other (a Unicode minus, a triangle) would print as '?'."""
    from matplotlib import rc_context
    from matplotlib.text import Text
    edges, lo, up = _edges()
    flat = _flat(lo, up, [1.0] * 16)
    model = np.full((NA, NB), 0.01, np.float32)
    bad = [QCRow("X RES SD", -0.5, "pixels", "", 0.0, 0.2)]
    with rc_context(plots.PDF_RC):
        for fig in (plots.order_loc_figure(flat, edges, LAYOUT, _info(bad)),
                    plots.background_figure(flat + model, model - 0.02, edges, LAYOUT, _info(bad))):
            FigureCanvasAgg(fig).draw()              # tick labels exist once drawn
            texts = [t.get_text() for t in fig.findobj(Text) if t.get_text()]
            assert any(t.startswith("-") for t in texts)      # negative tick labels are drawn
            for t in texts:
                t.encode(plots.PDF_ENCODING)
