"""soxs-mflat batch on a real Dask LocalCluster (no mock), on a simulated two-night archive: products
for every complete set equal to the single-set CLI's bit for bit, a set with a corrupted frame
reported while the others complete, the incomplete set listed with what is missing, a second run
skipping the finished sets, and a QC summary row per set."""
import csv
import re
import json
import os
import subprocess
import sys
from pathlib import Path

import types

import numpy as np
import pytest
from astropy.io import fits
from dask.distributed import LocalCluster

from soxs_mflat.batch import batch, exit_code, report
from soxs_mflat.simulate.archive import simulate_archive

# night 1: SOXS VIS 2x2 (frames .fits.fz) and 1x2 (.fits.Z); night 2: the same, its 2x2 set without a
# master bias (incomplete), its 1x2 set with a corrupted frame (failing)
SETUPS = ["soxs/vis/2x2", "soxs/vis/1x2"]


def _batch(*args):
    return subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "batch", *map(str, args)],
                          capture_output=True, text=True)


def _cut_two_rows(path: Path) -> None:
    """A corrupted frame: two rows short, rewritten in its own form (here tile-compressed, HDU 1)."""
    with fits.open(path) as hl:
        data, header = hl[1].data[:-2].copy(), hl[1].header.copy()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header, compression_type="RICE_1")]).writeto(
        path, overwrite=True)


@pytest.fixture(scope="module")
def runs(module_tmp):
    root = module_tmp("batch")
    truth = simulate_archive(root, 2, setups=SETUPS, nflats=2, compress=("fz", "Z"))
    sets = {s["id"]: s for s in truth["sets"]}
    broken = next(s for s in truth["sets"] if s["binning"] == "1x2" and s["night"] == "2025-10-12")
    assert broken["complete"] and broken["compressed"] == "fz"
    assert sorted(s["compressed"] for s in truth["sets"] if s["complete"] and s is not broken) == ["Z", "fz"]
    _cut_two_rows(root / "archive" / broken["flats"][1])
    out = root / "out"
    # first run in this process, on a real LocalCluster of two thread workers reached by its address
    # (as --scheduler ADDRESS does; the cluster is left running for its owner)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        jobs, _ = batch([root / "archive"], out, scheduler=cluster.scheduler_address, plots=False, progress=False)
        assert len(cluster.scheduler.workers) == 2
    first = types.SimpleNamespace(code=exit_code(jobs), report=report(jobs), rows=_rows(out))
    # second run through the CLI, on a LocalCluster of one worker process
    second = _batch(root / "archive", "-o", out, "--workers", "1", "--plots", "none")
    return root, sets, broken["id"], out, first, second


def _rows(out: Path):
    with open(out / "qc_summary.csv") as f:
        return {r["set"]: r for r in csv.DictReader(f)}


def test_failed_set_reported_others_complete(runs):
    root, sets, broken, out, first, _ = runs
    assert first.code == 3, first.report
    rows = first.rows
    assert rows[broken]["status"] == "failed" and "mixed-shape" in rows[broken]["reason"]
    assert f"failed     {broken}" in first.report
    for sid, s in sets.items():
        if s["complete"] and sid != broken:
            assert rows[sid]["status"] == "done", rows[sid]
            d = out / "reduced" / s["night"] / "soxs-mflat" / sid
            assert sorted(p.name for p in d.iterdir()) == ["master_flat_vis.fits", "mflat_bkground_vis.fits",
                                                           "order_tab_vis.fits", "qc.json"]   # --plots none
    assert not list(out.rglob(".*partial*"))      # nothing half-written is left


def test_incomplete_set_skipped_with_what_is_missing(runs):
    _, sets, _, out, first, _ = runs
    rows = first.rows
    bad = [sid for sid, s in sets.items() if not s["complete"]]
    assert len(bad) == 1 and rows[bad[0]]["status"] == "incomplete"
    assert rows[bad[0]]["reason"] == "missing MASTER_BIAS"
    assert set(rows) == set(sets)          # a row per set, whatever happened to it


