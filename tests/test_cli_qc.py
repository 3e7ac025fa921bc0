"""QC through the command line: -q still reports QC failures, --strict-qc exits 4, qc.json beside the
products agrees with the FITS QC cards, -v / --log record the run; `params` says what it shows."""
import json
import os
import subprocess
import sys

import pytest
from astropy.io import fits

from soxs_mflat.qc import definitions


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "soxs_mflat.cli", *map(str, args)], capture_output=True, text=True,
                          **kw)


@pytest.fixture(scope="module")
def sof(module_tmp):
    root = module_tmp("cliqc")
    sim = _cli("simulate", "--instrument", "soxs", "--arm", "vis", "--out", root / "set", "--nflats", "3", "--seed", 3)
    assert sim.returncode == 0, sim.stderr
    return next((root / "set").glob("*.sof"))


@pytest.fixture(scope="module")
def nominal(sof):
    out = sof.parent.parent / "nominal"
    log = sof.parent.parent / "run.log"
    r = _cli("run", sof, "-o", out, "-v", "--log", log, "--strict-qc")
    assert r.returncode == 0, r.stderr           # a nominal set passes every QC range, even with --strict-qc
    return dict(run=r, out=out, log=log.read_text(), qc=json.loads((out / "qc.json").read_text()))


def test_qc_json_agrees_with_the_fits_cards(nominal, sof):
    rec = nominal["qc"]
    assert rec["format"] == "soxs-mflat-qc/1" and rec["passed"] is True and rec["n_failed"] == 0
    assert (rec["instrument"], rec["arm"], rec["front_end"]) == ("SOXS", "VIS", "python")
    h = fits.getheader(nominal["out"] / "master_flat_vis.fits")
    assert rec["night"] is not None and h["DATE-OBS"].startswith(rec["date_obs"][:10])
    raws = sorted(v for k, v in h.items() if k.startswith("ESO PRO REC1 RAW") and k.endswith("NAME"))
    assert sorted(i["name"] for i in rec["inputs"] if i["group"] == "raw") == raws
    assert {i["name"] for i in rec["inputs"]} <= {line.split()[0].split("/")[-1] for line in sof.read_text().splitlines()}
    assert set(rec["products"].values()) | {"qc.json"} == {p.name for p in nominal["out"].iterdir()}
    for row in rec["qc"]:
        assert row["value"] == pytest.approx(h[f"ESO QC {row['name']}"], rel=1e-12, abs=1e-12)
        assert row["unit"] == definitions()[row["name"]][0]
        assert row["flag"] == ("none" if row["range"] is None else "pass")


def test_verbose_log_records_inputs_parameters_steps_qc_products(nominal, sof):
    log, err = nominal["log"], nominal["run"].stderr
    for needle in ("input raw", "MASTER_BIAS_VIS", "parameter order_deg = 3", "QC range X RES SD = [0, 0.37]",
                   "step 3 took", "INNER ORDER PIX SUM", "product MFLAT", "qc.json", "finished in"):
        assert needle in log, needle
    assert log.rstrip().splitlines()[-1].endswith("exit code 0 (done)")
    assert "step 1: reading and verifying input frames" in err     # progress lines without a terminal with -v
    assert "\r" not in err


@pytest.mark.parametrize("rng,side", [("x-res-sd: [0, 1.0e-4]", "high"), ("ordexp90: [1.0e+9, 2.0e+9]", "low")])
def test_out_of_range_qc_quiet_and_strict(sof, tmp_path, rng, side):
    s = tmp_path / "s.yaml"
    s.write_text(f"soxs-mflat:\n  vis:\n    qc-acceptable-ranges:\n      {rng}\n")
    name = {"high": "X RES SD", "low": "ORDEXP90"}[side]
    strict = _cli("run", sof, "-o", tmp_path / "a", "-s", s, "-q", "--strict-qc", "--log", tmp_path / "a.log")
    assert strict.returncode == 4 and strict.stdout == ""
    last = (tmp_path / "a.log").read_text().rstrip().splitlines()[-1]   # the log says how the run ended
    assert last.endswith("exit code 4 (--strict-qc: a QC value out of range, products written)"), last
    assert f"WARNING: QC {name} =" in strict.stderr and "outside its acceptable range" in strict.stderr
    rec = json.loads((tmp_path / "a" / "qc.json").read_text())
    flagged = {r["name"]: r["flag"] for r in rec["qc"]}
    assert flagged[name] == "fail" and rec["passed"] is False and rec["n_failed"] == 1
    assert (tmp_path / "a" / "master_flat_vis.fits").exists()   # the products are still written
    lax = _cli("run", sof, "-o", tmp_path / "b", "-s", s)
    assert lax.returncode == 0 and f"WARNING: QC {name} =" in lax.stderr and "1 QC value(s) out of range" in lax.stdout
    assert [ln for ln in strict.stderr.splitlines() if "QC" in ln] == [ln for ln in lax.stderr.splitlines() if "QC" in ln]


