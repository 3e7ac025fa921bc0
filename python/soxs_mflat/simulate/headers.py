"""ESO header keyword sets of raw frames and products, per instrument (reference doc, section 5)."""
from __future__ import annotations

from astropy.io import fits
from astropy.time import Time

from ..instruments import Arm


def detector_cards(arm: Arm, binx: int, biny: int) -> dict:
    if arm.instrument == "SOXS":
        det = "VIS" if arm.arm == "VIS" else "NIR"
        cards = {"HIERARCH ESO DET BINX": binx, "HIERARCH ESO DET BINY": biny,
                 "HIERARCH ESO DET READ CURID": 1, "HIERARCH ESO DET OUT1 CONAD": arm.gain,
                 "HIERARCH ESO DET OUT1 GAIN": 1.0 / arm.gain, "HIERARCH ESO DET CHIP RON": arm.ron,
                 "HIERARCH ESO INS TEMP301 VAL": 12.5,
                 f"HIERARCH ESO INS TEMP{104 if det == 'VIS' else 217} VAL": 150.0 if det == "VIS" else 40.0}
        return cards
    return {"CDELT1": float(binx), "CDELT2": float(biny), "HIERARCH ESO DET WIN1 BINX": binx,
            "HIERARCH ESO DET WIN1 BINY": biny, "HIERARCH ESO DET READ SPEED": "400k/1pt/lg",
            "HIERARCH ESO DET OUT1 CONAD": arm.gain, "HIERARCH ESO DET OUT1 RON": arm.ron}


def slit_card(arm: Arm) -> dict:
    if arm.instrument == "SOXS":
        return {f"HIERARCH ESO INS {'VISE' if arm.arm == 'VIS' else 'NISE'} NAME": arm.slit}
    return {f"HIERARCH ESO INS OPTI{ {'UVB': 3, 'VIS': 4, 'NIR': 5}[arm.arm] } NAME": arm.slit}


def raw_flat_header(arm: Arm, binx: int, biny: int, mjd: float, lamp: str, lamp_on: bool = True) -> fits.Header:
    h = fits.Header()
    t = Time(mjd, format="mjd")
    h["INSTRUME"] = arm.instrument
    # archive file name, as the ESO archive delivers raws (products copy it to ESO PRO ANCESTOR)
    h["ARCFILE"] = f"{'XSHOO' if arm.instrument == 'XSHOOTER' else 'SOXS'}.{t.isot}.fits"
    h["MJD-OBS"] = (mjd, "Obs start")
    h["DATE-OBS"] = t.isot
    h["EXPTIME"] = arm.exptime
    h["HIERARCH ESO SEQ ARM"] = arm.arm
    h["HIERARCH ESO DPR CATG"] = "CALIB"
    h["HIERARCH ESO DPR TYPE"] = dpr_type(arm, lamp)
    h["HIERARCH ESO DPR TECH"] = "ECHELLE,SLIT" if lamp_on else "IMAGE"
    for k, v in {**detector_cards(arm, binx, biny), **slit_card(arm)}.items():
        h[k] = v
    if arm.instrument == "SOXS":
        h["HIERARCH ESO INS QTH NAME"] = "Qth_Lamp" if lamp_on else "None"
    else:
        h["HIERARCH ESO INS LAMP1 NAME"] = ("D2_Lamp" if lamp == "D2" else "QTH_Lamp") if lamp_on else "None"
    return h


def dpr_type(arm: Arm, lamp: str) -> str:
    if arm.instrument == "SOXS" and arm.arm == "NIR":
        return "FLAT,LAMP"
    if arm.arm == "UVB":
        return "LAMP,DFLAT" if lamp == "D2" else "LAMP,QFLAT"
    return "LAMP,FLAT"


def product_header(arm: Arm, binx: int, biny: int, mjd: float, catg: str, tech: str) -> fits.Header:
    h = fits.Header()
    h["INSTRUME"] = arm.instrument
    h["MJD-OBS"] = mjd
    h["DATE-OBS"] = Time(mjd, format="mjd").isot
    h["EXPTIME"] = arm.exptime
    h["HIERARCH ESO SEQ ARM"] = arm.arm
    for k, v in detector_cards(arm, binx, biny).items():
        h[k] = v
    h["HIERARCH ESO PRO CATG"] = f"{catg}_{arm.arm}"
    h["HIERARCH ESO PRO TYPE"] = "REDUCED"
    h["HIERARCH ESO PRO TECH"] = tech
    h["SXSPRE"] = Time(mjd, format="mjd").isot
    return h