def test_summary_has_the_qc_of_qc_json(runs):
    _, sets, _, out, _, _ = runs
    rows = _rows(out)
    for sid, r in rows.items():
        if r["status"] in ("done", "skipped"):
            rec = json.loads((out / "reduced" / r["night"] / "soxs-mflat" / sid / "qc.json").read_text())
            for q in rec["qc"]:
                assert float(r[q["name"]]) == pytest.approx(q["value"], rel=1e-12)
                assert r[f"{q['name']} flag"] == q["flag"]
            assert r["night"] == rec["night"] and r["arm"] == "VIS" and r["instrument"] == "SOXS"
    assert not (out / "qc_trends.pdf").exists()     # no PDF at all without plots


def test_second_run_skips_finished_sets(runs):
    _, sets, broken, out, _, second = runs
    assert second.returncode == 3, second.stderr      # the broken set fails again
    assert "2 skipped, 1 failed, 1 incomplete" in second.stdout
    rows = _rows(out)
    done = [sid for sid, s in sets.items() if s["complete"] and sid != broken]
    assert done and all(rows[sid]["status"] == "skipped" for sid in done)


def _assert_fits_bit_equal(a_dir: Path, b_dir: Path) -> list[str]:
    names = sorted(p.name for p in a_dir.glob("*.fits"))
    assert names and names == sorted(p.name for p in b_dir.glob("*.fits"))
    for name in names:
        with fits.open(a_dir / name) as a, fits.open(b_dir / name) as b:
            assert len(a) == len(b)
            for ha, hb in zip(a, b):
                if ha.data is not None:
                    assert ha.data.dtype == hb.data.dtype
                    assert np.array_equal(ha.data.view(np.uint8) if ha.data.dtype.kind != "V" else ha.data,
                                          hb.data.view(np.uint8) if hb.data.dtype.kind != "V" else hb.data)
            assert a[0].header["DATAMD5"] == b[0].header["DATAMD5"]
    return names


@pytest.fixture(scope="module")
def cli_run(module_tmp):
    """The single-set CLI's products (QC PDFs on) of a SOF, run once per SOF in this module."""
    done = {}

    def run(sof: Path) -> Path:
        if sof not in done:
            out = module_tmp("cli")
            r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "run", str(sof), "-o", str(out), "-q"],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            done[sof] = out
        return done[sof]
    return run


def _good_set(runs, form: str) -> tuple[str, Path]:
    root, sets, broken, out, _, _ = runs
    sid = next(sid for sid, s in sets.items() if s["complete"] and sid != broken and s["compressed"] == form)
    sof = out / "sof" / f"{sid}.sof"
    assert all(ln.split()[0].endswith(f".fits.{form}") for ln in sof.read_text().splitlines() if "_FLAT_" in ln)
    return sid, sof


@pytest.mark.parametrize("form", ["fz", "Z"])
def test_batch_products_equal_the_single_set_cli(runs, cli_run, form):
    """For the set of tile-compressed (.fits.fz) and of unix-compressed (.fits.Z) frames."""
    _, sets, _, out, _, _ = runs
    sid, sof = _good_set(runs, form)
    _assert_fits_bit_equal(out / "reduced" / sets[sid]["night"] / "soxs-mflat" / sid, cli_run(sof))


