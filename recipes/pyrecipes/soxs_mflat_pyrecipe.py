"""PyCPL / pyesorex adapter: the soxs_mflat recipe as a cpl.ui.PyRecipe that delegates to the
soxs-mflat Python package. Point pyesorex at this directory:

    pyesorex --recipe-dir recipes/pyrecipes soxs_mflat flats.sof

Parameters are the recipe parameters of data/parameters.yaml, named soxs.mflat.<name-with-dashes>
(CLI alias <name-with-dashes>); those whose default depends on instrument and arm default to -1,
meaning "the instrument/arm default", as in the esorex plugin.
"""
from __future__ import annotations

import tempfile
from email.utils import parseaddr
from importlib.metadata import metadata
from pathlib import Path

import cpl.ui  # PyCPL (ESO); not python-cpl

from soxs_mflat import __version__, settings
from soxs_mflat.recipe import run_mflat

COLUMNS = [("soxs", "vis"), ("soxs", "nir"), ("xshooter", "uvb"), ("xshooter", "vis"), ("xshooter", "nir")]
# author and contact as the esorex plugin's man page: pyproject.toml's [project] maintainers
AUTHOR, EMAIL = parseaddr(metadata("soxs-mflat").get("Maintainer-email", ""))


def _parameters() -> cpl.ui.ParameterList:
    params = []
    for name, d in settings.definitions().items():
        values = {settings.default(name, i, a) for i, a in COLUMNS}
        default = values.pop() if len(values) == 1 else (-1.0 if d["type"] == "float" else -1)
        p = cpl.ui.ParameterValue(name=f"soxs.mflat.{name.replace('_', '-')}", context="soxs.mflat",
                                  description=d["description"], default=default)
        p.cli_alias = name.replace("_", "-")
        params.append(p)
    return cpl.ui.ParameterList(params)


class soxs_mflat(cpl.ui.PyRecipe):  # noqa: N801 - the recipe name is the class name by convention
    _name = "soxs_mflat"
    _version = __version__
    _author = AUTHOR or "soxs-mflat maintainers"
    _email = EMAIL
    _copyright = "GPL-3.0-or-later"
    _synopsis = "Master flat and order edges for SOXS and X-shooter"
    _description = "Same recipe as `soxs-mflat run` and the esorex plugin soxs_mflat (see docs/recipe.md)."

    def __init__(self) -> None:
        self.parameters = _parameters()

    def run(self, frameset: cpl.ui.FrameSet, settings_: dict) -> cpl.ui.FrameSet:
        for key, value in settings_.items():
            try:
                self.parameters[key].value = value
            except KeyError:
                cpl.core.Msg.warning(self.name, f"ignoring unknown parameter {key}")
        overrides = {}
        for p in self.parameters:
            name = p.name.split(".", 2)[2].replace("-", "_")
            if not (isinstance(p.value, (int, float)) and not isinstance(p.value, bool) and p.value < 0):
                overrides[name] = p.value
        with tempfile.TemporaryDirectory() as tmp:
            sof = Path(tmp) / "input.sof"
            sof.write_text("".join(f"{f.file} {f.tag}\n" for f in frameset))
            result = run_mflat(sof, ".", params=overrides, overwrite=True)
        products = cpl.ui.FrameSet()
        for label, path in result.products.items():
            if path.suffix == ".fits":
                tag = str(cpl.core.PropertyList.load(str(path), 0)["ESO PRO CATG"].value)
                products.append(cpl.ui.Frame(str(path), tag=tag, group=cpl.ui.Frame.FrameGroup.PRODUCT))
        return products
