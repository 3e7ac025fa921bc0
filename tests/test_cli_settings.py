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
