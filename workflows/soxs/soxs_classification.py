"""Classification rules: one per SOF tag the soxs_mflat recipe reads or writes. The rule name is
the SOF tag; product rules match the recipe's ESO PRO CATG exactly."""
from edps import classification_rule

from . import soxs_keywords as kw

ARMS = ("UVB", "VIS", "NIR")


def _raw(instrument, dtype, tech, arm):
    return {kw.instrume: instrument, kw.dpr_catg: "CALIB", kw.dpr_type: dtype, kw.dpr_tech: tech, kw.seq_arm: arm}


# raw lamp flats (RAW)
flat_soxs_vis = classification_rule("LAMP,FLAT_VIS", _raw("SOXS", "LAMP,FLAT", "ECHELLE,SLIT", "VIS"))
flat_soxs_nir = classification_rule("FLAT,LAMP_NIR", _raw("SOXS", "FLAT,LAMP", "ECHELLE,SLIT", "NIR"))
flat_xsh_vis = classification_rule("LAMP,FLAT_VIS", _raw("XSHOOTER", "LAMP,FLAT", "ECHELLE,SLIT", "VIS"))
flat_xsh_nir = classification_rule("LAMP,FLAT_NIR", _raw("XSHOOTER", "LAMP,FLAT", "ECHELLE,SLIT", "NIR"))
dflat_xsh_uvb = classification_rule("LAMP,DFLAT_UVB", _raw("XSHOOTER", "LAMP,DFLAT", "ECHELLE,SLIT", "UVB"))
qflat_xsh_uvb = classification_rule("LAMP,QFLAT_UVB", _raw("XSHOOTER", "LAMP,QFLAT", "ECHELLE,SLIT", "UVB"))
# NIR lamp-off frames (RAW)
off_soxs_nir = classification_rule("FLAT,LAMP_OFF_NIR", _raw("SOXS", "FLAT,LAMP", "IMAGE", "NIR"))
off_xsh_nir = classification_rule("LAMP,FLAT_OFF_NIR", _raw("XSHOOTER", "LAMP,FLAT", "IMAGE", "NIR"))

raw_flats = [flat_soxs_vis, flat_soxs_nir, flat_xsh_vis, flat_xsh_nir, dflat_xsh_uvb, qflat_xsh_uvb]
lamp_off = [off_soxs_nir, off_xsh_nir]

# calibrations from upstream recipes (CALIB), and this recipe's products
master_bias = {a: classification_rule(f"MASTER_BIAS_{a}", {kw.pro_catg: f"MASTER_BIAS_{a}"}) for a in ARMS}
master_dark = {a: classification_rule(f"MASTER_DARK_{a}", {kw.pro_catg: f"MASTER_DARK_{a}"}) for a in ARMS}
order_tab = {a: classification_rule(f"ORDER_TAB_{a}", {kw.pro_catg: f"ORDER_TAB_{a}"}) for a in ARMS}
bad_pixel_map = {a: classification_rule(f"BP_MAP_RP_{a}", {kw.pro_catg: f"BP_MAP_RP_{a}"}) for a in ARMS}
master_flat = {a: classification_rule(f"MASTER_FLAT_{a}", {kw.pro_catg: f"MASTER_FLAT_{a}"}) for a in ARMS}
mflat_background = {a: classification_rule(f"MFLAT_BKGROUND_{a}", {kw.pro_catg: f"MFLAT_BKGROUND_{a}"}) for a in ARMS}
