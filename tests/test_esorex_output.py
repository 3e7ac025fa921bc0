"""The esorex plugin's output safety: the lock of the Python front end (data/contract/products.yaml) on
the working directory and on the directory the products go to (--output-dir, ESOREX_OUTPUT_DIR or
esorex's configuration file), held until esorex has moved the products; and the plugin's own guard on
the binning it divides by."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
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


def _md5(p: Path) -> str:
    import hashlib
    return hashlib.md5(p.read_bytes()).hexdigest()


@needs_esorex
@pytest.mark.parametrize("where", ["output-dir", "working-dir"])
def test_an_input_at_a_products_path_is_refused_before_any_work(inputs_vis, tmp_path, where):
    """esorex with --output-dir holding an input named like a product (an order table copied as
    OUT/order_tab_vis.fits) overwrote the input; so did a raw frame named master_flat_vis.fits in the working
    directory (the plugin renames its products to their final names there). Rule product-is-input."""
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    rows = [ln.split() for ln in Path(inputs_vis["sof"]).read_text().splitlines() if ln.strip()]
    if where == "output-dir":
        old = next(p for p, t in rows if t.startswith("ORDER_TAB"))
        victim, product = out / "order_tab_vis.fits", f"{out}/order_tab_vis.fits"
    else:
        old = next(p for p, t in rows if t.startswith("LAMP,FLAT"))
        victim, product = work / "master_flat_vis.fits", "master_flat_vis.fits"
    victim.write_bytes(Path(old).read_bytes())
    before = _md5(victim)
    sof = tmp_path / "set.sof"
    sof.write_text("".join(f"{victim if p == old else p} {t}\n" for p, t in rows))
    rc, text = _esorex(sof, work, out)
    assert rc == outcome("product-is-input")["esorex_exit"], text[-2000:]
    assert f"[product-is-input] {victim}: is an input of this run and its product {product} would overwrite it " \
        "(choose another output directory)" in text, text[-2000:]
    assert "C++ core" not in text and _md5(victim) == before
    assert sorted(p.name for p in out.iterdir()) == (["order_tab_vis.fits"] if where == "output-dir" else [])
    assert not _leftovers(work, out)
    if where == "output-dir":   # the CLI refuses the same input with the same rule
        cli = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "run", str(sof), "-o", str(out), "-q"],
                             capture_output=True, text=True, cwd=work)
        assert cli.returncode == outcome("product-is-input")["cli_exit"], cli.stderr
        assert f"[product-is-input] {victim}: is an input of this run" in cli.stderr, cli.stderr
        assert _md5(victim) == before


@needs_esorex
def test_an_interrupted_run_leaves_nothing(inputs_vis, tmp_path):
    """SIGINT 0.15-0.2 s into a run left .soxs-mflat-staging-* (7 MB) and the lock files, once final-named
    products in the working directory. Interrupted at any moment, a run leaves no staging directory, no lock
    and no product, or it completed (every product in the output directory)."""
    import signal
    import time
    outcomes = []
    for k, delay in enumerate([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7]):
        work, out = tmp_path / f"w{k}", tmp_path / f"o{k}"
        work.mkdir()
        out.mkdir()
        p = subprocess.Popen(["esorex", f"--recipe-dir={PLUGIN_DIR}", f"--output-dir={out}", "soxs_mflat",
                              str(inputs_vis["sof"])], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=120)
        products = sorted(x.name for x in out.iterdir())
        assert not _leftovers(work, out), (delay, rc, os.listdir(work))
        assert not list(work.glob("*.fits")) and not (work / "qc.json").exists(), (delay, os.listdir(work))
        assert products in ([], ["master_flat_vis.fits", "mflat_bkground_vis.fits", "order_tab_vis.fits", "qc.json"]), \
            (delay, rc, products)
        if rc != 0:   # ended by the signal, as without the plugin's handler
            assert rc == -signal.SIGINT, (delay, rc)
        outcomes.append(rc)
    assert -signal.SIGINT in outcomes, outcomes   # some runs were interrupted (else the test tested nothing)


@needs_esorex
def test_staging_directories_of_a_killed_run_are_removed(inputs_vis, tmp_path):
    """A run killed with -9 leaves its staging directory; the next run (holding the directory's lock, so no live
    run owns one) removes it, in the working and in the output directory."""
    work, out = tmp_path / "work", tmp_path / "out"
    for d in (work, out):
        (d / f"{STAGING}dead01").mkdir(parents=True)
        (d / f"{STAGING}dead01" / "master_flat_vis.fits").write_bytes(b"\0" * 2880)
    rc, text = _esorex(inputs_vis["sof"], work, out)
    assert rc == 0, text[-2000:]
    assert not _leftovers(work, out), (os.listdir(work), os.listdir(out))


@needs_esorex
def test_an_error_left_by_esorex_is_not_blamed_on_an_input(inputs_vis, tmp_path):
    """esorex that cannot create its .logfile (a read-only working directory; here a directory in its way)
    leaves a CPL error set: the plugin reported '[unreadable-fits] ...QTH_01.fits: not a readable FITS file (File
    cannot be created: .logfile)'. The run is unaffected by it."""
    work, out = tmp_path / "work", tmp_path / "out"
    (work / ".logfile").mkdir(parents=True)
    rc, text = _esorex(inputs_vis["sof"], work, out)
    assert "unable to establish the message log" in text   # the situation of the report
    assert rc == 0 and "unreadable-fits" not in text, text[-2000:]
    assert {p.name for p in out.glob("*.fits")} == {"master_flat_vis.fits", "order_tab_vis.fits",
                                                    "mflat_bkground_vis.fits"}
