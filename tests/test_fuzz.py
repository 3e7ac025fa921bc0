"""Seeded, time-bounded fuzzing of both front ends (the Python CLI and esorex) with corrupted raw
frames, calibrations, order tables and SOFs (tests/fuzz.py): every outcome is a success or a clean
error (CLI: exit 2/3 with a one-line message, exit 2 naming a file of the set; esorex: a CPL error code
with an ERROR message); a traceback, an internal error, a signal or a hang fails; a failed run leaves no
product. The tallies are printed (pytest -s) and recorded in docs/recipe.md."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import fuzz
from soxs_mflat.simulate.run import simulate_set
from test_esorex import HAVE_ESOREX, PLUGIN_DIR

SEED = int(os.environ.get("SOXS_FUZZ_SEED", "14"))
BUDGET_S = float(os.environ.get("SOXS_FUZZ_SECONDS", "55"))   # per front end
MAX_CASES = int(os.environ.get("SOXS_FUZZ_CASES", "400"))   # with SOXS_FUZZ_SECONDS large: a fixed N
CASE_TIMEOUT_S = 60.0
PRODUCT_GLOB = ("master_flat_*", "order_tab_*", "mflat_bkground_*")


@pytest.fixture(scope="module")
def good_set(module_tmp):
    w = simulate_set("soxs", "vis", module_tmp("fuzzset"), nflats=2, binning="2x2", seed=14)
    lines = [ln for ln in Path(w["sof"]).read_text().splitlines() if "BP_MAP" not in ln]   # fewer files to read
    sof = Path(w["sof"]).with_name("fuzz.sof")
    sof.write_text("\n".join(lines) + "\n")
    return sof


def _products(d: Path) -> list[str]:
    return sorted(p.name for g in PRODUCT_GLOB for p in d.glob(g)) if d.exists() else []


def _judge_cli(r: dict, case: fuzz.Case, out: Path) -> str:
    err = r["stderr"]
    if r["hung"]:
        return "hang"
    if r["rc"] < 0:
        return f"signal {-r['rc']}"
    if "Traceback" in err or "internal error" in err:
        return "traceback"
    if r["rc"] in (0, 4):
        return "success"
    if r["rc"] not in (2, 3):
        return f"exit {r['rc']}"
    if out.exists():   # exit 2/3 promise that nothing was written, not even the output directory
        return "left files"
    if r["rc"] == 2 and not fuzz.names_in(err):
        return "no file named"
    return "clean error"


def _forget(case: fuzz.Case, out: Path) -> None:
    """A good case's copy and products removed at once (200 cases kept ~2 GB); bad ones stay to be read."""
    shutil.rmtree(case.sof.parent, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)


