"""Data sources, built from the organiser's contract (python/soxs_mflat/data/contract/organise.yaml),
so that EDPS groups raw flats and matches calibrations exactly as ``soxs-mflat organise`` does:

- one flat data source per arm, grouped by the contract's ``group_by`` keys (instrument, arm,
  binning, readout, slit, exposure time, lamp, night) minus the keys an arm's ``lamps_together``
  drops (X-shooter UVB: D2 and QTH flats, of different exposure times, make one job);
- calibrations matched on the contract's ``associate`` keys (binning and readout for master biases,
  not instrument and arm only), the closest in time within its ``max_days``.

EDPS has no "night" keyword: the night of a set is its template (``tpl.start``), the finer of the two.
"""
from pathlib import Path

import yaml
from edps import ONE_DAY, SAME_NIGHT, UNLIMITED, data_source

from .soxs_classification import (ARMS, bad_pixel_map, flat_soxs_nir, flat_soxs_vis, flat_xsh_nir, flat_xsh_vis,
                                  dflat_xsh_uvb, qflat_xsh_uvb, lamp_off, master_bias, master_dark, order_tab)

NIGHT_KEYWORD = "tpl.start"
LAMP_KEYWORD = "dpr.type"
TIME_RANGES = {0.5: SAME_NIGHT, 1.0: ONE_DAY, None: UNLIMITED}   # the contract's max_days


def _contract() -> dict:
    """organise.yaml from the source tree beside this workflow, else from the installed package."""
    here = Path(__file__).resolve().parents[2] / "python" / "soxs_mflat" / "data" / "contract" / "organise.yaml"
    if here.exists():
        return yaml.safe_load(here.read_text())
    from importlib import resources
    return yaml.safe_load(resources.files("soxs_mflat").joinpath("data/contract/organise.yaml").read_text())


CONTRACT = _contract()


def edps_keywords(names, arm: str) -> list:
    """EDPS keywords of the contract's logical keys, for one arm."""
    out = []
    for name in names:
        if name == "night":
            out.append(NIGHT_KEYWORD)
        elif name == "lamp":
            out.append(LAMP_KEYWORD)
        else:
            edps = CONTRACT["keys"][name]["edps"]
            out += edps[arm] if isinstance(edps, dict) else edps
    return out


def grouping_keywords(arm: str) -> list:
    drop = set()
    for inst_arm, spec in CONTRACT["lamps_together"].items():
        if inst_arm.split()[1] == arm:
            drop |= set(spec["ungrouped"])
    return edps_keywords([k for k in CONTRACT["group_by"] if k not in drop], arm)


def match_keywords(kind: str, arm: str) -> list:
    return edps_keywords(CONTRACT["associate"][kind]["match"], arm)


FLAT_RULES = {"UVB": [dflat_xsh_uvb, qflat_xsh_uvb], "VIS": [flat_soxs_vis, flat_xsh_vis],
              "NIR": [flat_soxs_nir, flat_xsh_nir]}


def _flats(arm: str):
    return (data_source([f"FLAT_{arm}"])
            .with_classification_rule(*FLAT_RULES[arm])
            .with_grouping_keywords(grouping_keywords(arm))
            .with_setup_keywords(edps_keywords(["instrument", "arm", "binx", "biny", "readout", "slit"], arm))
            .with_min_group_size(1)
            .build())


def _calib(kind: str, arm: str, rules):
    spec = CONTRACT["associate"][kind]
    return (data_source([f"{kind}_{arm}"])
            .with_classification_rule(*rules)
            .with_match_keywords(match_keywords(kind, arm), time_range=TIME_RANGES[spec["max_days"]], level=0)
            .build())


flats = {arm: _flats(arm) for arm in ARMS}
order_centre_tables = {arm: _calib("ORDER_TAB", arm, [order_tab[arm]]) for arm in ARMS}
master_biases = {arm: _calib("MASTER_BIAS", arm, [master_bias[arm]]) for arm in ("UVB", "VIS")}
master_darks = {"NIR": _calib("MASTER_DARK", "NIR", [master_dark["NIR"]])}
lamp_off_frames = {"NIR": _calib("LAMPOFF", "NIR", lamp_off)}
bad_pixel_maps = {arm: _calib("BP_MAP_RP", arm, [bad_pixel_map[arm]]) for arm in ARMS}
