"""EDPS workflow: order-centre tables, master bias / dark or lamp-off frames -> soxs_mflat.

    edps -w soxs.soxs_wkf -i <raw and calibration directory> -t mflat

The order-centre table and the master bias / dark are associated calibrations (products of the
upstream order-centre and bias/dark recipes, classified by their PRO CATG); the mflat task runs the
soxs_mflat recipe (esorex plugin, or the PyRecipe under pyesorex) once per set of flats.
"""
from edps import QC1_CALIB, SCIENCE, get_parameter, task

from . import soxs_keywords as kw
from .soxs_classification import ARMS, bad_pixel_map, lamp_off, master_bias, master_dark, order_tab
from .soxs_datasources import bad_pixel_maps, flats, lamp_off_frames, master_biases, master_darks, order_centre_tables


def which_arm(files) -> str:
    """Dynamic parameter: the arm of the job's raw flats."""
    return str(files[0].get(kw.seq_arm)).upper()


def is_nir(params) -> bool:
    return get_parameter(params, "arm") == "NIR"


def is_uvb_or_vis(params) -> bool:
    return get_parameter(params, "arm") in ("UVB", "VIS")


# NIR needs a master dark or lamp-off frames, UVB/VIS a master bias: the recipe refuses, naming what
# is missing, when neither NIR association is found.
mflat = (task("mflat")
         .with_recipe("soxs_mflat")
         .with_main_input(flats)
         .with_dynamic_parameter("arm", which_arm)
         .with_associated_input(order_centre_tables, [order_tab[a] for a in ARMS], min_ret=1, max_ret=2)
         .with_associated_input(master_biases, [master_bias[a] for a in ARMS], min_ret=1, max_ret=1,
                                condition=is_uvb_or_vis)
         .with_associated_input(master_darks, [master_dark[a] for a in ARMS], min_ret=0, max_ret=1, condition=is_nir)
         .with_associated_input(lamp_off_frames, lamp_off, min_ret=0, max_ret=20, condition=is_nir)
         .with_associated_input(bad_pixel_maps, [bad_pixel_map[a] for a in ARMS], min_ret=0, max_ret=1)
         .with_meta_targets([QC1_CALIB, SCIENCE])
         .with_description("master flat, order edges and low-sensitivity pixels (soxs_mflat)")
         .build())