def _report(front: str, tally: Counter, bad: list) -> None:
    print(f"\nfuzz {front}: seed {SEED}, {sum(tally.values())} cases: " +
          ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    for case, verdict, tail in bad[:20]:
        print(f"  {verdict}: {case.name}\n    {tail}")


def test_fuzz_cli(good_set, tmp_path):
    rng = random.Random(SEED)
    drv = subprocess.Popen([sys.executable, str(Path(fuzz.__file__)), str(CASE_TIMEOUT_S)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    tally, bad = Counter(), []
    t0 = time.monotonic()
    try:
        for i in range(MAX_CASES):
            if time.monotonic() - t0 > BUDGET_S:
                break
            case = fuzz.make_case(good_set, tmp_path / "cases", rng, i)
            out = tmp_path / "out" / f"{i:03d}"
            drv.stdin.write(json.dumps({"argv": ["run", str(case.sof), "-o", str(out), "-q"],
                                        "out": str(tmp_path / "log" / f"{i:03d}")}) + "\n")
            drv.stdin.flush()
            r = json.loads(drv.stdout.readline())
            verdict = _judge_cli(r, case, out)
            tally[verdict] += 1
            if verdict not in ("success", "clean error"):
                bad.append((case, verdict, r["stderr"].strip()[-600:]))
            else:
                _forget(case, out)
    finally:
        drv.stdin.close()
        drv.wait(30)
        drv.stdout.close()
    _report("CLI", tally, bad)
    assert sum(tally.values()) >= 10, "too few cases ran in the time budget"
    assert not bad, f"{len(bad)} bad outcomes: " + "; ".join(f"{v}: {c.name}" for c, v, _ in bad[:10])


def _esorex(case: fuzz.Case, out: Path) -> dict:
    out.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        p = subprocess.run(["esorex", f"--recipe-dir={PLUGIN_DIR}", f"--output-dir={out}", f"--log-dir={out}",
                            "soxs_mflat", str(case.sof)], cwd=out, capture_output=True, text=True,
                           errors="replace", timeout=CASE_TIMEOUT_S)
        return {"rc": p.returncode, "hung": False, "stderr": p.stdout + p.stderr, "seconds": time.monotonic() - t0}
    except subprocess.TimeoutExpired:
        return {"rc": 0, "hung": True, "stderr": "", "seconds": CASE_TIMEOUT_S}


def _judge_esorex(r: dict, out: Path) -> str:
    if r["hung"]:
        return "hang"
    if r["rc"] < 0 or r["rc"] >= 128:
        return f"signal {r['rc']}"
    if r["rc"] == 0:
        return "success"
    if _products(out) or list(out.glob(".soxs-mflat*")):
        return "left files"
    if "ERROR" not in r["stderr"]:
        return "no message"
    return "clean error"


@pytest.mark.skipif(not HAVE_ESOREX, reason=f"esorex or the plugin ({PLUGIN_DIR}/soxs_mflat.so) is missing: "
                    "run scripts/setup.sh as root")
def test_fuzz_esorex(good_set, tmp_path):
    rng = random.Random(SEED + 1)
    tally, bad = Counter(), []
    t0 = time.monotonic()
    for i in range(MAX_CASES):
        if time.monotonic() - t0 > BUDGET_S:
            break
        case = fuzz.make_case(good_set, tmp_path / "cases", rng, i)
        out = tmp_path / "out" / f"{i:03d}"
        r = _esorex(case, out)
        verdict = _judge_esorex(r, out)
        tally[verdict] += 1
        if verdict not in ("success", "clean error"):
            bad.append((case, verdict, r["stderr"].strip()[-600:]))
        else:
            _forget(case, out)
    _report("esorex", tally, bad)
    assert sum(tally.values()) >= 10, "too few cases ran in the time budget"
    assert not bad, f"{len(bad)} bad outcomes: " + "; ".join(f"{v}: {c.name}" for c, v, _ in bad[:10])


@pytest.mark.skipif(not HAVE_ESOREX, reason=f"esorex or the plugin ({PLUGIN_DIR}/soxs_mflat.so) is missing: "
                    "run scripts/setup.sh as root")
@pytest.mark.parametrize("key, value", [("GCOUNT", "-1"), ("PCOUNT", "-1"), ("NAXIS1", "-1"), ("NAXIS", "999"),
                                        ("PCOUNT", "99999999999999999"), ("BITPIX", "T"), ("BITPIX", "'twenty  '"),
                                        ("NAXIS2", "1.5"), ("BITPIX", "-2147483649")])
def test_structural_cards_of_an_extension_give_clean_errors(good_set, tmp_path, key, value):
    """Seed 15 found esorex looping for ever on a master bias extension with GCOUNT = -1 (the plugin's
    completeness check walked the file backwards; astropy loops too when it loads every HDU at once), seed 16
    a traceback on BITPIX = T: both front ends now answer with a clean error."""
    lines = [ln for ln in good_set.read_text().splitlines() if ln.strip()]
    bias = next(ln.split()[0] for ln in lines if "MASTER_BIAS" in ln.split()[1])
    data = bytearray(Path(bias).read_bytes())
    start, end = fuzz.header_spans(bytes(data))[1]   # the first extension (ERRS or QUAL)
    at = next(p for p in range(start, end, fuzz.CARD) if data[p:p + 8].decode().strip() == key)
    fuzz._set_card(data, at, value)
    bad = tmp_path / "MASTER_BIAS_VIS.fits"
    bad.write_bytes(bytes(data))
    sof = tmp_path / "set.sof"
    sof.write_text("".join(f"{bad if ln.split()[0] == bias else ln.split()[0]} {ln.split()[1]}\n" for ln in lines))
    case = fuzz.Case(f"{key} = {value}", sof, bad.name)
    r = _esorex(case, tmp_path / "es")
    assert _judge_esorex(r, tmp_path / "es") in ("clean error", "success"), r["stderr"][-800:]
    p = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "run", str(sof), "-o", str(tmp_path / "py"), "-q"],
                       capture_output=True, text=True, timeout=CASE_TIMEOUT_S)
    assert p.returncode in (0, 2, 3) and "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
