"""The core validates what it is given before touching memory (issue 14): each bad call below
crashed (segfault, out-of-bounds read, hang or out-of-memory) before. Each runs in a forked child
process, so that a regression shows as a failed test, not as a dead pytest."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

PRELUDE = """
import numpy as np, soxs_mflat as sm, synth_orders as so
from soxs_mflat import _core
LAY = sm.OrderLayout([1, 2, 3, 4], [0] * 4, [599] * 4)
IMG = so.frame(level=20000.0)
FRAMES = [IMG * s for s in (1.0, 1.01, 0.99)]
ERRS = [np.sqrt(np.maximum(f, 0) + 9).astype(np.float32) for f in FRAMES]
P = dict(order_deg=2, disp_axis_deg=3, gaussian_blur_sigma=20, slice_length_for_edge_detection=70)
LO, UP = so.edge_coeffs()
def centre(**cells):
    c = np.zeros((4, 6)); c[:2, :3] = so.centre_coeffs()
    for k, v in cells.items():
        c[int(k[1]), int(k[2])] = v
    return c
"""

# name: (statement, words the InputError must contain)
CASES = {
    "fit_huge_degrees": ("sm.fit_global_poly([1, 2, 3], [1, 2, 3], [1, 2, 3], 65535, 65535)", "degrees"),
    "fit_nan_point": ("sm.fit_global_poly([1, 2, np.nan, 4], [1, 2, 3, 4], [1, 2, 3, 4], 1, 1)", "not finite"),
    "in_order_mask_huge": ("sm.in_order_mask((2**40, 2**40), LO, UP, LAY)", "image size"),
    "in_order_mask_nan_edge": ("sm.in_order_mask((600, 420), LO * np.nan, UP, LAY)", "not finite"),
    "master_order_deg_int_max": ("sm.master_flat(FRAMES, so.centre_coeffs(), LAY, params={**P, 'order_deg': 2**31 - 1})",
                                 "order_deg"),
    "master_order_deg_3_5": ("sm.master_flat(FRAMES, so.centre_coeffs(), LAY, params={**P, 'order_deg': 3.5})",
                             "order_deg must be an integer"),
    "master_centre_1e17": ("sm.master_flat(FRAMES, centre(c00=1e17), LAY, params=P)", "nowhere on the detector"),
    # on the detector near B = 0 only: a clean processing error (no edges), no read outside the image
    "master_cent_05_1000": ("sm.master_flat(FRAMES, centre(c05=1000), LAY, params=P)", "no order edges"),
    "master_cent_35_1e300": ("sm.master_flat(FRAMES, centre(c35=1e300), LAY, params=P)", "not finite"),
    "master_400_orders": ("sm.master_flat(FRAMES, so.centre_coeffs(), sm.OrderLayout(range(1, 401), [0] * 400,"
                          " [599] * 400), params=P)", "400 orders"),
    "master_orders_off_detector": ("sm.master_flat(FRAMES, so.centre_coeffs(), sm.OrderLayout(range(21, 37),"
                                   " [0] * 16, [599] * 16), params=P)", "nowhere on the detector"),
    "master_duplicate_order": ("sm.master_flat(FRAMES, so.centre_coeffs(), sm.OrderLayout([1, 2, 2, 3], [0] * 4,"
                               " [599] * 4), params=P)", "listed twice"),
    "master_nan_span": ("sm.master_flat(FRAMES, so.centre_coeffs(), sm.OrderLayout([1, 2, 3, 4], [0, np.nan, 0, 0],"
                        " [599] * 4), params=P)", "not finite"),
    "master_order_deg_vs_orders": ("sm.master_flat(FRAMES, so.centre_coeffs(), LAY, params={**P, 'order_deg': 4})",
                                   "below the number of orders"),
    "master_slice_length_2e9": ("sm.master_flat(FRAMES, so.centre_coeffs(), LAY,"
                                " params={**P, 'slice_length_for_edge_detection': 2000000000})",
                                "slice_length_for_edge_detection"),
    "master_half_window_10000": ("sm.master_flat(FRAMES, so.centre_coeffs(), LAY,"
                                 " params={**P, 'low_sensitivity_half_window': 10000})", "low_sensitivity_half_window"),
    "master_blur_1e300": ("sm.master_flat(FRAMES, so.centre_coeffs(), LAY, params={**P, 'gaussian_blur_sigma': 1e300})",
                          "gaussian_blur_sigma"),
    "master_window_1000": ("sm.master_flat(FRAMES, so.centre_coeffs(), LAY, params={**P, 'centre_order_window': 1000})",
                           "centre_order_window"),
    "master_bpm_shape": ("sm.master_flat(FRAMES, so.centre_coeffs(), LAY, bpm=np.zeros((10, 10)), params=P)",
                         "shape"),
    "detect_edges_slice_2e9": ("sm.detect_edges(IMG, so.centre_coeffs(), LAY, slice_length=2000000000)",
                               "slice_length"),
    "lowsens_half_10000": ("sm.flag_low_sensitivity(IMG, LO, UP, LAY, half_window=10000)", "half windows"),
    "background_nan_sigma": ("sm.fit_background(IMG, LO, UP, LAY, smooth_sigma=float('nan'))", "smooth_sigma"),
    "prepare_negative_window": ("_core.prepare_frame(IMG, 0, 10, 5, 0, 10, 1.0)", "window"),
    "stitch_shapes": ("sm.stitch(dict(flux=IMG, error=IMG, quality=np.zeros((5, 5))), dict(flux=IMG, error=IMG,"
                      " quality=np.zeros(IMG.shape)), LO, UP, 2, LAY)", "shape"),
    "combine_uvb_shapes": ("r = sm.master_flat(FRAMES, so.centre_coeffs(), LAY, params=P)\n"
                           "d = dict(r, stacked=r['stacked'][:300], error=r['error'][:300])\n"
                           "_core.combine_uvb(d, r, so.centre_coeffs(), *LAY.args(), dict(order_deg=2))",
                           "shape"),
    "combine_uvb_order_lists": ("r = sm.master_flat(FRAMES, so.centre_coeffs(), LAY, params=P)\n"
                                "lay = sm.OrderLayout([1, 2, 3], [0] * 3, [599] * 3)\n"
                                "_core.combine_uvb(r, r, so.centre_coeffs(), *lay.args(), dict(order_deg=2))",
                                "per-order lists differ"),
}


def _child(stmt: str, words: str, conn) -> None:
    """In a forked child: run the bad call, report what happened; a crash kills only the child."""
    from soxs_mflat.errors import InputError, ProcessingError
    ns = dict(_namespace())
    try:
        exec(stmt, ns)
        conn.send("accepted")
    except (ValueError, ProcessingError) as exc:   # InputError is a ValueError; _core raises ValueError
        ok = words in str(exc) and (not isinstance(exc, ProcessingError) or words == "no order edges")
        conn.send(("refused: " if ok else f"wrong error {type(exc).__name__}: ") + str(exc))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(f"wrong error {type(exc).__name__}: {exc}")
    conn.close()
    os._exit(0)


_NS: dict = {}


def _namespace() -> dict:
    """The prelude's inputs, built once in the parent and inherited by every forked child."""
    if not _NS:
        exec(PRELUDE, _NS)
    return _NS


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_call_is_refused_cleanly(name):
    import multiprocessing
    stmt, words = CASES[name]
    _namespace()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(stmt, words, child))
    proc.start()
    child.close()
    proc.join(60)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"{name}: still running after 60 s (killed)")
    assert proc.exitcode == 0, f"{name}: the child died with exit code {proc.exitcode} (a signal if negative)"
    msg = parent.recv() if parent.poll(1) else "no report"
    assert msg.startswith("refused: "), f"{name}: {msg}"


