import subprocess
import sys

import pytest

from soxs_mflat import settings
from soxs_mflat.errors import InputError


def test_defaults_per_instrument_and_arm():
    assert settings.resolve("soxs", "vis")["order_deg"] == 3
    assert settings.resolve("soxs", "nir")["order_deg"] == 6
    assert settings.resolve("xshooter", "uvb")["slice_length_for_edge_detection"] == 90
    assert settings.resolve("soxs", "nir")["poly_fitting_residual_clipping_sigma"] == 3.0


def test_settings_file_per_arm_and_overrides(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("soxs-mflat:\n  order-deg: 2\n  subtract_background: false\n  nir:\n    order_deg: 4\n")
    assert settings.resolve("soxs", "vis", f)["order_deg"] == 2
    assert settings.resolve("soxs", "nir", f)["order_deg"] == 4
    p = settings.resolve("soxs", "nir", f, ["order_deg=5", "subtract_background=true"])
    assert p["order_deg"] == 5 and p["subtract_background"] is True


@pytest.mark.parametrize("override,match", [
    (["nonsense=1"], "unknown parameter 'nonsense'"),
    (["order_deg=2.5"], r"\[parameter-range\] parameter order_deg must be an integer, got 2.5"),
    (["subtract_background=maybe"], "must be true or false"),
    (["order_deg"], "NAME=VALUE"),
    (["min_percentage_threshold_for_edge_detection=60"], "min_percentage"),
])
def test_bad_settings(override, match):
    with pytest.raises(InputError, match=match):
        settings.resolve("soxs", "vis", overrides=override)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "soxs_mflat.cli", *args], capture_output=True, text=True)


def test_cli_run_exit_codes_and_output(tmp_path):
    sim = _cli("simulate", "--instrument", "soxs", "--arm", "vis", "--out", str(tmp_path / "set"), "--nflats", "3")
    assert sim.returncode == 0, sim.stderr
    sof = next((tmp_path / "set").glob("*.sof"))
    ok = _cli("run", str(sof), "-o", str(tmp_path / "out"))
    assert ok.returncode == 0, ok.stderr
    assert "X RES SD" in ok.stdout and "finished in" in ok.stdout and "master_flat_vis.fits" in ok.stdout
    assert "\r" not in ok.stderr            # no progress display when not on a terminal
    again = _cli("run", str(sof), "-o", str(tmp_path / "out"))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    bad = _cli("run", str(sof), "-o", str(tmp_path / "o2"), "--param", "order_deg=x")
    assert bad.returncode == 2 and "order_deg" in bad.stderr
    quiet = _cli("run", str(sof), "-o", str(tmp_path / "o3"), "-q")
    assert quiet.returncode == 0 and quiet.stdout == ""
    fail = _cli("run", str(sof), "-o", str(tmp_path / "o4"), "--param", "min_percentage_threshold_for_edge_detection=1",
                "--param", "max_percentage_threshold_for_edge_detection=1", "--param", "edge_min_snr=1e9")
    assert fail.returncode == 3 and "processing failed" in fail.stderr
    assert not (tmp_path / "o4").exists()


# ---- settings files that are not YAML text, soxspipe's shared block alone, values named with their file

from pathlib import Path  # noqa: E402


@pytest.mark.parametrize("data, match", [
    (b"\xff\xfe\x00garbage", r"cannot read settings: not a UTF-8 text \(YAML\) file \(byte 0 is b'\\xff'"),
    (b"soxs-mflat:\n  order_deg: 3\n  \xe9t\xe9: 1\n", r"not a UTF-8 text \(YAML\) file \(byte 29 is b'\\xe9'"),
    (b"[" * 20000, "cannot read settings: "),
])
def test_settings_file_that_is_not_yaml_text(tmp_path, data, match):
    """Was UnicodeDecodeError (exit 1, a traceback line) for binary bytes."""
    f = tmp_path / "s.yaml"
    f.write_bytes(data)
    for call in (lambda: settings.resolve("soxs", "vis", f), lambda: settings.qc_ranges("soxs", "vis", f),
                 lambda: settings.check_file(f)):
        with pytest.raises(InputError, match=match) as err:
            call()
        assert str(err.value).startswith(f"{f}: ")


def test_cli_run_bad_settings_file_is_exit_2_before_any_work(inputs_vis, tmp_path):
    """Binary bytes and infinite QC bounds: exit 2 naming the file, no output directory (the infinite
    bound was accepted and failed after processing, writing qc.json: 'Out of range float values are not
    JSON compliant', exit 1)."""
    for i, data in enumerate((b"\xff\xfe\x00\x01", b"soxs-mflat:\n  vis:\n    qc-acceptable-ranges:\n      x-res-sd: [0, .inf]\n")):
        f = tmp_path / f"s{i}.yaml"
        f.write_bytes(data)
        r = _cli("run", str(inputs_vis["sof"]), "-o", str(tmp_path / f"out{i}"), "-s", str(f))
        assert r.returncode == 2, r.stderr
        assert f"input error: {f}" in r.stderr and "internal error" not in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / f"out{i}").exists()