def test_params_names_its_arm_refuses_soxs_uvb_and_survives_a_closed_pipe():
    r = _cli("params", "--instrument", "xshooter", "--arm", "nir")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "# soxs_mflat parameters for XSHOOTER NIR"
    assert "order_deg" in r.stdout
    upper = _cli("params", "--instrument", "XSHOOTER", "--arm", "NIR")   # as the headers spell them
    assert upper.returncode == 0 and upper.stdout == r.stdout, upper.stderr
    from soxs_mflat import settings
    rows = r.stdout.splitlines()[1:]
    starts = {ln.index(settings.definitions()[ln.split()[0]]["description"]) for ln in rows}
    assert len(rows) == len(settings.definitions()) and len(starts) == 1, starts   # one description column
    bad = _cli("params", "--instrument", "soxs", "--arm", "uvb")
    assert bad.returncode == 2 and "SOXS has no UVB arm" in bad.stderr
    y = _cli("params", "--yaml", "--instrument", "soxs", "--arm", "nir")
    assert "Defaults of SOXS NIR" in y.stdout and "    #   inner-order-pix-sum: [1e+06, 1.2e+06]" in y.stdout and "\n  nir:\n" in y.stdout
    rd, wr = os.pipe()
    os.close(rd)              # the reader is gone before anything is written, as after `| head` has exited
    r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "params"], stdout=wr, capture_output=False,
                       stderr=subprocess.PIPE, text=True)
    os.close(wr)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


def test_log_of_a_refused_run_records_why_and_nothing_else_is_written(sof, tmp_path):
    """Exit 2 writes no product (not even the output directory); the --log FILE asked for is kept and
    records the error, once on stderr and once in the file."""
    log, out = tmp_path / "bad.log", tmp_path / "out"
    r = _cli("run", sof, "-o", out, "--log", log, "--param", "order_deg=0")
    assert r.returncode == 2 and not out.exists()
    text = "[parameter-range] parameter order_deg must be >= 1, got 0"
    assert r.stderr.count(text) == 1, r.stderr
    assert f"ERROR soxs-mflat run: input error: {text}" in log.read_text()
    assert log.read_text().rstrip().endswith("exit code 2 (bad input, nothing written)")


def test_quiet_and_verbose_together_is_a_usage_error(tmp_path):
    p = _cli("run", tmp_path / "none.sof", "-q", "-v", "-o", tmp_path / "out")
    assert p.returncode == 2 and "not allowed with argument" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()


def test_help_lists_exit_codes_and_params_its_ranges(capsys):
    from soxs_mflat.cli import main
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "exit codes: 0 done" in out and "4 --strict-qc" in out and "130 / 143" in out
    assert main(["params"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("stacked_clipping_sigma "))
    assert "> 0, <= 100" in line
    with pytest.raises(SystemExit):   # --yaml --markdown printed the markdown alone
        main(["params", "--yaml", "--markdown"])
    assert "not allowed with argument --yaml" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["simulate", "--instrument", "soxs", "--arm", "vis",
                                                                   "--nflats", "1", "--binning", "2x2", "--out", "{tmp}"]])
def test_every_command_survives_a_closed_pipe(argv, tmp_path):
    """`soxs-mflat simulate ... | head -1` ended in 'internal error: BrokenPipeError' (exit 1) now and then; it
    ends quietly with 141 (128 + SIGPIPE, never 0: that hid a batch's failed set, exit 3, and a run's exit 2)."""
    rd, wr = os.pipe()
    os.close(rd)
    args = [a.replace("{tmp}", str(tmp_path / "sim")) for a in argv]
    r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", *args], stdout=wr, stderr=subprocess.PIPE, text=True)
    os.close(wr)
    assert r.returncode == (141 if argv[0] == "simulate" else 0) and r.stderr == "", (r.returncode, r.stderr)


def test_a_closed_pipe_keeps_the_exit_code_of_a_refused_run(sof, tmp_path):
    """`run ... 2>&1 | head` of a refused run exited 0: its error line met the closed pipe."""
    rd, wr = os.pipe()
    os.close(rd)
    r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "run", str(sof), "-o", str(tmp_path / "o"),
                        "--param", "order_deg=0"], stdout=wr, stderr=wr)
    os.close(wr)
    assert r.returncode in (2, 141)


def test_simulations_refuse_a_used_folder(tmp_path):
    """simulate over an older set exited 0 keeping its extra frames and SOF beside the new truth (two seeds
    mixed); simulate-archive ended in an internal error (astropy's 'File ... already exists')."""
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old_frame.fits").write_bytes(b"")
    for argv in (["simulate", "--instrument", "soxs", "--arm", "vis", "--nflats", "1", "--out", tmp_path / "used"],
                 ["simulate-archive", "--nights", "1", "--out", tmp_path / "used"]):
        r = _cli(*argv)
        assert r.returncode == 2, r.stderr
        assert f"error: {tmp_path / 'used'} is not empty" in r.stderr and "internal error" not in r.stderr
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["old_frame.fits"]