def test_batch_of_a_sof_with_pdfs_in_a_worker_process(runs, cli_run, tmp_path):
    """batch SOF (not a tree), QC PDFs on (the default) in a LocalCluster worker process (a daemon,
    where multiprocessing may not start children): the single-set CLI's products, the same FITS bit
    for bit, and the same PDFs."""
    _, sets, _, out, _, _ = runs
    sid, sof = _good_set(runs, "Z")
    cli = cli_run(sof)
    r = _batch(sof, "-o", tmp_path / "b", "--workers", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    got = tmp_path / "b" / "reduced" / sets[sid]["night"] / "soxs-mflat" / sid
    _assert_fits_bit_equal(got, cli)
    pdfs = sorted(p.name for p in got.glob("*.pdf"))
    assert pdfs and pdfs == sorted(p.name for p in cli.glob("*.pdf"))
    assert all((got / n).read_bytes().startswith(b"%PDF") for n in pdfs)
    assert _rows(tmp_path / "b")[sid]["status"] == "done"
    assert (tmp_path / "b" / "qc_trends.pdf").read_bytes().startswith(b"%PDF")


def test_parquet_summary_equals_the_csv(runs):
    """qc_summary.parquet (pyarrow is a test dependency): the CSV's columns in its order, its rows,
    its values (numbers as numbers, empty cells as nulls)."""
    import pyarrow.parquet as pq       # a test dependency: no skip
    _, _, _, out, _, _ = runs
    with open(out / "qc_summary.csv") as f:
        reader = csv.reader(f)
        header, body = next(reader), list(reader)
    table = pq.read_table(out / "qc_summary.parquet")
    assert table.column_names == header and table.num_rows == len(body) == 4
    cols = table.to_pydict()
    n_numeric = 0
    for i, row in enumerate(body):
        for name, cell in zip(header, row):
            v = cols[name][i]
            if v is None:
                assert cell == "", (name, i)
            elif isinstance(v, str):
                assert v == cell, (name, i)
            elif isinstance(v, bool):       # qc_passed
                assert str(v) == cell, (name, i)
            else:
                assert float(cell) == v, (name, i)
                n_numeric += 1
    assert n_numeric >= 2 * 10          # the QC values of the reduced sets are numbers, not text


def test_resume_verifies_products(runs, tmp_path):
    """A finished set is one whose qc.json names products that all exist with a DATAMD5 equal to
    their data: an altered data unit or a missing product makes it unfinished again."""
    import shutil
    from soxs_mflat.batch import products_verify
    _, sets, _, out, _, _ = runs
    sid, _ = _good_set(runs, "fz")
    d = tmp_path / sid
    shutil.copytree(out / "reduced" / sets[sid]["night"] / "soxs-mflat" / sid, d)
    assert products_verify(d)
    flat = d / "master_flat_vis.fits"
    with fits.open(flat) as hl:
        offset = hl[1].fileinfo()["datLoc"] + 100     # a byte inside the FLUX data
    raw = bytearray(flat.read_bytes())
    raw[offset] ^= 0x01
    flat.write_bytes(bytes(raw))
    assert not products_verify(d)
    shutil.rmtree(d)
    shutil.copytree(out / "reduced" / sets[sid]["night"] / "soxs-mflat" / sid, d)
    (d / "order_tab_vis.fits").unlink()
    assert not products_verify(d)


def test_overwrite_reduces_finished_sets_again(runs, tmp_path):
    """--overwrite: a set that verifies is reduced again (the same products), not skipped."""
    import shutil
    _, sets, _, out, _, _ = runs
    sid, sof = _good_set(runs, "fz")
    night = sets[sid]["night"]
    dest = tmp_path / "reduced" / night / "soxs-mflat" / sid
    shutil.copytree(out / "reduced" / night / "soxs-mflat" / sid, dest)
    before = (dest / "qc.json").stat().st_mtime_ns
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        kept, _ = batch([sof], tmp_path, scheduler=cluster.scheduler_address, plots=False, progress=False)
        redone, _ = batch([sof], tmp_path, scheduler=cluster.scheduler_address, plots=False, overwrite=True,
                          progress=False)
    assert [j.status for j in kept] == ["skipped"] and [j.status for j in redone] == ["done"]
    assert (dest / "qc.json").stat().st_mtime_ns != before
    _assert_fits_bit_equal(dest, out / "reduced" / night / "soxs-mflat" / sid)


@pytest.fixture(scope="module")
def messy(module_tmp):
    """One SOXS VIS 2x2 set of 3 flats, with what the tester added: a raw flat of another exposure under a
    path with a space, a byte-identical copy of flat 01 and a gzip copy of flat 03."""
    import gzip
    import shutil
    from soxs_mflat.simulate.run import simulate_set
    root = module_tmp("messy")
    simulate_set("soxs", "vis", root / "sim", nflats=3, binning="2x2")
    tree = root / "messy"
    shutil.copytree(root / "sim" / "raw", tree)
    shutil.copytree(root / "sim" / "calib", tree / "calib")
    (tree / "a" / "b").mkdir(parents=True)
    shutil.copyfile(tree / "SOXS_VIS_FLAT_QTH_02.fits", tree / "a" / "sp ace.fits")
    with fits.open(tree / "a" / "sp ace.fits", mode="update") as hl:
        hl[0].header["DATE-OBS"] = hl[0].header["DATE-OBS"][:17] + "59.000"
        hl[0].header["ARCFILE"] = "SOXS.copy.fits"
    shutil.copyfile(tree / "SOXS_VIS_FLAT_QTH_01.fits", tree / "a" / "copy_01.fits")
    with open(tree / "SOXS_VIS_FLAT_QTH_03.fits", "rb") as fin, gzip.open(tree / "a" / "b" / "f3.fits.gz", "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return tree


def test_batch_of_a_tree_with_unusable_files_reduces_the_set(messy, tmp_path):
    """The tester's `batch messy -o bm`: was exit 3, the set failed with 'unknown frame group
    LAMP,FLAT_VIS' (the path with a space written into its SOF) or [duplicate-input] (the same exposure
    twice); now the set is reduced from one frame per exposure, and each unusable file is named with its
    reason."""
    out = tmp_path / "bm"
    r = _batch(messy, "-o", out, "--workers", "1", "--plots", "none", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "unknown frame group" not in r.stdout + r.stderr and "1 done, 0 skipped, 0 failed" in r.stdout
    assert f"unusable: {messy / 'a' / 'sp ace.fits'}: its path contains whitespace" in r.stderr
    assert (f"unusable: [duplicate-input] {messy / 'a' / 'copy_01.fits'}: identical bytes as "
            f"{messy / 'SOXS_VIS_FLAT_QTH_01.fits'}, which is used instead") in r.stderr   # not 'listed twice'
    assert f"unusable: [duplicate-input] {messy / 'a' / 'b' / 'f3.fits.gz'}: the same exposure" in r.stderr
    sof, = (out / "sof").iterdir()
    from soxs_mflat.frames import parse_sof
    assert [p for p, _ in parse_sof(sof)][:3] == [messy / f"SOXS_VIS_FLAT_QTH_0{i}.fits" for i in (1, 2, 3)]
    assert len(parse_sof(sof)) == 6      # 3 flats, order table, master bias, bad-pixel map


@pytest.mark.parametrize("text, match", [
    ("soxs-mflat:\n  vis:\n    qc-acceptable-ranges:\n      x-res-sd: [0, .inf]\n", "x-res-sd must be two finite numbers"),
    (b"\xff\xfe\x00garbage", "not a UTF-8 text"),
    ("soxs-mflat:\n  nir:\n    order_deg: 99\n", r"\[parameter-range\] parameter order_deg must be <= 10"),
])
def test_batch_refuses_a_bad_settings_file_before_any_set(messy, tmp_path, text, match):
    """A bad settings file is one input error (exit 2, naming it) before anything is organised or run; it
    was a failure of every set (exit 3), or, for infinite QC bounds, an internal error after processing."""
    s = tmp_path / "s.yaml"
    s.write_bytes(text if isinstance(text, bytes) else text.encode())
    r = _batch(messy, "-o", tmp_path / "out", "-s", s, "--plots", "none", "-q")
    assert r.returncode == 2, r.stdout + r.stderr
    assert str(s) in r.stderr and re.search(match, r.stderr) and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("n", ["0", "-1", "1000", "two"])
def test_workers_outside_their_range_are_refused(messy, tmp_path, n):
    """--workers 0 / -1 ran with one worker; 1000 started worker processes until the machine stalled."""
    r = _batch(messy, "-o", tmp_path / "out", "--workers", n, "-q")
    assert r.returncode == 2 and "argument --workers:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_no_more_workers_than_sets(messy, tmp_path, monkeypatch):
    """One set to reduce: one worker process, however many were asked for."""
    import soxs_mflat.batch as b
    asked = []
    real = b.make_client

    def spy(workers, scheduler):
        asked.append(workers)
        return real(workers, scheduler)
    monkeypatch.setattr(b, "make_client", spy)
    jobs, _ = batch([messy], tmp_path / "out", workers=8, plots=False, progress=False)
    assert asked == [1] and [j.status for j in jobs].count("done") == 1


def test_resume_verifies_the_checksums_too(runs, tmp_path):
    """An edited header keeps DATAMD5 (the data units are the same) but breaks CHECKSUM: that set was
    skipped as verified; it is reduced again now."""
    import shutil
    from soxs_mflat.batch import products_verify
    _, sets, _, out, _, _ = runs
    sid, _ = _good_set(runs, "fz")
    d = tmp_path / sid
    shutil.copytree(out / "reduced" / sets[sid]["night"] / "soxs-mflat" / sid, d)
    flat = d / "master_flat_vis.fits"
    raw = bytearray(flat.read_bytes())
    at = raw.index(b"MASTER_FLAT_VIS")
    raw[at:at + 15] = b"MASTER_FLAT_XXX"   # in place: the header's size and the data are unchanged
    flat.write_bytes(bytes(raw))
    assert fits.getval(flat, "DATAMD5") == fits.getval(out / "reduced" / sets[sid]["night"] / "soxs-mflat" / sid /
                                                        "master_flat_vis.fits", "DATAMD5")
    assert not products_verify(d)


def test_one_bad_sof_is_one_failed_set(messy, tmp_path):
    """`batch good.sof bad.sof` stopped with exit 2 before reducing anything, naming the missing bias but
    not the SOF: the good set is reduced, the bad one fails with its SOF and rule (exit 3)."""
    first = _batch(messy, "-o", tmp_path / "a", "--workers", "1", "--plots", "none", "-q")
    assert first.returncode == 0, first.stderr
    good, = (tmp_path / "a" / "sof").iterdir()
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.sof"       # its master bias is not there (the tester's case: exit 2, nothing reduced)
    bad.write_text("".join((ln.replace("calib/", "nowhere/") if "MASTER_BIAS" in ln else ln) + "\n" for ln in lines))
    nobias = tmp_path / "nobias.sof"  # no master bias listed: refused when the set runs
    nobias.write_text("".join(ln + "\n" for ln in lines if "MASTER_BIAS" not in ln))
    r = _batch(good, bad, nobias, "-o", tmp_path / "b", "--workers", "1", "--plots", "none", "-q")
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "1 done, 0 skipped, 2 failed" in r.stdout
    assert f"failed     bad  ({bad}: [missing-file]" in r.stdout, r.stdout
    assert "failed     nobias  ([missing-bias]" in r.stdout, r.stdout


def test_parquet_qc_passed_is_a_boolean(runs):
    import pyarrow.parquet as pq
    _, _, _, out, _, _ = runs
    t = pq.read_table(out / "qc_summary.parquet")
    assert str(t.schema.field("qc_passed").type) == "bool"
    assert set(t.column("qc_passed").to_pylist()) <= {True, False, None}


def test_trend_pages_say_units_and_an_empty_run(tmp_path, monkeypatch):
    """The y axes gave no unit (ORDEXP10 is in electrons); an empty run's page was titled
    'no reduced sets per night: 0 reduced sets'."""
    from matplotlib.backends.backend_pdf import PdfPages
    from soxs_mflat.summary import trends_pdf
    seen = []
    real = PdfPages.savefig

    def spy(self, figure=None, **kw):
        seen.append((figure._suptitle.get_text(), figure.axes[0].get_ylabel(), figure.axes[0].get_xlim()))
        return real(self, figure, **kw)
    monkeypatch.setattr(PdfPages, "savefig", spy)
    row = {"instrument": "SOXS", "arm": "VIS", "night": "2025-10-11", "setup": "2x2", "qc_passed": True,
           "ORDEXP10": 12800.0, "ORDEXP10 flag": "pass", "ORDEXP10 range": None}
    trends_pdf([row, dict(row, night="2025-10-12", ORDEXP10=12900.0)], tmp_path / "t.pdf")
    assert seen[0][1] == "ORDEXP10 (electrons)" and seen[0][2] == (-0.5, 1.5)
    seen.clear()
    trends_pdf([], tmp_path / "e.pdf")
    assert seen == [("no reduced sets: no QC to plot", "", seen[0][2])]
    # a QC of one arm (CROSSOVER ORDER: UVB) has that arm's panel only (the others were empty, +-0.04 axes),
    # and an arm's failed set marks its night
    uvb = dict(row, instrument="XSHOOTER", arm="UVB", **{"CROSSOVER ORDER": 21, "CROSSOVER ORDER flag": "none"})
    figures = []
    monkeypatch.setattr(PdfPages, "savefig", lambda self, figure=None, **kw: (figures.append(figure),
                                                                              real(self, figure, **kw))[1])
    trends_pdf([row, uvb, dict(uvb, night="2025-10-12", qc_passed="", status="failed")], tmp_path / "u.pdf")
    crossover = next(f for f in figures if f._suptitle.get_text().startswith("CROSSOVER ORDER"))
    assert [a.get_title() for a in crossover.axes if a.axison] == ["XSHOOTER UVB"]
    assert "1 failed" in crossover._suptitle.get_text()
    assert [tuple(ln.get_xdata()) for ln in crossover.axes[0].lines if ln.get_linestyle() == "--"] == [(1, 1)]


def test_a_redone_set_says_why(messy, tmp_path):
    """A set reduced again because its products no longer verify printed only 'done'."""
    out = tmp_path / "r"
    assert _batch(messy, "-o", out, "--workers", "1", "--plots", "none", "-q").returncode == 0
    flat, = out.glob("reduced/*/soxs-mflat/*/master_flat_vis.fits")
    raw = bytearray(flat.read_bytes())
    at = raw.index(b"MASTER_FLAT_VIS")
    raw[at:at + 15] = b"MASTER_FLAT_XXX"
    flat.write_bytes(bytes(raw))
    r = _batch(messy, "-o", out, "--workers", "1", "--plots", "none", "-q")
    assert r.returncode == 0 and "(redone: master_flat_vis.fits: its CHECKSUM or DATASUM does not verify)" in r.stdout
    r = _batch(messy, "-o", out, "--workers", "1", "--plots", "none", "-q")
    assert "skipped " in r.stdout and "(redone:" not in r.stdout


def test_an_absent_input_is_named_as_such(tmp_path):
    r = _batch(tmp_path / "nonexist", "-o", tmp_path / "out", "-q")
    assert r.returncode == 2 and f"no such directory or SOF file: {tmp_path / 'nonexist'}" in r.stderr
    assert "(SOF file)" not in r.stderr and not (tmp_path / "out").exists()


def test_a_tree_under_a_path_with_whitespace_is_refused(messy, tmp_path):
    """Every file of such a tree is unusable (no SOF line holds its path): batch reduced nothing and exited 0."""
    import shutil
    tree = tmp_path / "tree sp"
    shutil.copytree(messy, tree, ignore=shutil.ignore_patterns("a"))
    r = _batch(tree, "-o", tmp_path / "out", "--workers", "1", "--plots", "none", "-q")
    assert r.returncode == 2 and "the directory's path holds whitespace" in r.stderr, r.stdout + r.stderr
    (tmp_path / "link").symlink_to(tree)
    r = _batch(tmp_path / "link", "-o", tmp_path / "out2", "--workers", "1", "--plots", "none", "-q")
    assert r.returncode == 0 and "1 done" in r.stdout, r.stdout + r.stderr


def test_one_batch_at_a_time_and_stale_partial_sets_removed(runs, tmp_path):
    """SIGTERM to a batch's process group (scancel, systemd) left `.<set>.partial-<pid>` folders that no later
    batch removed, and two batches into one OUT reduced the same sets at once: now the second is refused
    (exit 5, nothing touched) and the next batch removes what killed ones left."""
    from soxs_mflat.output import lock_directory, unlock_directory
    _, _, _, out, _, _ = runs
    sof = sorted((out / "sof").glob("*.sof"))[0]
    new = tmp_path / "o"
    stale = new / "reduced" / "2025-10-11" / "soxs-mflat" / ".some_set.partial-99999"
    stale.mkdir(parents=True)
    (stale / "master_flat_vis.fits").write_bytes(b"half a product")
    fd = lock_directory(new, "batch")
    try:
        busy = _batch(sof, "-o", new, "--workers", "1", "--plots", "none", "-q")
    finally:
        unlock_directory(new, fd)
    assert busy.returncode == 5, busy.stderr
    assert f"{new}: another soxs-mflat batch (pid {os.getpid()})" in busy.stderr and "Traceback" not in busy.stderr
    assert stale.exists() and not (new / "reduced" / "sof").exists()
    done = _batch(sof, "-o", new, "--workers", "1", "--plots", "none")
    assert done.returncode in (0, 3), done.stderr
    assert not stale.exists() and "removed the half-written products of an interrupted batch" in done.stderr
    assert not (new / ".soxs-mflat.lock").exists()


def test_resume_checks_the_qc_pdfs_too(tmp_path):
    """A 0-byte or cut PDF was 'verified' (only FITS products were checked), and sets first reduced with
    --plots none were skipped by a later run that wanted the pages."""
    import json
    from soxs_mflat.batch import verify_problem
    (tmp_path / "qc.json").write_text(json.dumps({"products": {"ORDER LOC RES": "order_loc_res_vis.pdf"}}))
    pdf = tmp_path / "order_loc_res_vis.pdf"
    for content, problem in ((b"", "not a complete PDF"), (b"%PDF-1.4\n" + b"x" * 5000, "not a complete PDF"),
                             (b"%PDF-1.4\n" + b"x" * 5000 + b"\n%%EOF\n", None)):
        pdf.write_bytes(content)
        got = verify_problem(tmp_path, plots=True)
        assert got == (problem and f"order_loc_res_vis.pdf: {problem}"), (content[:20], got)
    (tmp_path / "qc.json").write_text(json.dumps({"products": {}}))
    assert verify_problem(tmp_path, plots=False) is None
    assert verify_problem(tmp_path, plots=True) == "it was reduced without its QC PDFs (--plots none)"


def test_a_redone_set_keeps_the_users_files(runs, tmp_path):
    """Redoing a set removed its whole folder, a user's notes with it: only the products are replaced."""
    from soxs_mflat.batch import reduce_set
    _, sof = _good_set(runs, "fz")
    final = tmp_path / "set"
    assert reduce_set(str(sof), str(final), None, False)["status"] == "done"
    (final / "notes.txt").write_text("checked by the night astronomer")
    (final / "master_flat_vis_old.fits").write_bytes(b"a user's copy")
    stale = final / "order_loc_res_vis.pdf"   # a product name: an old page of this recipe's, not kept
    stale.write_bytes(b"%PDF-old")
    (final / "qc.json").unlink()
    assert reduce_set(str(sof), str(final), None, False)["status"] == "done"
    assert (final / "notes.txt").read_text() == "checked by the night astronomer"
    assert (final / "master_flat_vis_old.fits").read_bytes() == b"a user's copy"
    assert not stale.exists() and (final / "qc.json").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_local_cluster_takes_no_fixed_port():
    """The LocalCluster listened on 127.0.0.1:8787 (the dashboard's port, with dashboard_address=None), and
    a second batch warned 'Port 8787 is already in use' (an error here: filterwarnings)."""
    import socket
    from soxs_mflat.batch import make_client
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8787))
        except OSError:
            pytest.skip("port 8787 is taken by another process")
        taken.listen()
        client, cluster = make_client(1, None)
        try:
            assert client.run(lambda: 1) and "8787" not in str(cluster.scheduler.http_server.port)
        finally:
            client.close()
            cluster.close()


def test_local_workers_leave_ctrl_c_to_the_batch():
    """A Ctrl-C reaches the whole process group: the workers printed KeyboardInterrupt and CommClosedError
    tracebacks. They start with SIGINT ignored (inherited); the batch process keeps its handler."""
    import signal
    from soxs_mflat.batch import make_client
    before = signal.getsignal(signal.SIGINT)
    client, cluster = make_client(1, None)
    try:
        for pid in client.run(os.getpid).values():
            ignored = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("SigIgn"))
            assert int(ignored.split()[1], 16) & (1 << (signal.SIGINT - 1)), ignored
    finally:
        client.close()
        cluster.close()
    assert signal.getsignal(signal.SIGINT) is before


