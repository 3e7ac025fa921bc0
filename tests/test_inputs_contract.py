"""The input contract (data/contract/inputs.yaml) and the module boundaries around it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "python" / "soxs_mflat"


def test_production_code_never_imports_the_simulator():
    """Importing every module of the package outside simulate/ (the recipe, the CLI, products, ...)
    loads no module of soxs_mflat.simulate: instrument facts live in soxs_mflat.instruments."""
    mods = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in ("__init__", "demo"))
    code = ("import sys, importlib\n"
            f"for m in {mods!r}: importlib.import_module('soxs_mflat.' + m)\n"
            "bad = sorted(m for m in sys.modules if m.startswith('soxs_mflat.simulate'))\n"
            "print(bad); sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "instruments" in mods and "recipe" in mods and "cli" in mods


def test_edps_classification_agrees_with_the_front_ends(monkeypatch):
    """Every raw EDPS rule, read as a header, is classified by the Python front end into a kind whose
    canonical SOF tag is the rule's name; the lamp-off rules give LAMPOFF, and every arm is covered."""
    import importlib
    import edps_stub
    from astropy.io import fits
    from soxs_mflat.frames import Frame, classify, expected_tag
    monkeypatch.setitem(sys.modules, "edps", edps_stub.module())
    monkeypatch.syspath_prepend(str(PKG.parent.parent / "workflows"))
    for name in [n for n in sys.modules if n == "soxs" or n.startswith("soxs.")]:
        monkeypatch.delitem(sys.modules, name)
    cls = importlib.import_module("soxs.soxs_classification")
    dicb = {"instrume": "INSTRUME", "dpr.catg": "HIERARCH ESO DPR CATG", "dpr.type": "HIERARCH ESO DPR TYPE",
            "dpr.tech": "HIERARCH ESO DPR TECH", "seq.arm": "HIERARCH ESO SEQ ARM"}
    arms = set()
    for rule in cls.raw_flats + cls.lamp_off:
        h = fits.Header({dicb[k]: v for k, v in rule.match.items()})
        f = Frame(Path("x.fits"), h, classify(h))
        assert (f.kind == "LAMPOFF") == (rule in cls.lamp_off)
        assert expected_tag(f) == rule.name
        arms.add((h["INSTRUME"], h["HIERARCH ESO SEQ ARM"]))
    assert arms == {("SOXS", "VIS"), ("SOXS", "NIR"), ("XSHOOTER", "UVB"), ("XSHOOTER", "VIS"), ("XSHOOTER", "NIR")}


def test_package_yaml_parses_as_pyyaml_safe_load():
    """The contract and the parameter definitions are read with libyaml when available: the same values."""
    from importlib import resources

    import yaml
    from soxs_mflat.contract import package_yaml
    root = resources.files("soxs_mflat").joinpath("data")
    files = [root.joinpath("parameters.yaml"), *root.joinpath("contract").iterdir()]
    texts = [f.read_text() for f in files if f.name.endswith(".yaml")]
    assert len(texts) >= 5
    for text in texts:
        assert package_yaml(text) == yaml.safe_load(text)
