"""EDPS workflow: order-centre tables, master bias / dark or lamp-off frames -> soxs_mflat.

    edps -w soxs.soxs_wkf -i <raw and calibration directory> -t mflat_vis

One task per arm (mflat_uvb, mflat_vis, mflat_nir), because the arms group differently: X-shooter UVB
D2 and QTH flats (of different exposure times) make one job. Grouping and matching come from the
organiser's contract (soxs_datasources.py reads data/contract/organise.yaml), so EDPS makes the
same sets with the same calibrations as ``soxs-mflat organise``. The order-centre table and the
master bias / dark are associated calibrations (products of the upstream recipes, classified by
their PRO CATG); each task runs the soxs_mflat recipe (esorex plugin, or the PyRecipe under pyesorex).
"""
from edps import QC1_CALIB, SCIENCE, task

from .soxs_classification import bad_pixel_map, lamp_off, master_bias, master_dark, order_tab
from .soxs_datasources import (CONTRACT, bad_pixel_maps, flats, lamp_off_frames, master_biases, master_darks,
                               order_centre_tables)


def _min_ret(kind: str, n: int = 1) -> int:
    """Required calibrations (contract) must be found; NIR lamp-off frames and master darks are
    alternatives (either will do), so both are optional here and the recipe names what is missing."""
    spec = CONTRACT["associate"][kind]
    alternatives = kind == "LAMPOFF" or "alternative_to" in spec
    return n if spec["required"] and not alternatives else 0


def _mflat(arm: str):
    n_tables = 2 if arm == "UVB" else 1    # UVB: one order table per lamp (per_lamp)
    t = (task(f"mflat_{arm.lower()}")
         .with_recipe("soxs_mflat")
         .with_main_input(flats[arm])
         .with_associated_input(order_centre_tables[arm], [order_tab[arm]], min_ret=_min_ret("ORDER_TAB", n_tables),
                                max_ret=n_tables))
    if arm in master_biases:
        t = t.with_associated_input(master_biases[arm], [master_bias[arm]], min_ret=_min_ret("MASTER_BIAS"), max_ret=1)
    if arm == "NIR":
        t = (t.with_associated_input(lamp_off_frames[arm], lamp_off, min_ret=_min_ret("LAMPOFF"), max_ret=50)
              .with_associated_input(master_darks[arm], [master_dark[arm]], min_ret=_min_ret("MASTER_DARK"), max_ret=1))
    return (t.with_associated_input(bad_pixel_maps[arm], [bad_pixel_map[arm]], min_ret=_min_ret("BP_MAP_RP"),
                                    max_ret=1)
            .with_meta_targets([QC1_CALIB, SCIENCE])
            .with_description(f"{arm} master flat, order edges and low-sensitivity pixels (soxs_mflat)")
            .build())


mflat_uvb = _mflat("UVB")
mflat_vis = _mflat("VIS")
mflat_nir = _mflat("NIR")
