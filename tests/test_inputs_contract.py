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


def test_outcome_table_of_the_docs_lists_every_rule_under_its_outcome():
    """docs/recipe.md's outcome table (hand-written) names each rule of the contract in the row of its
    outcome, with that outcome's CLI exit and esorex exit; a rule added to the contract and not documented,
    or documented under another exit code, fails here."""
    import re

    from soxs_mflat.contract import section
    c = section("inputs")
    doc = (PKG.parent.parent / "docs" / "recipe.md").read_text()
    rows = {}
    for line in doc.splitlines():
        m = re.match(r"\| ([a-z ]+) \| (\d+) \| (\d+) `(CPL_ERROR_\w+)` \| (.*) \|$", line)
        if m:
            rows[m[1].replace(" ", "-")] = (int(m[2]), int(m[3]), m[4], set(re.findall(r"`([a-z0-9-]+)`", m[5])))
    assert set(rows) == set(c["outcomes"]), sorted(rows)
    for name, o in c["outcomes"].items():
        assert rows[name][:3] == (o["cli_exit"], o["esorex_exit"], o["cpl_error"]), name
    for rule, spec in c["rules"].items():
        assert rule in rows[spec["outcome"]][3], (rule, spec["outcome"])
    named = set().union(*(r[3] for r in rows.values())) - {"--check-sof-exist"}   # esorex's option, in a note
    assert named <= set(c["rules"]), sorted(named - set(c["rules"]))


def test_every_rule_id_raised_by_python_is_in_the_contract():
    """VerificationError refuses a rule id the contract lacks (the plugin, generated from the contract,
    could not give it an outcome): parameter-range and parameter-limit were raised by the Python front end
    only, and the plugin mapped them to exit 10 instead of the CLI's class (illegal, 14)."""
    import re

    import pytest
    from soxs_mflat.contract import section
    from soxs_mflat.rules import VerificationError
    with pytest.raises(LookupError, match="no-such-rule"):
        VerificationError("no-such-rule", "x")
    used = set()
    for path in PKG.rglob("*.py"):
        used |= set(re.findall(r'(?:VerificationError|rule_error)\(\s*"([a-z0-9-]+)"', path.read_text()))
    assert {"parameter-range", "parameter-limit", "missing-file"} <= used
    assert used <= set(section("inputs")["rules"]), sorted(used - set(section("inputs")["rules"]))
