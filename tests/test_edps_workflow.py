"""The EDPS workflow package workflows/soxs, checked against a STRICT STAND-IN of the EDPS builder
API (tests/edps_stub.py, not EDPS) and, where EDPS is importable, against the real WorkflowManager."""
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import edps_stub
from soxs_mflat import settings
from soxs_mflat.recipe import PRODUCT_CATGS, run_mflat
from soxs_mflat.simulate.run import simulate_set

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "build" / "esorex" / "recipes"


@pytest.fixture
def workflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "edps", edps_stub.module())
    monkeypatch.syspath_prepend(str(ROOT / "workflows"))
    for name in [n for n in sys.modules if n == "soxs" or n.startswith("soxs.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.import_module("soxs.soxs_wkf")
    return edps_stub


def _known_recipes() -> set[str]:
    if shutil.which("esorex") and (PLUGIN_DIR / "soxs_mflat.so").exists():
        out = subprocess.run(["esorex", f"--recipe-dir={PLUGIN_DIR}", "--recipes"], capture_output=True, text=True)
        return {line.split(":")[0].strip() for line in out.stdout.splitlines() if ":" in line}
    from soxs_mflat.products import RECIPE
    return {RECIPE}


def test_every_recipe_exists(workflow):
    assert [t.name for t in workflow.TASKS] == ["mflat"]
    assert {t.recipe for t in workflow.TASKS} <= _known_recipes()


def test_product_classifications_are_pro_catgs_the_recipe_writes(workflow, tmp_path):
    w = simulate_set("soxs", "vis", tmp_path / "set", nflats=2, seed=1)
    res = run_mflat(w["sof"], tmp_path / "out")
    from astropy.io import fits
    written = {fits.getval(p, "ESO PRO CATG") for p in res.products.values() if p.suffix == ".fits"}
    rule_names = {r.name for r in workflow.RULES}
    assert written <= rule_names
    for r in workflow.RULES:
        if r.name.startswith(PRODUCT_CATGS):
            assert r.match == {"pro.catg": r.name}
            assert r.name.rsplit("_", 1)[0] in PRODUCT_CATGS


def test_parameters_yaml_names_real_recipe_parameters(workflow):
    data = yaml.safe_load((ROOT / "workflows" / "soxs" / "soxs_parameters.yaml").read_text())
    real = {f"soxs.mflat.{n.replace('_', '-')}" for n in settings.definitions()}
    if shutil.which("esorex") and (PLUGIN_DIR / "soxs_mflat.so").exists():
        out = subprocess.run(["esorex", f"--recipe-dir={PLUGIN_DIR}", "--man-page", "soxs_mflat"], capture_output=True,
                             text=True).stdout
        assert all(f"--{n.split('.', 2)[2]}" in out for n in real)
    tasks = {t.name for t in workflow.TASKS}
    for set_name, pset in data.items():
        for task_name, params in pset["recipe_parameters"].items():
            assert task_name in tasks, (set_name, task_name)
            assert set(params) <= real, set(params) - real


def test_grouping_and_match_keywords_exist_in_raw_headers(workflow, tmp_path):
    from astropy.io import fits
    w = simulate_set("xshooter", "nir", tmp_path / "set", nflats=1, seed=1)
    h = fits.getheader(w["raw"][0])
    src = next(s for s in workflow.SOURCES if s.names == ["FLAT"])
    dicb = lambda k: k.upper() if "." not in k else "ESO " + k.replace(".", " ").upper()  # noqa: E731
    assert all(dicb(k) in h for k in ("instrume", "seq.arm", "exptime", "dpr.type", "dpr.tech", "dpr.catg"))
    assert set(src.grouping) >= {"instrume", "seq.arm", "exptime"}
    flat_rule = next(r for r in workflow.RULES if r.name == "LAMP,FLAT_NIR" and r.match["instrume"] == "XSHOOTER")
    assert all(str(h[dicb(k)]) == v for k, v in flat_rule.match.items())


def test_stub_rejects_unknown_api(monkeypatch):
    m = edps_stub.module()
    with pytest.raises(AttributeError, match="not part of the documented EDPS builder API"):
        m.with_group_keywords  # noqa: B018 - does not exist in EDPS 1.7.1
    with pytest.raises(AttributeError):
        m.task("x").with_max_group_size(3)


def test_real_edps_workflow_manager():
    wm = pytest.importorskip("edps.generator.workflow_manager", reason="EDPS is not installed (ESO-only download)")
    sys.path.insert(0, str(ROOT / "workflows"))
    mod = importlib.import_module("soxs.soxs_wkf")
    flow = wm.WorkflowManager(config=None).create_workflow(mod)
    assert {t.command for t in flow.tasks} == {"soxs_mflat"}