def test_two_sofs_of_one_name_are_refused(runs, tmp_path):
    """Two SOFs of the same name from two folders (or one SOF given twice) were two jobs writing into one set
    folder at once: one 'done', the other failed on the first's files. Refused up front (exit 2)."""
    import shutil
    _, sof = _good_set(runs, "fz")
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / sof.name
    shutil.copy(sof, twin)
    for args, text in (([sof, twin], f"both SOFs are named {sof.stem}"), ([sof, sof], f"{sof}: given twice")):
        r = _batch(*args, "-o", tmp_path / "out", "--workers", "1", "--plots", "none", "-q")
        assert r.returncode == 2 and text in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "out").exists()


def test_resume_redoes_a_set_whose_product_or_qc_json_is_damaged(runs, tmp_path):
    """A product cut inside its data made astropy raise TypeError ('buffer is too small'), which ended the
    whole batch in an internal error; a qc.json that is a list, or names a product by a number, likewise."""
    import json
    import shutil
    from soxs_mflat.batch import verify_problem
    _, sets, _, out, _, _ = runs
    sid, _ = _good_set(runs, "fz")
    d = tmp_path / sid
    shutil.copytree(out / "reduced" / sets[sid]["night"] / "soxs-mflat" / sid, d)
    assert verify_problem(d) is None
    flat = d / "master_flat_vis.fits"
    flat.write_bytes(flat.read_bytes()[:40000])
    assert verify_problem(d) == "qc.json or a product cannot be read (TypeError)" or "master_flat" in verify_problem(d)
    for record in ([], {"products": {"MFLAT": 3}}, {"products": None}):
        (d / "qc.json").write_text(json.dumps(record))
        assert verify_problem(d, plots=True) == "qc.json does not list the products by name"


