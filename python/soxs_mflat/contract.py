"""The one contract every front end reads or is generated from (Python package, esorex plugin
header, EDPS workflow, organiser): ``data/contract/<section>.yaml``.

Sections (one file each, so that each can evolve on its own):
``inputs`` (classification of frames, SOF tags and dialects, verification rules and their ids,
binning keys and fallbacks, tolerances), ``products`` (file names, PRO CATGs, data-product keys),
``qc`` (QC names, units, default ranges), ``organise`` (grouping and association of sets).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


def package_yaml(text: str) -> Any:
    """The package's own YAML files, parsed by libyaml when PyYAML has it (6-9x faster; the same
    constructors, so the same values: tests/test_inputs_contract.py compares)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@lru_cache(maxsize=None)
def section(name: str) -> Any:
    """The parsed ``data/contract/<name>.yaml`` (cached; treat as read-only)."""
    path = resources.files("soxs_mflat").joinpath(f"data/contract/{name}.yaml")
    return package_yaml(path.read_text())
