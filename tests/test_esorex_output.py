"""The esorex plugin's output safety: the lock of the Python front end (data/contract/products.yaml) on
the working directory and on the directory the products go to (--output-dir, ESOREX_OUTPUT_DIR or
esorex's configuration file), held until esorex has moved the products; and the plugin's own guard on
the binning it divides by."""
from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import pytest
from astropy.io import fits

from soxs_mflat.contract import section
from soxs_mflat.rules import outcome
from test_esorex import PLUGIN_DIR, needs_esorex

OUTPUT = section("products")["output"]
LOCK, STAGING = OUTPUT["lock_file"], OUTPUT["staging_prefix"]


def _esorex(sof: Path, work: Path, out: Path, how: str = "option") -> tuple[int, str]:
    work.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    env, opts = dict(os.environ), []
    if how == "option":
        opts = [f"--output-dir={out}"]
    elif how == "env":
        env["ESOREX_OUTPUT_DIR"] = str(out)
    else:   # esorex's configuration file
        cfg = work / "esorex.rc"
        cfg.write_text(f"esorex.caller.output-dir={out}\n")
        opts = [f"--config={cfg}"]
    r = subprocess.run(["esorex", f"--recipe-dir={PLUGIN_DIR}", *opts, f"--log-dir={work}", "soxs_mflat", str(sof)],
                       capture_output=True, text=True, cwd=work, env=env, timeout=300)
    return r.returncode, " ".join((r.stdout + r.stderr).split())


def _leftovers(*dirs: Path) -> list[str]:
    return [p.name for d in dirs for p in d.iterdir() if p.name == LOCK or p.name.startswith(STAGING)]


class _Held:
    """The lock as another run (the CLI, or a second esorex) holds it."""

    def __init__(self, d: Path):
        self.path = d / LOCK

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def __exit__(self, *exc):
        os.unlink(self.path)
        os.close(self.fd)


@needs_esorex
@pytest.mark.parametrize("how", ["option", "env", "config"])
def test_a_locked_output_directory_stops_esorex_before_any_work(inputs_vis, tmp_path, how):
    """The plugin locked only its working directory: a CLI run (or an esorex run from elsewhere) writing into
    the same --output-dir was not seen, and esorex moved its products over the other run's."""
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    with _Held(out):
        rc, text = _esorex(inputs_vis["sof"], work, out, how)
        assert rc == 7, text[-2000:]   # CPL_ERROR_FILE_ALREADY_OPEN
        assert f"another soxs_mflat run is writing into the output directory {out}" in text, text[-2000:]
        assert "C++ core" not in text
        assert sorted(p.name for p in out.iterdir()) == [LOCK] and not list(work.glob("*.fits"))
    assert not _leftovers(work, out)   # the working directory's lock was released again


@needs_esorex
def test_a_locked_working_directory_stops_esorex(inputs_vis, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    with _Held(work):
        rc, text = _esorex(inputs_vis["sof"], work, out)
        assert rc == 7 and f"writing into the working directory ." in text, text[-2000:]
    assert not list(out.iterdir()) and not _leftovers(work, out)


@needs_esorex
def test_a_complete_run_leaves_products_and_no_lock(inputs_vis, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    rc, text = _esorex(inputs_vis["sof"], work, out)
    assert rc == 0, text[-2000:]
    assert {p.name for p in out.glob("*.fits")} == {"master_flat_vis.fits", "order_tab_vis.fits",
                                                    "mflat_bkground_vis.fits"}
    assert not _leftovers(work, out) and not list(work.glob("*.fits"))


def _all_frames_with(sof: Path, folder: Path, **cards) -> Path:
    """A SOF whose detector frames (raw flats, bias, bad-pixel map) carry the header cards given."""
    folder.mkdir()
    rows = []
    for line in sof.read_text().splitlines():
        path, tag = line.split()[:2]
        if not tag.startswith("ORDER_TAB"):
            dst = folder / Path(path).name
            with fits.open(path) as hl:
                for k, v in cards.items():
                    hl[0].header[k] = v
                hl.writeto(dst)
            path = str(dst)
        rows.append(f"{path} {tag}")
    out = folder / "bad.sof"
    out.write_text("\n".join(rows) + "\n")
    return out


@needs_esorex
@pytest.mark.parametrize("key,value", [("HIERARCH ESO DET BINX", 0), ("HIERARCH ESO DET BINY", -2),
                                       ("HIERARCH ESO DET BINX", 2.5)])
def test_binning_zero_or_negative_is_a_rule_error_not_sigfpe(inputs_vis, tmp_path, key, value):
    """BINX = 0 killed esorex with SIGFPE (issue 14). Every frame carries the value, so that no
    mixed-binning rule fires first; binning() has its own guard besides the header conversion."""
    sof = _all_frames_with(Path(inputs_vis["sof"]), tmp_path / "in", **{key: value})
    rc, text = _esorex(sof, tmp_path / "work", tmp_path / "out")
    assert rc == outcome("bad-keyword")["esorex_exit"], text[-2000:]   # a CPL error, not a signal (rc < 0)
    assert f"[bad-keyword]" in text and key.replace("HIERARCH ", "") in text and "C++ core" not in text, text[-2000:]