def test_two_directories_are_refused_as_such(sof, tmp_path):
    """`run raw/ calib/` said '[unreadable-fits] raw: not a readable FITS file ([Errno 21] Is a directory)'."""
    raw, calib = tmp_path / "raw", tmp_path / "calib"
    raw.mkdir(), calib.mkdir()
    r = _cli("run", raw, calib, "-o", tmp_path / "out")
    assert r.returncode == 2 and f"{raw}, {calib}: a directory among several inputs" in r.stderr, r.stderr
    assert "unreadable-fits" not in r.stderr and not (tmp_path / "out").exists()


def test_run_plots_none_writes_the_same_fits_without_pdfs_and_replaces_earlier_pdfs(nominal, sof, tmp_path):
    """`run --plots none` (as batch's): the FITS data and qc.json values of the nominal run, no PDF. Over an
    earlier run's directory the old PDFs would describe other products: refused without --overwrite, removed
    with it."""
    import numpy as np
    out = tmp_path / "o"
    r = _cli("run", sof, "-o", out, "--plots", "none", "-q")
    assert r.returncode == 0, r.stderr
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.endswith(".pdf")] and "master_flat_vis.fits" in names
    assert names == {p.name for p in nominal["out"].iterdir() if p.suffix != ".pdf"}
    for name in names - {"qc.json"}:
        with fits.open(out / name) as a, fits.open(nominal["out"] / name) as b:
            for ha, hb in zip(a, b):
                assert (ha.data is None) == (hb.data is None)
                if ha.data is not None:
                    assert np.array_equal(np.asarray(ha.data), np.asarray(hb.data)), (name, ha.name)
    assert [q["value"] for q in json.loads((out / "qc.json").read_text())["qc"]] == [q["value"] for q in nominal["qc"]["qc"]]
    earlier = tmp_path / "earlier"
    r = _cli("run", sof, "-o", earlier, "-q")
    assert r.returncode == 0 and len(list(earlier.glob("*.pdf"))) == 2, r.stderr
    r = _cli("run", sof, "-o", earlier, "--plots", "none", "-q")
    assert r.returncode == 2 and "order_loc_res_vis.pdf" in r.stderr and "--overwrite" in r.stderr, r.stderr
    r = _cli("run", sof, "-o", earlier, "--plots", "none", "-q", "--overwrite")
    assert r.returncode == 0 and not list(earlier.glob("*.pdf")), r.stderr
    assert {p.name for p in earlier.iterdir()} == names


def test_an_unknown_option_of_run_shows_run_usage(tmp_path):
    """argparse leaves unrecognised options to the top-level parser, whose usage lists the commands only."""
    r = _cli("run", "--bogus", "x.sof")
    assert r.returncode == 2 and r.stderr.startswith("usage: soxs-mflat run ") and "--strict-qc" in r.stderr, r.stderr
    assert r.stderr.rstrip().endswith("soxs-mflat run: error: unrecognized arguments: --bogus")
    r = _cli("params", "--bogus")
    assert r.returncode == 2 and r.stderr.startswith("usage: soxs-mflat params "), r.stderr


def test_verbose_shows_the_qc_table_once(nominal):
    """-v printed the QC table on stdout and again on stderr ("INFO: QC:"); the log file keeps it."""
    r = nominal["run"]
    table_row = "INNER ORDER PIX SUM  "   # the table's row, not the "QC range ..." line of the parameters
    assert r.stdout.count(table_row) == 1
    assert table_row not in r.stderr and "product MFLAT" not in r.stderr, r.stderr
    assert nominal["log"].count(table_row) == 1 and "product MFLAT" in nominal["log"]


def test_uvb_product_list_is_aligned(inputs_uvb, tmp_path):
    """The label column was 18 characters wide; UVB's labels run to 19 ("BKGROUND FITS DLAMP")."""
    r = _cli("run", inputs_uvb["sof"], "-o", tmp_path / "o", "--plots", "none")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if str(tmp_path / "o") in ln]
    assert len(lines) == 9 and any("BKGROUND FITS DLAMP" in ln for ln in lines)
    assert len({ln.index(str(tmp_path)) for ln in lines}) == 1, lines


@pytest.mark.parametrize("user", [None, "2"])
def test_the_command_starts_no_blas_thread_pool_unless_asked(user):
    """OpenBLAS's threads spun through every run (6 % of its CPU); the command's first step sets one BLAS
    thread before numpy is imported, and a user's OPENBLAS_NUM_THREADS is kept."""
    code = ("from soxs_mflat._entry import start_process; start_process()\n"
            "import os, numpy\n"
            "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if user:
        env["OPENBLAS_NUM_THREADS"] = user
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    value, threads = r.stdout.split()
    assert value == (user or "1") and int(threads) == (1 if user is None else 2), r.stdout + r.stderr
