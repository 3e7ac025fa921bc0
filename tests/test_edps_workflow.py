"""The EDPS workflow package workflows/soxs, driven through the entry points public EDPS workflow
tests use (WorkflowManager(None).create_workflow(module), BaseClassificationRule.is_classified):
against real EDPS where it is importable, else against a STRICT STAND-IN of its API
(tests/edps_stub.py, not EDPS; it cannot run EDPS's association). Grouping is checked on a
simulated archive against the organiser; tests marked "stub" read what only the stand-in records."""
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from astropy.io import fits

import edps_stub
from soxs_mflat import settings
from soxs_mflat.organise import organise
from soxs_mflat.recipe import PRODUCT_CATGS, run_mflat
from soxs_mflat.simulate.run import simulate_set

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "build" / "esorex" / "recipes"
ARMS = ("UVB", "VIS", "NIR")


def _real_edps() -> bool:
    try:
        importlib.import_module("edps.generator.workflow_manager")
        return not getattr(sys.modules["edps"], "__doc__", "").startswith("STAND-IN")
    except ImportError:
        return False


@pytest.fixture
def wkf(monkeypatch):
    """The imported workflow module (with real EDPS, or the stand-in installed)."""
    if not _real_edps():
        edps_stub.install(monkeypatch)
    monkeypatch.syspath_prepend(str(ROOT / "workflows"))
    for name in [n for n in sys.modules if n == "soxs" or n.startswith("soxs.")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("soxs.soxs_wkf")


@pytest.fixture
def stub(wkf):
    if _real_edps():
        pytest.skip("reads what the stand-in records (real EDPS is installed: the other tests use it)")
    return edps_stub


def _flow(module):
    from edps.generator.workflow_manager import WorkflowManager
    return WorkflowManager(None).create_workflow(module)


def edps_header(h: fits.Header) -> dict:
    """A FITS header as EDPS keywords: lower case, 'ESO ' dropped, spaces as dots."""
    out = {}
    for card in h.cards:
        k = card.keyword
        k = k[4:] if k.startswith("ESO ") else k
        out[k.lower().replace(" ", ".")] = card.value
    return out


def _known_recipes() -> set[str]:
    if shutil.which("esorex") and (PLUGIN_DIR / "soxs_mflat.so").exists():
        out = subprocess.run(["esorex", f"--recipe-dir={PLUGIN_DIR}", "--recipes"], capture_output=True, text=True)
        return {line.split(":")[0].strip() for line in out.stdout.splitlines() if ":" in line}
    from soxs_mflat.products import RECIPE
    return {RECIPE}


def test_every_recipe_exists(wkf):
    flow = _flow(wkf)
    assert sorted(t.name for t in flow.tasks) == ["mflat_nir", "mflat_uvb", "mflat_vis"]
    assert {t.command for t in flow.tasks} <= _known_recipes()
    assert all(t.min_group_size == 1 for t in flow.tasks)


def _header(p: Path) -> fits.Header:
    """A raw frame's header: HDU 1 of a tile-compressed (.fz) file, else the primary."""
    return fits.getheader(p, 1 if p.name.endswith(".fz") else 0)


def _jobs(flow, wkf, files: list[Path]) -> dict[str, set]:
    """Raw flats classified by the workflow's rules, grouped by each task's grouping keywords (EDPS
    groups main-input files with equal values of them; this partition is computed here, not by EDPS)."""
    from soxs.soxs_classification import raw_flats
    jobs: dict[str, set] = {}
    for p in files:
        try:
            h = edps_header(_header(p))
        except OSError:      # the HTML page saved as .fits: no FITS file, classified as nothing
            continue
        if not any(r.is_classified(h) for r in raw_flats):
            continue
        t = next(t for t in flow.tasks if t.name == f"mflat_{h['seq.arm'].lower()}")
        key = (t.name,) + tuple(h.get(k) for k in t.grouping_keywords)
        jobs.setdefault(key, set()).add(p.resolve())
    return jobs


def test_jobs_are_the_organisers_sets(wkf, sim_archive):
    """On the simulated archive the workflow's jobs are the organiser's sets: UVB D2 (15 s) and QTH
    (4 s) flats in one job (they were split by EXPTIME), the two VIS binnings apart."""
    out, truth = sim_archive
    files = sorted(p for p in (out / "archive").rglob("*.fits*"))
    jobs = _jobs(_flow(wkf), wkf, files)
    sets = {frozenset(f.path.resolve() for f in s.flats) for s in organise(out / "archive").sets}
    assert {frozenset(v) for v in jobs.values()} == sets
    uvb = [v for k, v in jobs.items() if k[0] == "mflat_uvb"]
    assert len(uvb) == 1 and {_header(p)["EXPTIME"] for p in uvb[0]} == {4.0, 15.0}


def test_classification_of_every_archive_frame(wkf, sim_archive):
    """A frame the organiser uses is classified by exactly the rule named by its canonical SOF tag."""
    from soxs_mflat.frames import accepted_tags
    from soxs.soxs_classification import bad_pixel_map, lamp_off, master_bias, order_tab, raw_flats
    rules = raw_flats + lamp_off + [d[a] for d in (master_bias, order_tab, bad_pixel_map) for a in d]
    out, _ = sim_archive
    for s in organise(out / "archive").sets:
        for f in s.frames():
            h = edps_header(f.header)
            names = {r.name for r in rules if r.is_classified(h)}
            assert names == {accepted_tags(f)[0]}, (f.path.name, names)


def test_calibrations_matched_on_the_contracts_setup_keys(stub, wkf):
    """stub: master biases match on binning and readout, every calibration on the contract's keys."""
    from soxs.soxs_datasources import CONTRACT, edps_keywords
    by_name = {s.names[0]: s for s in stub.SOURCES}
    for arm in ("UVB", "VIS"):
        kws = by_name[f"MASTER_BIAS_{arm}"].match[0][0]
        assert {"det.binx", "det.win1.binx", "det.biny", "det.win1.biny", "det.read.curid",
                "det.read.speed"} <= set(kws)
    for kind, spec in CONTRACT["associate"].items():
        for arm in spec.get("arms", ARMS):
            assert by_name[f"{kind}_{arm}"].match[0][0] == edps_keywords(spec["match"], arm)
    assert "exptime" not in by_name["FLAT_UVB"].grouping and "exptime" in by_name["FLAT_VIS"].grouping


def test_product_classifications_are_pro_catgs_the_recipe_writes(stub, wkf, tmp_path):
    w = simulate_set("soxs", "vis", tmp_path / "set", nflats=2, seed=1)
    res = run_mflat(w["sof"], tmp_path / "out", plots=False)
    written = {fits.getval(p, "ESO PRO CATG") for p in res.products.values() if p.suffix == ".fits"}
    rule_names = {r.name for r in stub.RULES}
    assert written <= rule_names
    for r in stub.RULES:
        if r.name.startswith(PRODUCT_CATGS):
            assert r.match == {"pro.catg": r.name}
            assert r.name.rsplit("_", 1)[0] in PRODUCT_CATGS


def test_parameters_yaml_names_real_recipe_parameters(wkf):
    data = yaml.safe_load((ROOT / "workflows" / "soxs" / "soxs_parameters.yaml").read_text())
    real = {f"soxs.mflat.{n.replace('_', '-')}" for n in settings.definitions()}
    if shutil.which("esorex") and (PLUGIN_DIR / "soxs_mflat.so").exists():
        out = subprocess.run(["esorex", f"--recipe-dir={PLUGIN_DIR}", "--man-page", "soxs_mflat"], capture_output=True,
                             text=True).stdout
        assert all(f"--{n.split('.', 2)[2]}" in out for n in real)
    tasks = {t.name for t in _flow(wkf).tasks}
    for set_name, pset in data.items():
        assert set(pset["recipe_parameters"]) == tasks, set_name
        for task_name, params in pset["recipe_parameters"].items():
            assert set(params) <= real, set(params) - real


def test_grouping_keywords_exist_in_raw_headers(wkf, sim_archive):
    """Every grouping keyword of a task is in the raw flats of its arm (one of a key's alternatives:
    SOXS and X-shooter name binning and slit differently)."""
    from soxs.soxs_datasources import CONTRACT, grouping_keywords
    out, truth = sim_archive
    for s in truth["sets"]:
        h = edps_header(_header(out / "archive" / s["flats"][0]))
        kws = grouping_keywords(s["arm"])
        assert {"instrume", "seq.arm", "tpl.start", "dpr.type", "exptime"} <= set(h)
        for name in ("readout", "slit") + (("binx", "biny") if s["arm"] != "NIR" else ()):
            edps = CONTRACT["keys"][name]["edps"]
            alts = edps[s["arm"]] if isinstance(edps, dict) else edps
            assert any(k in h for k in alts) and set(alts) <= set(kws), (name, s["id"])


def test_stub_rejects_unknown_api():
    m = edps_stub.module()
    with pytest.raises(AttributeError, match="not part of the documented EDPS builder API"):
        m.with_group_keywords  # noqa: B018 - does not exist in EDPS 1.7.1
    with pytest.raises(AttributeError):
        m.task("x").with_max_group_size(3)
