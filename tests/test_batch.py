"""soxs-mflat batch on a real Dask LocalCluster (no mock), on a simulated two-night archive: products
for every complete set equal to the single-set CLI's bit for bit, a set with a corrupted frame
reported while the others complete, the incomplete set listed with what is missing, a second run
skipping the finished sets, and a QC summary row per set."""
import csv
import json
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
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
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
    assert (out / "qc_trends.pdf").read_bytes().startswith(b"%PDF")


def test_second_run_skips_finished_sets(runs):
    _, sets, broken, out, _, second = runs
    assert second.returncode == 3, second.stderr      # the broken set fails again
    assert "2 skipped, 1 failed, 1 incomplete" in second.stdout
    rows = _rows(out)
    done = [sid for sid, s in sets.items() if s["complete"] and sid != broken]
    assert done and all(rows[sid]["status"] == "skipped" for sid in done)


@pytest.mark.parametrize("form", ["fz", "Z"])
def test_batch_products_equal_the_single_set_cli(runs, tmp_path, form):
    """For the set of tile-compressed (.fits.fz) and of unix-compressed (.fits.Z) frames."""
    root, sets, broken, out, _, _ = runs
    sid = next(sid for sid, s in sets.items() if s["complete"] and sid != broken and s["compressed"] == form)
    night = sets[sid]["night"]
    sof = out / "sof" / f"{sid}.sof"
    assert all(ln.split()[0].endswith(f".fits.{form}") for ln in sof.read_text().splitlines() if "_FLAT_" in ln)
    r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "run", str(sof), "-o", str(tmp_path), "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    batch_dir = out / "reduced" / night / "soxs-mflat" / sid
    fits_names = sorted(p.name for p in batch_dir.glob("*.fits"))
    assert fits_names
    for name in fits_names:
        with fits.open(batch_dir / name) as a, fits.open(tmp_path / name) as b:
            assert len(a) == len(b)
            for ha, hb in zip(a, b):
                if ha.data is not None:
                    assert ha.data.dtype == hb.data.dtype
                    assert np.array_equal(ha.data.view(np.uint8) if ha.data.dtype.kind != "V" else ha.data,
                                          hb.data.view(np.uint8) if hb.data.dtype.kind != "V" else hb.data)
            assert a[0].header["DATAMD5"] == b[0].header["DATAMD5"]


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
            else:
                assert float(cell) == v, (name, i)
                n_numeric += 1
    assert n_numeric >= 2 * 10          # the QC values of the reduced sets are numbers, not text