def test_trend_axis_without_a_range_spans_at_least_2_percent_and_has_no_offset(tmp_path, monkeypatch):
    """INNER ORDER PIX SUM of X-shooter (no range) at 1 062 857 and 1 062 853 filled the panel, its ticks
    read '+1.06285e6' above the axis; now the axis spans at least +-2 % of the values' centre, without an
    offset; a drift wider than that is shown whole."""
    from matplotlib.backends.backend_pdf import PdfPages
    from soxs_mflat.summary import trends_pdf
    axes = []
    real = PdfPages.savefig
    monkeypatch.setattr(PdfPages, "savefig", lambda self, figure=None, **kw: (axes.append(figure.axes[0]),
                                                                              real(self, figure, **kw))[1])
    name = "INNER ORDER PIX SUM"
    row = {"instrument": "XSHOOTER", "arm": "NIR", "night": "2025-10-11", "setup": "1x1", "qc_passed": True,
           name: 1062857.0, f"{name} flag": "none", f"{name} range": None}
    trends_pdf([row, dict(row, night="2025-10-12", **{name: 1062853.0})], tmp_path / "t.pdf")
    lo, hi = axes[0].get_ylim()
    assert hi - lo == pytest.approx(0.04 * 1062855.0) and (lo + hi) / 2 == pytest.approx(1062855.0)
    axes[0].figure.canvas.draw()
    fmt = axes[0].yaxis.get_major_formatter()
    assert fmt.get_offset() == "" and not fmt.get_useOffset()
    axes.clear()
    trends_pdf([row, dict(row, night="2025-10-12", **{name: 2e6})], tmp_path / "w.pdf")
    lo, hi = axes[0].get_ylim()
    assert lo < 1062857.0 and hi > 2e6 and hi - lo < 1.3 * (2e6 - 1062857.0)