def test_huge_blur_sigma_is_bounded_and_exact():
    """gaussian_blur_sigma = 1e9 once asked for a 3e9-entry weight table (24 GB): the table now stops at
    the frame's length, which changes nothing (no two lines are further apart)."""
    code = PRELUDE + """
a = sm.fit_background(IMG, LO, UP, LAY, smooth_sigma=1e9)
b = sm.fit_background(IMG, LO, UP, LAY, smooth_sigma=1e5)
assert np.all(np.isfinite(a)) and np.allclose(a, b, rtol=1e-6, atol=1e-3), abs(a - b).max()
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


# ---------------------------------------------------------------- parameters, both front ends
import shutil  # noqa: E402
import tempfile  # noqa: E402

ROOT = HERE.parent
PLUGIN_DIR = Path(os.environ.get("SOXS_ESOREX_PLUGIN_DIR", ROOT / "build" / "esorex" / "recipes"))
HAVE_ESOREX = shutil.which("esorex") is not None and (PLUGIN_DIR / "soxs_mflat.so").exists()

# parameter, value: the rule and text both front ends give (ranges of data/parameters.yaml)
BAD_PARAMS = [
    ("order_deg", "0", "[parameter-range] parameter order_deg must be >= 1, got 0"),
    ("order_deg", "3.5", "[parameter-range] parameter order_deg must be an integer, got 3.5"),
    ("order_deg", "-3", "[parameter-range] parameter order_deg must be >= 1, got -3"),
    ("threads", "-2", "[parameter-range] parameter threads must be >= 0, got -2"),
    ("slice_length_for_edge_detection", "2000000000",
     "[parameter-range] parameter slice_length_for_edge_detection must be <= 1000, got 2e+09"),
    ("slice_width_for_edge_detection", "4", "[parameter-range] parameter slice_width_for_edge_detection must be odd, got 4"),
    ("gaussian_blur_sigma", "1e9", "[parameter-range] parameter gaussian_blur_sigma must be <= 10000, got 1e+09"),
    ("low_sensitivity_half_window", "10000",
     "[parameter-range] parameter low_sensitivity_half_window must be <= 25, got 10000"),
    ("centre_order_window", "1000", "[parameter-range] parameter centre_order_window must be <= 200, got 1000"),
    ("stacked_clipping_sigma", "0", "[parameter-range] parameter stacked_clipping_sigma must be > 0, got 0"),
    # derived limits (the core's check_recipe_params, once the order table is read): SOXS VIS has 4 orders
    ("order_deg", "4", "[parameter-limit] order_deg = 4 needs more orders than the 4 in the order table"),
    ("centre_order_window", "80",
     "[parameter-limit] centre_order_window = 80 must be below slice_length_for_edge_detection = 70"),
]


@pytest.mark.parametrize("name,value,text", BAD_PARAMS)
def test_cli_refuses_bad_parameter_before_reading_frames(inputs_vis, tmp_path, monkeypatch, name, value, text):
    from soxs_mflat import recipe
    from soxs_mflat.frames import VerificationError

    def no_frames(*a, **k):
        raise AssertionError("frames were read before the parameters were checked")
    monkeypatch.setattr(recipe, "detrend", no_frames)
    with pytest.raises(VerificationError) as exc:
        recipe.run_mflat(inputs_vis["sof"], tmp_path / "out", params=[f"{name}={value}"])
    assert text in str(exc.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not HAVE_ESOREX, reason="esorex or the plugin is missing (scripts/setup.sh builds it)")
@pytest.mark.parametrize("name,value,text", BAD_PARAMS)
def test_esorex_refuses_bad_parameter_with_the_cli_text(inputs_vis, tmp_path, name, value, text):
    r = subprocess.run(["esorex", f"--recipe-dir={PLUGIN_DIR}", f"--output-dir={tmp_path}", f"--log-dir={tmp_path}",
                        "soxs_mflat", f"--{name.replace('_', '-')}={value}", str(inputs_vis["sof"])],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    from soxs_mflat.rules import outcome
    out = " ".join((r.stdout + r.stderr).split())
    rule = text[1:text.index("]")]
    assert r.returncode == outcome(rule)["esorex_exit"] == 14 and text in out, (r.returncode, out[-2000:])
    assert "C++ core" not in out and not list(tmp_path.glob("*.fits"))   # refused before the frames were read


def test_settings_ranges_come_from_parameters_yaml():
    """Every numeric parameter declares a range; defaults lie inside it (for every instrument and arm)."""
    from soxs_mflat import settings
    for name, d in settings.definitions().items():
        if d["type"] == "bool":
            continue
        assert any(k in d for k in ("min", "above")) and "max" in d, name
        for inst, arm in [("soxs", "vis"), ("soxs", "nir"), ("xshooter", "uvb"), ("xshooter", "vis"),
                          ("xshooter", "nir")]:
            assert settings.range_error(name, settings.default(name, inst, arm)) is None, (name, inst, arm)


@pytest.mark.parametrize("ext", ["ERRS", "QUAL"])
def test_master_bias_extension_of_another_shape_is_refused_by_both(inputs_vis, tmp_path, ext):
    """The plugin read ny * nx values of the bias ERRS/QUAL whatever their shape (out of bounds, exit 0 with
    products); the CLI raised a broadcast ValueError. Both now refuse it by the rule "shape"."""
    import numpy as np
    from astropy.io import fits
    sof = Path(inputs_vis["sof"])
    lines = sof.read_text().splitlines()
    bias = next(line.split()[0] for line in lines if "MASTER_BIAS" in line)
    bad = tmp_path / "bad_bias.fits"
    with fits.open(bias) as hl:
        hl[ext].data = np.ascontiguousarray(hl[ext].data[:-7, :-3])
        hl.writeto(bad)
    bad_sof = tmp_path / "bad.sof"
    bad_sof.write_text("\n".join(f"{bad} {line.split()[1]}" if "MASTER_BIAS" in line else line for line in lines) + "\n")
    cli = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "run", str(bad_sof), "-o", str(tmp_path / "py")],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 2 and "[shape]" in cli.stderr and f"its {ext} extension" in cli.stderr, cli.stderr
    if HAVE_ESOREX:
        es = subprocess.run(["esorex", f"--recipe-dir={PLUGIN_DIR}", f"--output-dir={tmp_path}",
                             f"--log-dir={tmp_path}", "soxs_mflat", str(bad_sof)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
        out = " ".join((es.stdout + es.stderr).split())
        assert es.returncode != 0 and "[shape]" in out and f"its {ext} extension" in out, out[-2000:]
        assert not list(tmp_path.glob("*.fits")) or list(tmp_path.glob("*.fits")) == [bad]


def test_yaml_true_is_not_a_number():
    from soxs_mflat import settings
    from soxs_mflat.errors import InputError
    with pytest.raises(InputError, match="gaussian_blur_sigma .* must be float, got True"):
        settings.cast("gaussian_blur_sigma", True, "s.yaml")


def _table_variant(src: Path, dst: Path, kind: str) -> None:
    from astropy.io import fits
    with fits.open(src) as hl:
        hl[1].data[{"cent_05": "cent_05", "cent_35": "cent_35"}[kind]] = 1000.0 if kind == "cent_05" else 1e300
        hl.writeto(dst)


def _sof_with_table(w, tmp_path: Path, bad: Path) -> Path:
    lines = Path(w["sof"]).read_text().splitlines()
    bad_sof = tmp_path / "bad.sof"
    bad_sof.write_text("\n".join(f"{bad} {line.split()[1]}" if "ORDER_TAB" in line else line for line in lines) + "\n")
    return bad_sof


def _esorex_run(sof: Path, out: Path) -> tuple[int, str]:
    out.mkdir()
    es = subprocess.run(["esorex", f"--recipe-dir={PLUGIN_DIR}", f"--output-dir={out}", f"--log-dir={out}",
                         "soxs_mflat", str(sof)], capture_output=True, text=True, cwd=out, timeout=120)
    return es.returncode, " ".join((es.stdout + es.stderr).split())


@pytest.mark.parametrize("kind,words", [("cent_05", "edge"), ("cent_35", "not finite")])
def test_extreme_order_table_is_a_clean_error_in_both_front_ends(inputs_vis, tmp_path, kind, words):
    """Segfaults (cent_05 = 1000, cent_35 = 1e300) of both front ends in issue 14."""
    table = next(line.split()[0] for line in Path(inputs_vis["sof"]).read_text().splitlines() if "ORDER_TAB" in line)
    bad = tmp_path / "order_tab_bad.fits"
    _table_variant(Path(table), bad, kind)
    bad_sof = _sof_with_table(inputs_vis, tmp_path, bad)
    if kind == "cent_35" or not HAVE_ESOREX:   # the CLI's core calls are those of the forked cases above
        cli = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "run", str(bad_sof), "-o", str(tmp_path / "py")],
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode in (2, 3) and words in cli.stderr and "Traceback" not in cli.stderr, cli.stderr[-2000:]
    if HAVE_ESOREX:
        rc, text = _esorex_run(bad_sof, tmp_path / "es")
        assert rc > 0 and words in text and not list((tmp_path / "es").glob("*.fits")), text[-2000:]


def test_order_table_with_too_many_orders_is_refused_when_read(inputs_vis, tmp_path, monkeypatch):
    """A table listing 400 orders hung both front ends (issue 14), then was refused only by the core
    after every flat was detrended. The contract's limit (inputs.yaml order_table.max_orders) is now
    applied when the table is read, before any frame, by both front ends (rule order-table); a table
    of exactly max_orders orders passes that check."""
    import input_cases as ic
    from soxs_mflat import recipe
    from soxs_mflat.contract import section
    from soxs_mflat.frames import Frame, VerificationError
    from soxs_mflat.ordertable import read_centre_table
    from soxs_mflat.rules import outcome
    limit = section("inputs")["order_table"]["max_orders"]
    table = next(line.split()[0] for line in Path(inputs_vis["sof"]).read_text().splitlines() if "ORDER_TAB" in line)
    bad = Path(ic.table_copy(table, tmp_path / "order_tab_400.fits", "too-many-orders"))
    from astropy.io import fits
    assert len(fits.getdata(bad, 2)) == limit + 1
    with fits.open(bad) as hl:   # the limit itself is accepted when the table is read
        hl[2] = fits.BinTableHDU(hl[2].data[:limit], header=hl[2].header)
        hl.writeto(tmp_path / "order_tab_limit.fits")
    assert len(read_centre_table(Frame(tmp_path / "order_tab_limit.fits", fits.Header(), "ORDER_TAB")).layout_orders) \
        == limit
    bad_sof = _sof_with_table(inputs_vis, tmp_path, bad)

    def no_frames(*a, **k):
        raise AssertionError("frames were detrended before the order table was checked")
    monkeypatch.setattr(recipe, "detrend", no_frames)
    with pytest.raises(VerificationError) as exc:
        recipe.run_mflat(bad_sof, tmp_path / "py")
    assert exc.value.rule == "order-table" and bad.name in str(exc.value), exc.value
    assert f"lists {limit + 1} orders; at most {limit}" in str(exc.value)
    assert not (tmp_path / "py").exists()
    if HAVE_ESOREX:
        rc, text = _esorex_run(bad_sof, tmp_path / "es")
        assert rc == outcome("order-table")["esorex_exit"], text[-2000:]
        assert f"[order-table] {bad}" in text and f"lists {limit + 1} orders; at most {limit}" in text, text[-2000:]
        assert "C++ core" not in text and not list((tmp_path / "es").glob("*.fits"))   # before any frame was read
