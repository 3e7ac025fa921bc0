"""The Python API refuses what it cannot use, as run_mflat does, instead of guessing (a second tester's
report): recipe parameters of master_flat checked by name, type and range; detect_edges' keywords by
name and type; OrderLayout's fields typed; every kernel's image and polynomial within the core's limits;
errors worded once ("f: ...", not "f: f: ...")."""
from __future__ import annotations

import numpy as np
import pytest

import soxs_mflat as sm
import synth_orders as so
from soxs_mflat.errors import InputError

LAY = sm.OrderLayout([1, 2, 3, 4], [0] * 4, [599] * 4)


@pytest.fixture(scope="module")
def frames():
    img = so.frame(level=20000.0)
    return [img * s for s in (1.0, 1.01, 0.99)]


@pytest.mark.parametrize("params, match", [
    ({"subtract_background": "maybe"}, "must be true or false"),
    ({"order_degree": 5}, "unknown parameter 'order_degree'"),
    ({"order_deg": True}, "must be int"),
    ({"order_deg": None}, "must be int"),
    ({"stacked_clipping_sigma": 1000}, "stacked_clipping_sigma must be <="),
    ({"slice_width_for_edge_detection": 4}, "must be odd"),
])
def test_master_flat_checks_its_parameters(frames, params, match):
    with pytest.raises(InputError, match=match):
        sm.master_flat(frames, so.centre_coeffs(), LAY, params=params)


def test_master_flat_reads_false_as_run_mflat_does(frames):
    """"false" subtracted the background all the same (any non-empty string was true in the core's map)."""
    r = sm.master_flat(frames, so.centre_coeffs(), LAY, params={"subtract_background": "false", "order_deg": 2})
    assert r["background"] is None


@pytest.mark.parametrize("kw, match", [({"slice_lenght": 50}, "unknown parameter 'slice_lenght'"),
                                       ({"slice_length": "50"}, "slice_length must be a whole number"),
                                       ({"slice_length": 50.5}, "must be a whole number"),
                                       ({"slice_width": 4}, "must be odd")])
def test_detect_edges_checks_its_keywords(frames, kw, match):
    with pytest.raises(InputError, match=match):
        sm.detect_edges(frames[0], so.centre_coeffs(), LAY, **kw)


@pytest.mark.parametrize("args, match", [(("1234", [0] * 4, [9] * 4), "orders must be whole numbers"),
                                         (([1.5, 2.5], [0] * 2, [9] * 2), "orders must be whole numbers"),
                                         (([1, 2], [0], [9] * 2), "2 orders but 1 b_min"),
                                         (([1, 2], [0] * 2, [9] * 2, "False"), "a_is_x must be True or False"),
                                         (([1, 2], [0] * 2, [9] * 2, True, 0), "bin_a must be a whole number >= 1")])
def test_order_layout_is_typed(args, match):
    with pytest.raises(InputError, match=match):
        sm.OrderLayout(*args)


@pytest.mark.parametrize("shape", [(10, 70000), (70000, 10), (0, 0)])
def test_every_kernel_takes_the_cores_image_limits(shape):
    with pytest.raises(InputError, match="image size .* is empty or above the core's limit"):
        sm.clip_and_stack([np.zeros(shape, np.float32)] * 2)


@pytest.mark.parametrize("coeffs, match", [(np.zeros((40, 40)), r"degrees must be in \[0, 15\]"),
                                           (np.array([[0.0, np.nan]]), "is not finite")])
def test_poly_eval_takes_the_cores_polynomial_limits(coeffs, match):
    with pytest.raises(InputError, match=match):
        sm.poly_eval(coeffs, [1.0], [2.0])


@pytest.mark.parametrize("deg", [0, 9])
def test_fit_background_spline_degree(frames, deg):
    lo, up = so.edge_coeffs()
    with pytest.raises(InputError, match=r"spline_deg must be in \[1, 5\]"):
        sm.fit_background(frames[0], lo, up, LAY, spline_deg=deg)