@pytest.mark.parametrize("killed_at", [1, 2, 3])
def test_a_batch_killed_while_swapping_a_set_in_loses_no_users_file(runs, tmp_path, monkeypatch, killed_at):
    """The user's files were moved into the staging folder before it was renamed into place: a batch killed
    in between left them in a hidden .partial folder that nothing took back. Killed after the n-th rename of
    the swap (old folder aside, new folder in, a user's file moved across), the next reduction of the set
    has every user's file in the set's folder, complete products, and no hidden folder left."""
    import os as _os

    from soxs_mflat import batch
    _, sof = _good_set(runs, "fz")
    final = tmp_path / "set"
    assert batch.reduce_set(str(sof), str(final), None, False)["status"] == "done"
    notes = {"notes.txt": "checked by the night astronomer", "log.txt": "seeing 0.8"}
    for name, text in notes.items():
        (final / name).write_text(text)
    (final / "qc.json").unlink()   # makes the set one to redo

    class Killed(BaseException):
        pass
    real_swap, real_replace = batch._swap_in, _os.replace

    def swap_killed(tmp, dst):
        calls = []

        def replace(a, b):
            real_replace(a, b)
            calls.append(b)
            if len(calls) == killed_at:
                raise Killed()
        with monkeypatch.context() as m:
            m.setattr(_os, "replace", replace)
            real_swap(tmp, dst)
    monkeypatch.setattr(batch, "_swap_in", swap_killed)
    with pytest.raises(Killed):
        batch.reduce_set(str(sof), str(final), None, False)
    monkeypatch.setattr(batch, "_swap_in", real_swap)
    kept = {p.name for d in (final, batch._old_twin(final)) if d.is_dir() for p in d.iterdir()}
    assert set(notes) <= kept   # nothing lost while killed
    assert batch.reduce_set(str(sof), str(final), None, False)["status"] == "done"
    for name, text in notes.items():
        assert (final / name).read_text() == text, name
    assert batch.verify_problem(final) is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
