"""Verification of an input set: every rule raises VerificationError naming the files and the
rule, before anything is computed or written."""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from .frames import Frame, VerificationError
from .keywords import gain_e_per_adu, key
from .instruments import Arm, get_arm

log = logging.getLogger("soxs_mflat")
MIN_FLATS_WARN = 3


@dataclass
class InputSet:
    arm: Arm
    flats: dict[str, list[Frame]]              # lamp -> raw flats ("FLAT", "DFLAT", "QFLAT")
    bias: Frame | None = None
    dark: Frame | None = None
    lampoff: list[Frame] = field(default_factory=list)
    order_tabs: dict[str, Frame] = field(default_factory=dict)   # lamp ("FLAT"/"DFLAT"/"QFLAT") -> table
    bpm: Frame | None = None
    warnings: list[str] = field(default_factory=list)


def _names(frames) -> str:
    return ", ".join(f.name for f in frames)


def _unique(frames: list[Frame], key, rule: str, what: str) -> None:
    groups = defaultdict(list)
    for f in frames:
        groups[key(f)].append(f)
    if len(groups) > 1:
        detail = "; ".join(f"{k}: {_names(v)}" for k, v in groups.items())
        raise VerificationError(rule, f"input frames are a mix of {what} ({detail})")


def _binning(f: Frame, arm: Arm):
    if arm.nir_like or f.kind in ("ORDER_TAB", "SPECTRAL_FORMAT_TAB"):
        return None
    bx, by = key(arm.instrument, "binx"), key(arm.instrument, "biny")
    if arm.instrument == "SOXS":
        return (f.get(bx), f.get(by))
    return (f.get(bx, f.get("CDELT1")), f.get(by, f.get("CDELT2")))


def _detector(f: Frame, arm: Arm):
    gain = gain_e_per_adu(f.header, arm.instrument, 0.0)
    return f.get(key(arm.instrument, "readout")), round(gain, 4), f.get(key(arm.instrument, "ron"))


def _slit(f: Frame, arm: Arm):
    key = ("HIERARCH ESO INS VISE NAME" if arm.arm == "VIS" else "HIERARCH ESO INS NISE NAME") \
        if arm.instrument == "SOXS" else f"HIERARCH ESO INS OPTI{ {'UVB': 3, 'VIS': 4, 'NIR': 5}[arm.arm] } NAME"
    return f.get(key)


def verify(frames: list[Frame]) -> InputSet:
    unknown = [f for f in frames if f.kind == "UNKNOWN"]
    if unknown:
        raise VerificationError("unknown-frame", f"cannot classify {_names(unknown)}: not a raw lamp flat, lamp-off "
                                "frame, master bias/dark, order table or bad-pixel map (check ESO DPR/PRO keywords)")
    _unique([f for f in frames if f.kind != "SPECTRAL_FORMAT_TAB"], lambda f: f.instrument, "mixed-instruments",
            "instruments")
    _unique([f for f in frames if f.kind != "SPECTRAL_FORMAT_TAB"], lambda f: f.arm, "mixed-arms", "arms")
    first = frames[0]
    try:
        arm = get_arm(first.instrument or "", first.arm or "")
    except ValueError as exc:
        raise VerificationError("unknown-arm", f"{first.name}: {exc}") from None
    flats = defaultdict(list)
    for f in frames:
        if f.is_raw_flat:
            flats[f.kind].append(f)
    if not flats:
        raise VerificationError("no-flats", f"no raw lamp flats among {_names(frames)} "
                                "(need DPR TYPE LAMP,FLAT / FLAT,LAMP / LAMP,DFLAT / LAMP,QFLAT with TECH ECHELLE,SLIT)")
    detector_frames = [f for f in frames if f.is_raw_flat or f.kind in ("MASTER_BIAS", "MASTER_DARK", "LAMPOFF")]
    _unique(detector_frames + [f for f in frames if f.kind == "BP_MAP_RP"], lambda f: _binning(f, arm),
            "mixed-binning", "binnings")
    _unique(detector_frames, lambda f: _detector(f, arm)[0], "mixed-readout", "readout speeds")
    _unique(detector_frames, lambda f: _detector(f, arm)[1], "mixed-gain", "gains")
    _unique(detector_frames, lambda f: _detector(f, arm)[2], "mixed-ron", "read noises")
    all_flats = [f for v in flats.values() for f in v]
    _unique(all_flats, lambda f: _slit(f, arm), "mixed-slit", "slits")
    for kind, fl in flats.items():
        _unique(fl, lambda f: round(float(f.get("EXPTIME", -1)), 2), "mixed-exptime", f"exposure times ({kind})")
    s = InputSet(arm, dict(flats))
    _calibrations(s, frames, arm)
    for kind, fl in flats.items():
        if len(fl) < MIN_FLATS_WARN:
            msg = f"only {len(fl)} {kind} frame(s) ({_names(fl)}); at least {MIN_FLATS_WARN} are needed for clipping"
            s.warnings.append(msg)
            log.warning(msg)
    return s


def _calibrations(s: InputSet, frames: list[Frame], arm: Arm) -> None:
    by = defaultdict(list)
    for f in frames:
        by[f.kind].append(f)
    if arm.arm == "UVB" and set(s.flats) != {"DFLAT", "QFLAT"}:
        have = ", ".join(sorted(s.flats))
        raise VerificationError("uvb-lamps", f"X-shooter UVB needs both D2 (LAMP,DFLAT) and QTH (LAMP,QFLAT) flats; "
                                f"found only {have}")
    if arm.arm != "UVB" and set(s.flats) - {"FLAT"}:
        raise VerificationError("flat-type", f"{arm.arm} flats must be LAMP,FLAT (or FLAT,LAMP); found "
                                f"{', '.join(sorted(s.flats))}")
    if not arm.nir_like:
        if not by["MASTER_BIAS"]:
            raise VerificationError("missing-bias", f"{arm.instrument} {arm.arm} flats need a MASTER_BIAS_{arm.arm}; "
                                    f"none among {_names(frames)}")
        s.bias = by["MASTER_BIAS"][0]
    else:
        if not by["MASTER_DARK"] and not by["LAMPOFF"]:
            raise VerificationError("missing-dark", f"NIR flats need a MASTER_DARK_{arm.arm} or lamp-off frames "
                                    f"(DPR TECH IMAGE); none among {_names(frames)}")
        s.dark = by["MASTER_DARK"][0] if by["MASTER_DARK"] else None
        s.lampoff = by["LAMPOFF"]
    if not by["ORDER_TAB"]:
        raise VerificationError("missing-order-table", f"need an ORDER_TAB_{arm.arm} order-centre table; none among "
                                f"{_names(frames)}")
    for lamp in s.flats:
        want = {"DFLAT": "LAMP,DORDERDEF", "QFLAT": "LAMP,QORDERDEF"}.get(lamp)
        match = [t for t in by["ORDER_TAB"] if want is None or str(t.get("OBJECT", "")).upper() == want]
        s.order_tabs[lamp] = (match or by["ORDER_TAB"])[0]
    s.bpm = by["BP_MAP_RP"][0] if by["BP_MAP_RP"] else None
    if s.bpm is None:
        s.warnings.append("no static bad-pixel map (BP_MAP_RP) given: all pixels start as good")