def test_errors_name_the_function_once():
    with pytest.raises(InputError) as exc:
        sm.clip_and_stack([np.ones((4, 4), np.float32)] * 3, sigma_lower=-1)
    assert str(exc.value).startswith("clip_and_stack: ") and "clip_and_stack: clip_and_stack" not in str(exc.value)


def test_small_shapes_and_windows_are_whole(frames):
    lo, up = so.edge_coeffs()
    with pytest.raises(InputError, match=r"shape must be \(ny, nx\)"):
        sm.in_order_mask((3, 300, 420), lo, up, LAY)
    with pytest.raises(InputError, match="window must be a whole number"):
        sm.inner_order_stats(frames[0], so.centre_coeffs(), LAY, window=10.7)


def test_run_mflat_takes_flags_as_bools_and_one_param_string(inputs_vis, tmp_path):
    from soxs_mflat.recipe import run_mflat
    for kw in ({"overwrite": "no"}, {"plots": "false"}):
        with pytest.raises(InputError, match="must be True or False"):
            run_mflat(inputs_vis["sof"], tmp_path / "out", **kw)
    with pytest.raises(InputError, match="parameter order_deg must be <= 10"):   # was: "--param expects NAME=VALUE, got 'o'"
        run_mflat(inputs_vis["sof"], tmp_path / "out", params="order_deg=99")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kw, match", [({"scales": [np.nan, 1, 1]}, "scales must be finite and > 0"),
                                       ({"scales": [0, 0, 0]}, "scales must be finite and > 0"),
                                       ({"errors": [-np.ones((4, 4), np.float32)] * 3}, "finite and >= 0"),
                                       ({"errors": [np.full((4, 4), np.nan, np.float32)] * 3}, "finite and >= 0"),
                                       ({"threads": -1}, "threads must be a whole number in 0..1024"),
                                       ({"threads": 10 ** 6}, "threads must be")])
def test_clip_and_stack_refuses_what_it_would_silently_misuse(kw, match):
    """A NaN scale dropped its frame, zero scales gave a master of zeros, NaN errors an all-NaN error map."""
    with pytest.raises(InputError, match=match):
        sm.clip_and_stack([np.ones((4, 4), np.float32)] * 3, **kw)


def test_complex_frames_are_refused():
    with pytest.raises(InputError, match="must be real numbers"):
        sm.clip_and_stack([np.ones((4, 4), np.complex64)] * 3)


def test_stitch_checks_its_masters_and_crossover():
    img = np.ones((60, 42), np.float32)
    m = {"flux": img, "error": img, "quality": np.zeros(img.shape, np.uint8)}
    lay = sm.OrderLayout([1, 2], [0] * 2, [59] * 2)
    lo = up = np.zeros((2, 2))
    with pytest.raises(InputError, match="crossover 99 is not one of the layout's orders"):
        sm.stitch(m, m, lo, up, 99, lay)
    with pytest.raises(InputError, match="lacks quality"):
        sm.stitch({"flux": img, "error": img}, m, lo, up, 2, lay)
    with pytest.raises(InputError, match="must be bits 0..255"):
        sm.stitch(dict(m, quality=np.full(img.shape, 300)), m, lo, up, 2, lay)


def test_run_mflat_names_its_params_argument_not_the_command_line_option(inputs_vis, tmp_path):
    """params={...} of the API was reported as '(--param)', an option the caller never gave."""
    from soxs_mflat.recipe import run_mflat
    with pytest.raises(InputError, match=r"parameter order_deg \(params\) must be int") as exc:
        run_mflat(inputs_vis["sof"], tmp_path / "out", params={"order_deg": "three"})
    assert "--param" not in str(exc.value)
    with pytest.raises(InputError, match=r"parameter order_deg \(--param\) must be int"):
        run_mflat(inputs_vis["sof"], tmp_path / "out", params=["order_deg=three"])