def test_background_subtraction_block_alone(tmp_path, caplog):
    """soxspipe's shared background-subtraction block is read without a soxs-mflat block (was: 'unknown
    parameter background_subtraction'); other soxspipe blocks are ignored with the warning."""
    import logging
    f = tmp_path / "s.yaml"
    f.write_text("background-subtraction:\n  bspline-deg: 1\n  gaussian-blur-sigma: 40\nsoxs-mbias:\n  a: 1\n")
    with caplog.at_level(logging.WARNING, logger="soxs_mflat"):
        p = settings.resolve("soxs", "vis", f)
    assert p["bspline_deg"] == 1 and p["gaussian_blur_sigma"] == 40 and p["order_deg"] == 3
    assert [r.getMessage() for r in caplog.records] == [f"{f}: ignoring 1 settings that are not soxs-mflat's (soxs-mbias)"]
    settings.check_file(f)
    # its values are checked like any other; the block holds soxspipe's two names only
    for text, match in (("background-subtraction:\n  bspline-deg: x\n", r"parameter bspline_deg \(.*s\.yaml\) must be int"),
                        ("background-subtraction:\n  bspline-deg: 9\n",
                         r"\[parameter-range\] parameter bspline_deg must be <= 5, got 9 \(.*s\.yaml[^)]*\)$"),
                        ("background-subtraction:\n  order-deg: 2\n",
                         r"s\.yaml: unknown setting 'order-deg' in its background-subtraction block"),
                        ("background-subtraction: 3\n", "background-subtraction must be a mapping"),
                        # soxs-mflat's own names at the top level of a soxspipe file: refused, not ignored
                        ("background-subtraction:\n  bspline-deg: 1\norder-deg: 2\n",
                         r"'order-deg' is at the top level of a soxspipe settings file"),
                        ("soxs-mflat:\n  order-deg: 2\nvis:\n  order-deg: 4\n", r"'vis' is at the top level")):
        f.write_text(text)
        with pytest.raises(InputError, match=match):
            settings.resolve("soxs", "vis", f)
        with pytest.raises(InputError, match=match):
            settings.check_file(f)


SOXSPIPE = Path("/work/sxp-venv/lib/python3.11/site-packages/soxspipe")


@pytest.mark.parametrize("name", ["soxs_default_settings.yaml", "xsh_default_settings.yaml"])
def test_soxspipe_own_default_settings_files(name):
    """soxspipe 0.17.4's shipped files, as they are (where it is installed)."""
    f = SOXSPIPE / name
    if not f.exists():
        pytest.skip("soxspipe not installed here")
    settings.check_file(f)
    inst = "soxs" if name.startswith("soxs") else "xshooter"
    p = settings.resolve(inst, "nir", f)
    assert p["bspline_deg"] == 2 and p["gaussian_blur_sigma"] == 65 and p["order_deg"] == 6
    # soxspipe's own setting differs here (see docs/recipe.md): its file's value is the one used
    assert p["stacked_clipping_sigma"] == (15 if inst == "soxs" else 5)


def test_range_error_of_a_settings_value_names_the_file(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("soxs-mflat:\n  nir:\n    order_deg: 99\n")
    settings.resolve("soxs", "vis", f)          # the VIS run does not use the NIR value ...
    with pytest.raises(InputError, match=rf"\[parameter-range\] parameter order_deg must be <= 10, got 99 \({f}\)$"):
        settings.resolve("soxs", "nir", f)
    with pytest.raises(InputError, match=rf"must be <= 10, got 99 \({f}, SOXS NIR\)$"):
        settings.check_file(f)                  # ... batch refuses it for every set
    # a --param value replacing the file's is named as the plugin names it (no file)
    with pytest.raises(InputError, match=r"must be <= 10, got 11$"):
        settings.resolve("soxs", "nir", f, ["order_deg=11"])


def test_a_parameter_limit_names_where_the_value_came_from(inputs_vis, tmp_path):
    """`-s xsh_default_settings.yaml` on a SOXS VIS set: '[parameter-limit] order_deg = 6 needs more orders...'
    named the order table but not the settings file that set order_deg (a --param value is named as esorex
    names its command-line parameters: not at all)."""
    from soxs_mflat.frames import VerificationError
    from soxs_mflat.recipe import run_mflat
    f = tmp_path / "s.yaml"
    f.write_text("soxs-mflat:\n  order_deg: 6\n")
    with pytest.raises(VerificationError, match=f"order_deg = 6 needs more orders.*; order_deg from the settings file {f}$"):
        run_mflat(inputs_vis["sof"], tmp_path / "a", settings_file=f)
    with pytest.raises(VerificationError, match="slice_length_for_edge_detection = 70 \\(order table [^)]*\\)$"):
        run_mflat(inputs_vis["sof"], tmp_path / "b", params=["centre_order_window=80"])   # as the plugin words it
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
