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
