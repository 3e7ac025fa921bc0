"""Products of the Python front end appear all at once or not at all: output problems are found before
any processing (exit 2, nothing written), a failure while writing or a signal leaves nothing behind
(exit 3 / 130 / 143, no traceback, no worker left running), a second run into a locked directory is
refused (exit 5), and an unexpected exception is one line with exit 1, never a traceback."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from soxs_mflat import output, recipe
from soxs_mflat.cli import EXIT_BUSY, main
from soxs_mflat.simulate.run import simulate_set

CLI = [sys.executable, "-m", "soxs_mflat.cli"]


@pytest.fixture(scope="module")
def vis(module_tmp):
    return simulate_set("soxs", "vis", module_tmp("vset"), nflats=2, binning="2x2", seed=21)


@pytest.fixture(scope="module")
def uvb(module_tmp):
    return simulate_set("xshooter", "uvb", module_tmp("uset"), nflats=1, binning="2x2", seed=22)


@pytest.fixture
def no_processing(monkeypatch):
    """Fails the test if the recipe gets as far as processing a lamp."""
    def refuse(*a, **k):
        raise AssertionError("processing started before the output check")
    monkeypatch.setattr(recipe, "process_lamp", refuse)


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def run_cli(sof, out, capsys, *extra):
    rc = main(["run", str(sof), "-o", str(out), "-q", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_outdir_is_a_file(vis, tmp_path, capsys, no_processing):
    f = tmp_path / "out"
    f.write_bytes(b"keep me")
    rc, err = run_cli(vis["sof"], f, capsys)
    assert rc == 2 and str(f) in err and "not a directory" in err
    assert f.read_bytes() == b"keep me" and listing(tmp_path) == ["out"]


def test_outdir_below_a_file(vis, tmp_path, capsys, no_processing):
    (tmp_path / "f").write_text("x")
    rc, err = run_cli(vis["sof"], tmp_path / "f" / "out", capsys)
    assert rc == 2 and "is a file" in err and listing(tmp_path) == ["f"]


def test_outdir_not_writable(vis, capsys, no_processing):
    # /sys refuses new files even to root (a read-only filesystem behaves the same through os.open)
    rc, err = run_cli(vis["sof"], "/sys", capsys)
    assert rc == 2 and "/sys" in err and "not writable" in err


def test_directory_in_a_products_place(vis, tmp_path, capsys, no_processing):
    out = tmp_path / "out"
    (out / "order_tab_vis.fits").mkdir(parents=True)
    for extra in ((), ("--overwrite",)):
        rc, err = run_cli(vis["sof"], out, capsys, *extra)
        assert rc == 2 and "order_tab_vis.fits" in err and "directory" in err
        assert listing(out) == ["order_tab_vis.fits"]


def test_not_enough_space(vis, tmp_path, capsys, monkeypatch, no_processing):
    monkeypatch.setattr(output.shutil, "disk_usage", lambda p: SimpleNamespace(free=10_000))
    out = tmp_path / "new" / "out"
    rc, err = run_cli(vis["sof"], out, capsys)
    assert rc == 2 and "not enough free space" in err and "MB free" in err
    assert listing(tmp_path) == []          # the directories it created are gone again


def test_write_failure_leaves_nothing(vis, tmp_path, capsys, monkeypatch):
    real = recipe.write_fits

    def full_disk(hl, path, overwrite):
        if Path(path).name.startswith("order_tab"):
            raise OSError(28, "No space left on device")
        return real(hl, path, overwrite)
    monkeypatch.setattr(recipe, "write_fits", full_disk)
    out = tmp_path / "out"
    rc, err = run_cli(vis["sof"], out, capsys)
    assert rc == 3 and "order_tab_vis.fits" in err and "No space left" in err
    assert listing(tmp_path) == []


def test_locked_directory_then_a_complete_set(vis, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / output.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        rc, err = run_cli(vis["sof"], out, capsys)
        assert rc == EXIT_BUSY == 5 and "another soxs-mflat run (pid 4242)" in err
        assert listing(out) == [output.LOCK_NAME]
    finally:
        os.close(fd)
    os.unlink(out / output.LOCK_NAME)
    assert run_cli(vis["sof"], out, capsys)[0] == 0
    files = list(out.iterdir())
    assert len(files) == 6 and not [p.name for p in files if p.name.startswith(".")]   # no lock, no staging
    from soxs_mflat.frames import load_frames
    f = next(fr for fr in load_frames(vis["sof"]) if fr.is_raw_flat)
    need, have = output.product_bytes(files, *recipe.frame_shape(f)), sum(p.stat().st_size for p in files)
    assert have <= need <= 10 * have + 30e6
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in files} == {0o666 & ~umask}   # not mkstemp's 0600


def test_two_runs_one_directory(vis, tmp_path):
    """Started together: one writes a complete set, the other is refused with exit 5 (or, started
    after the first finished, is refused because the products exist): never a mixed set."""
    out = tmp_path / "out"
    procs = [subprocess.Popen(CLI + ["run", str(vis["sof"]), "-o", str(out), "-q"], stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = sorted((p.wait(120), p.communicate()[1]) for p in procs)
    assert results[0][0] == 0 and results[1][0] in (2, EXIT_BUSY), results
    assert "Traceback" not in results[1][1]
    assert not [n for n in listing(out) if n.startswith(".")]
    from astropy.io import fits
    dates = {fits.getval(p, "DATE") for p in out.glob("*.fits")}
    assert len(dates) == 1


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(d.name))
    return kids


def _interrupt_when_staged(sof, out: Path, sig, extra=()) -> tuple[int, str, list[int]]:
    """Start a run and send ``sig`` once a QC PDF is staged (FITS products are written meanwhile)."""
    p = subprocess.Popen(CLI + ["run", str(sof), "-o", str(out), "-q", *map(str, extra)], stderr=subprocess.PIPE,
                         text=True)
    kids: list[int] = []
    t0 = time.monotonic()
    while p.poll() is None and time.monotonic() - t0 < 120:
        if out.exists() and [f for d in out.glob(output.STAGING_PREFIX + "*") for f in d.glob("*.pdf")]:
            kids = _children(p.pid)
            p.send_signal(sig)
            break
        time.sleep(0.003)
    rc, err = p.wait(60), p.communicate()[1]
    assert kids, f"the run ended (rc {rc}) before any product was staged: {err}"
    time.sleep(0.2)
    alive = [k for k in kids if Path(f"/proc/{k}").exists()
             and Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, "QC-plot workers outlived the run"
    return rc, err, kids


def test_sigterm(vis, tmp_path):
    log = tmp_path.parent / f"{tmp_path.name}.log"   # the --log FILE asked for: outside the listed folder
    rc, err, _ = _interrupt_when_staged(vis["sof"], tmp_path / "out", signal.SIGTERM, ["--log", log])
    assert rc == 143 and "Traceback" not in err and "interrupted by SIGTERM; nothing was written" in err
    assert listing(tmp_path) == []          # not even the output directory it created
    # the log ended in "ERROR " and an empty message, the text on a line of its own, and had no exit code
    last = log.read_text().splitlines()[-2:]
    assert last[0].endswith("ERROR soxs-mflat run: interrupted by SIGTERM; nothing was written"), last
    assert last[1].endswith("INFO exit code 143 (interrupted by SIGTERM, nothing written)"), last


def test_uvb_set_all_or_nothing(uvb, tmp_path, capsys, monkeypatch):
    """Ctrl-C while the per-lamp products are staged leaves nothing (no D2 set alone) and does not block
    a rerun; a failure in the last set's QC-plot worker during --overwrite keeps the previous set intact."""
    out = tmp_path / "out"
    rc, err, _ = _interrupt_when_staged(uvb["sof"], out, signal.SIGINT)
    assert rc == 130 and "Traceback" not in err and "interrupted by SIGINT" in err
    assert listing(tmp_path) == []
    assert run_cli(uvb["sof"], out, capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(before) == 14   # 3 x (flat, table, order PDF), 2 x (background, its PDF), qc.json

    from soxs_mflat import plots

    def broken(*a):
        raise RuntimeError("renderer crashed")
    monkeypatch.setattr(plots, "background_pdf", broken)   # fails in a forked worker
    rc, err = run_cli(uvb["sof"], out, capsys, "--overwrite")
    assert rc == 3 and "bkground_uvb" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_internal_error_is_one_line(vis, tmp_path, capsys, monkeypatch):
    def bug(*a, **k):
        raise TypeError("unexpected thing")
    monkeypatch.setattr(recipe, "process_lamp", bug)
    rc, err = run_cli(vis["sof"], tmp_path / "out", capsys)
    assert rc == 1 and "internal error: TypeError: unexpected thing" in err and len(err.strip().splitlines()) == 1
    assert listing(tmp_path) == []


def test_settings_template_runs(vis, tmp_path, capsys):
    """The settings file `params --yaml` writes is accepted as it is, and with one value uncommented."""
    assert main(["params", "--yaml"]) == 0
    text = capsys.readouterr().out
    s = tmp_path / "s.yaml"
    s.write_text(text)
    assert run_cli(vis["sof"], tmp_path / "a", capsys, "-s", str(s))[0] == 0
    s.write_text(text.replace("  # order_deg:", "  order_deg: 2\n  # was:"))
    from soxs_mflat import settings
    assert settings.resolve("soxs", "vis", s)["order_deg"] == 2


@pytest.mark.parametrize("text", ["vis: 5\n", "soxs-mflat: 3\n", "[1, 2]\n", "order_deg: [1]\n", "vis: {order_deg: x}\n",
                                  "\x00\x01binary", "soxs-mflat:\n  vis: 7\n"])
def test_bad_settings_file(vis, tmp_path, capsys, text, no_processing):
    s = tmp_path / "s.yaml"
    s.write_text(text)
    rc, err = run_cli(vis["sof"], tmp_path / "out", capsys, "-s", str(s))
    assert rc == 2 and str(s) in err
    assert listing(tmp_path) == ["s.yaml"]


def test_a_full_disk_before_the_run_leaves_nothing(vis, tmp_path, capsys, monkeypatch, no_processing):
    """A disk already full: writing the lock file's pid fails (ENOSPC), which is exit 2 with the reason,
    and the lock file and the directories the run created are removed again (was: internal error, both
    left behind)."""
    real = output.os.write

    def full(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(output.LOCK_NAME):
            raise OSError(28, "No space left on device")
        return real(fd, data)
    monkeypatch.setattr(output.os, "write", full)
    rc, err = run_cli(vis["sof"], tmp_path / "new" / "out", capsys)
    assert rc == 2 and "cannot write the lock file" in err and "No space left on device" in err
    assert listing(tmp_path) == []


def test_a_staging_directory_left_by_a_killed_run_is_removed(vis, tmp_path, capsys):
    """SIGKILL leaves a staging directory (no clean-up can run): the next run into the directory, holding
    its lock, removes it, and says so."""
    out = tmp_path / "out"
    stale = out / (output.STAGING_PREFIX + "k9x")
    stale.mkdir(parents=True)
    (stale / "master_flat_vis.fits").write_bytes(b"half written")
    rc = main(["run", str(vis["sof"]), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and f"{stale}: removed the staging directory of an interrupted run" in err
    assert not stale.exists() and not any(p.name.startswith(output.STAGING_PREFIX) for p in out.iterdir())


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.15, 0.25])
def test_ctrl_c_from_the_first_moment(vis, tmp_path, delay):
    """SIGINT at any moment of a run, the imports included (numpy and astropy load within the first
    ~0.3 s): exit 130, one line saying so, never a traceback, nothing left (was: a KeyboardInterrupt
    traceback, or exit 1 for a half-imported module, within the first ~0.17 s)."""
    out = tmp_path / "out"
    p = subprocess.Popen(CLI + ["run", str(vis["sof"]), "-o", str(out), "-q"], stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    rc, err = p.wait(60), p.communicate()[1]
    if rc == 0:                  # finished before the signal (a small set on a fast machine): nothing to check
        return
    if rc == -signal.SIGINT:     # before the interpreter took over the signal: the default action, as for
        assert err == "" and listing(tmp_path) == []   # any program (the shell says 130)
        return
    assert rc == 130 and "Traceback" not in err and "internal error" not in err, err
    assert "interrupted by SIGINT" in err and len(err.strip().splitlines()) == 1, err
    assert listing(tmp_path) == []


@pytest.mark.parametrize("delay", [0.08, 0.12, 0.2])
def test_ctrl_c_while_the_command_starts(vis, tmp_path, delay):
    """The installed command (its console script: soxs_mflat._entry) takes SIGINT from its first import
    on (the delays fall in numpy's and astropy's imports, after the interpreter's own start)."""
    exe = Path(sys.executable).with_name("soxs-mflat")
    out = tmp_path / "out"
    p = subprocess.Popen([str(exe), "run", str(vis["sof"]), "-o", str(out), "-q"], stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    rc, err = p.wait(60), p.communicate()[1]
    assert rc in (0, 130, -signal.SIGINT) and "Traceback" not in err, err
    if rc == 130:
        assert err.strip() == "soxs-mflat run: interrupted by SIGINT; nothing was written", err
    assert rc == 0 or listing(tmp_path) == []


def _md5s(*paths):
    import hashlib
    return [hashlib.md5(Path(p).read_bytes()).hexdigest() for p in paths]


def test_the_log_never_replaces_an_input_or_a_product(vis, tmp_path, capsys):
    """--log FILE was opened (truncated) first: `--log the.sof`, `--log a_raw.fits` destroyed the input, and
    `--log OUT/master_flat_vis.fits` a product, even without --overwrite. Now exit 2 before anything is
    written, naming the file and why."""
    import shutil
    sof = tmp_path / "t.sof"
    shutil.copy(vis["sof"], sof)
    raw = vis["raw"][0]
    out = tmp_path / "out"
    assert run_cli(vis["sof"], out, capsys)[0] == 0
    product = out / "master_flat_vis.fits"
    stranger = tmp_path / "other.fits"
    shutil.copy(raw, stranger)
    settings = tmp_path / "s.yaml"
    settings.write_text("soxs-mflat:\n  order_deg: 3\n")
    assert run_cli(sof, tmp_path / "o3", capsys, "-s", str(settings), "--log", str(settings))[0] == 2
    assert settings.read_text() == "soxs-mflat:\n  order_deg: 3\n"   # the settings file is an input too
    for log, why in ((sof, "is an input of this run"), (raw, "is an input of this run"),
                     (product, "is the place of one of the run's products"), (out / "qc.json", "products"),
                     (stranger, "is an existing FITS file")):
        before = _md5s(sof, raw, product, out / "qc.json", stranger)
        for extra in ((), ("--overwrite",)):
            rc, err = run_cli(sof, out, capsys, "--log", str(log), *extra)
            assert rc == 2 and f"--log {log}: " in err and why in err, err
            assert _md5s(sof, raw, product, out / "qc.json", stranger) == before
    rc, _ = run_cli(sof, tmp_path / "out2", capsys, "--log", str(tmp_path / "run.log"))
    assert rc == 0 and "step 1" in (tmp_path / "run.log").read_text()
    rc, err = run_cli(sof, tmp_path / "out3", capsys, "--log", str(tmp_path / "out3" / "run.log"))   # OUT made for it
    assert rc == 0 and "step 1" in (tmp_path / "out3" / "run.log").read_text(), err
