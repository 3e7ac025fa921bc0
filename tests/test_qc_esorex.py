"""QC in the esorex plugin: the QC table and one warning per out-of-range value in esorex's log, the same
failures as the Python CLI, qc.json among the products; the man page's version and contact."""
import json
import re
import subprocess
import sys

import pytest

from soxs_mflat import __version__
from soxs_mflat.simulate.run import simulate_set
from test_esorex import esorex, needs_esorex

BAD_FIT = ["--order-deg=1", "--disp-axis-deg=1"]   # straight edges, linear in the order (0 is refused): X RES SD 17 >> 0.37


@needs_esorex
def test_plugin_logs_qc_table_and_warns_like_the_cli(tmp_path):
    w = simulate_set("soxs", "vis", tmp_path / "set", nflats=3, seed=5)
    out = tmp_path / "es"
    out.mkdir()
    r = esorex(f"--output-dir={out}", f"--log-dir={out}", "soxs_mflat", *BAD_FIT, w["sof"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr            # out-of-range QC is not fatal
    log = r.stdout + r.stderr
    for name in ("ORDEXP90", "X RES SD", "COLDPIX FRAC", "INNER ORDER PIX SUM"):
        assert re.search(rf"\[ INFO  \] soxs_mflat:\s+{name}\s+\S+", log), name   # one table row per QC
    warned = re.findall(r"\[WARNING\] soxs_mflat: QC (.+?) = \S+ is outside its acceptable range", log)
    cli = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "run", str(w["sof"]), "-o", str(tmp_path / "py"),
                          "-q", "--strict-qc", "--param", "order_deg=1", "--param", "disp_axis_deg=1"],
                         capture_output=True, text=True)
    assert cli.returncode == 4
    failed = re.findall(r"QC (.+?) = \S+ is outside", cli.stderr)
    assert "X RES SD" in warned and warned == failed
    rec = json.loads((out / "qc.json").read_text())
    assert rec["front_end"] == "esorex" and rec["passed"] is False and rec["n_failed"] == len(warned)
    assert [q["name"] for q in rec["qc"] if q["flag"] == "fail"] == warned


@needs_esorex
def test_man_page_version_and_contact():
    man = esorex("--man-page", "soxs_mflat").stdout
    assert f"soxs_mflat -- version {__version__}" in man
    assert "example.org" not in man and "soxs-mflat maintainers" in man


@needs_esorex
def test_debug_log_records_inputs_and_parameters_as_the_clis_log(tmp_path):
    """esorex --msg-level=debug gave timings only: it now lists every input (group, tag, path) and every
    resolved parameter, with the values the CLI's --log records for the same SOF and option; the QC
    table has the CLI's separator line."""
    w = simulate_set("soxs", "vis", tmp_path / "set", nflats=2, seed=4)
    out = tmp_path / "es"
    out.mkdir()
    r = esorex(f"--output-dir={out}", f"--log-dir={out}", "--msg-level=debug", "soxs_mflat", "--order-deg=2",
               w["sof"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    log = r.stdout + r.stderr
    es_inputs = re.findall(r"soxs_mflat: input (raw|calib) +(\S+) +(\S+)", log)
    sof = [line.split() for line in w["sof"].read_text().splitlines() if line.strip()]
    assert sorted((tag, path) for _, tag, path in es_inputs) == sorted((tag, path) for path, tag, *_ in sof)
    assert {tag for g, tag, _ in es_inputs if g == "raw"} == {"LAMP,FLAT_VIS"}
    py_log = tmp_path / "py.log"
    cli = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "run", str(w["sof"]), "-o", str(tmp_path / "py"),
                          "-q", "--param", "order_deg=2", "--log", str(py_log)], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    py = dict(re.findall(r"INFO parameter (\w+) = (\S+)", py_log.read_text()))
    es = dict(re.findall(r"soxs_mflat: parameter (\w+) = (\S+)", log))
    assert set(es) == set(py) and es["order_deg"] == "2"
    def num(v: str) -> float:   # Python writes True / 5.0, the plugin true / 5
        return {"true": 1.0, "false": 0.0}[v.lower()] if v.lower() in ("true", "false") else float(v)
    assert {k: num(v) for k, v in es.items()} == {k: num(v) for k, v in py.items()}
    assert re.search(r"soxs_mflat:\s+QC\s+value unit\s+range\s+flag\n.*soxs_mflat:\s+-{76}\n", log)
