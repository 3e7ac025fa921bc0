"""The QC pages' drawing layer: round-number ticks, colour maps as matplotlib maps values (matplotlib is
the oracle), the stored tables up to date, text boxes where the text is drawn."""
import json
import zlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from soxs_mflat import pdfdraw
from test_plots import _content

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("lo, hi, n, ticks, labels", [
    (-0.5, 4095.5, 6, [0, 1000, 2000, 3000, 4000], ["0", "1000", "2000", "3000", "4000"]),
    (-0.5, 799.5, 6, [0, 200, 400, 600], ["0", "200", "400", "600"]),
    (0.0, 0.0125, 5, [0, 0.0025, 0.005, 0.0075, 0.01, 0.0125], ["0", "0.0025", "0.0050", "0.0075", "0.0100", "0.0125"]),
    (-0.044, 0.044, 6, [-0.04, -0.02, 0, 0.02, 0.04], ["-0.04", "-0.02", "0", "0.02", "0.04"]),
    (1.0, 1.0, 6, [1.0], ["1"]),
])
def test_nice_ticks(lo, hi, n, ticks, labels):
    t, s = pdfdraw.nice_ticks(lo, hi, n)
    np.testing.assert_allclose(t, ticks, atol=1e-12)
    assert s == labels


def test_colourise_maps_values_as_matplotlib():
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    rng = np.random.default_rng(2)
    img = rng.normal(0.0, 1.0, (64, 80)).astype(np.float32)
    img[3, 4] = np.nan
    for name, (vmin, vmax) in (("gray", (-1.5, 2.0)), ("viridis", (-2.0, 1.0)), ("RdBu_r", (-1.0, 1.0))):
        ours = pdfdraw.colourise(img, pdfdraw.colormap(name), vmin, vmax, bad=(1, 2, 3))
        theirs = colormaps[name](Normalize(vmin, vmax)(img), bytes=True)[..., :3].astype(int)
        ok = np.isfinite(img)
        assert np.abs(ours[ok].astype(int) - theirs[ok]).max() <= 1, name   # 8-bit rounding of the table
        assert tuple(ours[3, 4]) == (1, 2, 3)


def test_stored_colour_maps_are_matplotlib_s():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from make_colormaps import OUT, tables
    finally:
        sys.path.pop(0)
    assert json.loads(OUT.read_text()) == tables(), "run python scripts/make_colormaps.py"


def test_text_boxes_follow_alignment_and_rotation():
    from reportlab.pdfbase.pdfmetrics import stringWidth
    page = pdfdraw.Page(200, 100)
    w = stringWidth("order", pdfdraw.FONT, 10)
    page.text(100, 50, "order", 10, ha="center", va="baseline")
    page.text(100, 50, "order", 10, ha="right", va="top")
    page.text(100, 50, "order", 10, ha="center", va="center", rotation=90)
    a, b, c = (t.box for t in page.texts)
    assert a == pytest.approx((100 - w / 2, -0.207 * 10 + 50, 100 + w / 2, 0.718 * 10 + 50))
    assert b[2] == pytest.approx(100) and b[3] == pytest.approx(50)        # ends at x, cap height at y
    assert c[2] - c[0] == pytest.approx(0.925 * 10) and c[3] - c[1] == pytest.approx(w)   # turned upright
    assert page.pdf().startswith(b"%PDF")


def test_rgb_forms():
    assert pdfdraw.rgb("#ff8000") == pytest.approx((1.0, 128 / 255, 0.0))
    assert pdfdraw.rgb("0.25") == (0.25, 0.25, 0.25) and pdfdraw.rgb("white") == (1.0, 1.0, 1.0)
    assert pdfdraw.rgb((0.1, 0.2, 0.3, 1.0)) == (0.1, 0.2, 0.3)


@pytest.mark.parametrize("lo, hi", [(0.005, 0.005 + 1e-9), (1e6, 1e6 + 5), (-1e-9, 1e-9), (1e6, 5e6), (3.0, 3.0 + 3e-6)])
def test_tick_labels_tell_neighbours_apart(lo, hi):
    t, s = pdfdraw.nice_ticks(lo, hi)
    assert len(t) >= 3 and len(set(s)) == len(s)
    np.testing.assert_allclose([float(x) for x in s], t, rtol=1e-9, atol=1e-15)   # each label is its tick's value


def test_degenerate_limits_and_values_are_drawable():
    page = pdfdraw.Page(200, 200)
    ax = pdfdraw.Axes(page, 20, 20, 100, 100, (5.0, 5.0), (float("nan"), 1.0))
    assert ax.xlim[0] < 5.0 < ax.xlim[1] and ax.ylim == (0.0, 1.0)
    ax.bars([0.0, float("nan")], [float("nan"), 1.0], 0.5, "#ff0000")
    ax.frame("t", "x", "y")
    page.colourbar(150, 20, 10, 100, pdfdraw.colormap("gray"), float("nan"), float("nan"), "label")
    pdf = page.pdf()
    ops = _content(pdf)
    assert pdf.startswith(b"%PDF") and b" re " in ops and not re.search(rb"\b(nan|inf)\b", ops, re.I)


def _image_streams(pdf: bytes) -> list[bytes]:
    """The raw (still compressed) data of every image XObject, sliced by its /Length."""
    out = []
    for m in re.finditer(rb"<<((?:(?!>>).)*?/Subtype /Image(?:(?!>>).)*)>>\s*stream\r?\n", pdf, re.S):
        n = int(re.search(rb"/Length (\d+)", m.group(1)).group(1))
        out.append(pdf[m.end():m.end() + n])
    return out


def test_images_are_exact_level_1_streams_and_reportlab_is_restored():
    from reportlab.pdfbase import pdfdoc
    before = pdfdoc.zlib
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)   # colour: stored as RGB, row 0 at the bottom
    page = pdfdraw.Page(200, 200)
    page.image(img, 10, 10, 53, 37)
    streams = _image_streams(page.pdf())
    assert pdfdoc.zlib is before and pdfdoc.zlib.compress is zlib.compress
    assert len(streams) == 1
    raw = zlib.decompress(streams[0])
    assert raw == np.ascontiguousarray(img[::-1]).tobytes()   # the pixels, exactly
    assert streams[0] == zlib.compress(raw, 1)                 # at level 1, not reportlab's 6


def test_pages_drawn_in_threads_leave_reportlab_as_it_was():
    from concurrent.futures import ThreadPoolExecutor
    from reportlab import rl_config
    from reportlab.pdfbase import pdfdoc
    before = (pdfdoc.zlib, rl_config.useA85)
    img = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def one(_):
        page = pdfdraw.Page(100, 100)
        page.image(img, 0, 0, 64, 64)
        return zlib.decompress(_image_streams(page.pdf())[0])

    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(one, range(16)))
    assert (pdfdoc.zlib, rl_config.useA85) == before
    assert all(o == np.ascontiguousarray(img[::-1]).tobytes() for o in out)
