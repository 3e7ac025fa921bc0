"""The PyCPL PyRecipe adapter: runs only where ESO's PyCPL is importable (it is not on PyPI)."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pycpl():
    cpl = pytest.importorskip("cpl", reason="PyCPL is not installed (ESO distributes it; not on PyPI)")
    if not hasattr(cpl, "ui"):
        pytest.skip("the installed 'cpl' module is python-cpl, not ESO's PyCPL: the PyRecipe adapter needs PyCPL")
    return cpl


def test_pyrecipe_runs_and_returns_products(tmp_path, monkeypatch):
    cpl = _pycpl()
    from soxs_mflat.simulate.run import simulate_set
    spec = importlib.util.spec_from_file_location("soxs_mflat_pyrecipe",
                                                  ROOT / "recipes" / "pyrecipes" / "soxs_mflat_pyrecipe.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["soxs_mflat_pyrecipe"] = mod
    spec.loader.exec_module(mod)
    w = simulate_set("soxs", "vis", tmp_path / "set", nflats=3, seed=2)
    monkeypatch.chdir(tmp_path)
    recipe = mod.soxs_mflat()
    products = recipe.run(cpl.ui.FrameSet(str(w["sof"])), {"soxs.mflat.order-deg": 3})
    tags = sorted(f.tag for f in products)
    assert tags == ["MASTER_FLAT_VIS", "MFLAT_BKGROUND_VIS", "ORDER_TAB_VIS"]
    # author and contact as the esorex plugin's man page (pyproject.toml's maintainers), not a placeholder
    maint = re.search(r'maintainers = \[\{ name = "([^"]+)", email = "([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert (recipe._author, recipe._email) == maint.groups()
