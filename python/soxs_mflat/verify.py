"""Verification of an input set: every rule of the input contract (data/contract/inputs.yaml)
raises VerificationError naming the files and the rule, before anything is computed or written."""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from .contract import section
from .frames import Frame, supported_arms
from .instruments import Arm, get_arm
from .keywords import binning, detector_value, gain_e_per_adu, number, shown, text
from .rules import rule_error

log = logging.getLogger("soxs_mflat")


def _tol(name: str):
    return section("inputs")["tolerances"][name]


MIN_FLATS_WARN = _tol("min_flats_warn")


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
    centre_tables: dict = field(default_factory=dict)   # lamp -> ordertable.CentreTable, read once (the recipe)


def _names(frames) -> str:
    return ", ".join(f.name for f in frames)


def _unique(frames: list[Frame], key, rule: str, **fields) -> None:
    groups = defaultdict(list)
    for f in frames:
        groups[key(f)].append(f)
    if len(groups) > 1:
        detail = "; ".join(f"{shown(k, str)}: {_names(v)}" for k, v in groups.items())   # numbers as the plugin
        raise rule_error(rule, detail=detail, **fields)


def _binning(f: Frame, arm: Arm):
    if f.kind in ("ORDER_TAB", "SPECTRAL_FORMAT_TAB"):
        return None
    return binning(f.header, arm.instrument, arm.nir_like, str(f.path))


def _detector(f: Frame, arm: Arm, what: str):
    if what == "gain":
        return round(gain_e_per_adu(f.header, arm.instrument, 0.0, str(f.path)), _tol("gain_decimals"))
    if what == "ron":
        return detector_value(f.header, arm.instrument, "ron", str(f.path))
    return text(f.header, (section("inputs")["detector_keys"][arm.instrument]["readout"] or [""])[0])


def _slit(f: Frame, arm: Arm):
    return text(f.header, section("inputs")["arms"][arm.instrument][arm.arm]["slit_key"])


def _arm_of(first: Frame) -> Arm:
    try:
        return get_arm(first.instrument or "", first.arm or "")
    except ValueError:
        raise rule_error("unknown-arm", file=first.path, instrument=first.instrument, arm=first.arm,
                         supported=supported_arms()) from None


def _check_values(frames: list[Frame]) -> None:
    """Numeric keys typed and in range (EXPTIME required on raw frames): bad-keyword otherwise."""
    required = section("inputs")["values"]["EXPTIME"]["required"]
    for f in frames:
        number(f.header, "EXPTIME", str(f.path), **({} if f.kind in required else {"default": None}))
        f.mjd   # noqa: B018 (converted here so that a bad MJD-OBS is found before any work)


def _image_shape(f: Frame):
    """(NAXIS2, NAXIS1) of a raw frame's image, from its header: 2-D images only."""
    n = f.header.get("NAXIS", 0)
    if n != 2:
        raise rule_error("shape", file=f.path, detail=f"the image has {n} axes; a 2-D image is needed")
    return (f.header.get("NAXIS2"), f.header.get("NAXIS1"))


def _exptime_groups(fl: list[Frame], kind: str) -> None:
    times = [number(f.header, "EXPTIME", str(f.path)) for f in fl]
    if max(times) - min(times) > _tol("exptime_s"):
        _unique(fl, lambda f: round(number(f.header, "EXPTIME", str(f.path)), 3), "mixed-exptime", kind=kind)


def verify(frames: list[Frame]) -> InputSet:
    unknown = [f for f in frames if f.kind == "UNKNOWN"]
    if unknown:
        raise rule_error("unknown-frame", files=_names(unknown))
    _check_values(frames)
    used = [f for f in frames if f.kind != "SPECTRAL_FORMAT_TAB"]
    _unique(used, lambda f: f.instrument, "mixed-instruments")
    _unique(used, lambda f: f.arm, "mixed-arms")
    arm = _arm_of(frames[0])
    flats = defaultdict(list)
    for f in frames:
        if f.is_raw_flat:
            flats[f.kind].append(f)
    if not flats:
        raise rule_error("no-flats", files=_names(frames))
    detector_frames = [f for f in frames if f.is_raw_flat or f.kind in ("MASTER_BIAS", "MASTER_DARK", "LAMPOFF")]
    _unique(detector_frames + [f for f in frames if f.kind == "BP_MAP_RP"], lambda f: _binning(f, arm),
            "mixed-binning")
    for what, rule in (("readout", "mixed-readout"), ("gain", "mixed-gain"), ("ron", "mixed-ron")):
        _unique(detector_frames, lambda f: _detector(f, arm, what), rule)
    all_flats = [f for v in flats.values() for f in v]
    _unique(all_flats + [f for f in frames if f.kind == "LAMPOFF"], _image_shape, "mixed-shape")
    _unique(all_flats, lambda f: _slit(f, arm), "mixed-slit")
    s = InputSet(arm, dict(flats))
    _flat_types(s, arm)
    for kind, fl in flats.items():
        _exptime_groups(fl, kind)
    _calibrations(s, frames, arm)
    for kind, fl in flats.items():
        if len(fl) < MIN_FLATS_WARN:
            msg = f"only {len(fl)} {kind} frame(s) ({_names(fl)}); at least {MIN_FLATS_WARN} are needed for clipping"
            s.warnings.append(msg)
            log.warning(msg)
    return s


def _flat_types(s: InputSet, arm: Arm) -> None:
    want = section("inputs")["arms"][arm.instrument][arm.arm]["flats"]
    for kind, fl in s.flats.items():
        if kind not in want:
            raise rule_error("flat-type", file=fl[0].path, instrument=arm.instrument, arm=arm.arm,
                             want=" and ".join(want), have=kind)
    if set(s.flats) != set(want):
        raise rule_error("uvb-lamps", have=", ".join(sorted(s.flats)), files=_names(sum(s.flats.values(), [])))


def _order_tables(s: InputSet, tables: list[Frame], frames: list[Frame], arm: Arm) -> None:
    if not tables:
        raise rule_error("missing-order-table", arm=arm.arm, files=_names(frames))
    objects = section("inputs")["order_objects"]
    for lamp in s.flats:
        want = objects.get(lamp) if len(s.flats) > 1 else None
        match = [t for t in tables if want is None or text(t.header, "OBJECT") == want]
        if not match:
            raise rule_error("uvb-order-tables", lamp=lamp, files=_names(tables))
        s.order_tabs[lamp] = match[0]


def _scalable_darks(darks: list[Frame], flats: list[Frame]) -> None:
    """A dark or lamp-off frame is scaled by the flat's exposure time over its own: one that says 0 s
    cannot be (it was subtracted unscaled). A master dark without EXPTIME is taken as matching."""
    t_flat = max(number(f.header, "EXPTIME", str(f.path)) for f in flats)
    for d in darks:
        t = number(d.header, "EXPTIME", str(d.path), default=None)
        if t is not None and t <= 0 < t_flat - _tol("exptime_s"):
            raise rule_error("bad-keyword", file=d.path, key="EXPTIME", value=f"{t:g}",
                             problem=f"cannot be scaled to the flats' {t_flat:g} s (a dark or lamp-off frame of "
                             "0 s is a bias)")


def _calibrations(s: InputSet, frames: list[Frame], arm: Arm) -> None:
    by = defaultdict(list)
    for f in frames:
        by[f.kind].append(f)
    if not arm.nir_like:
        if not by["MASTER_BIAS"]:
            raise rule_error("missing-bias", instrument=arm.instrument, arm=arm.arm, files=_names(frames))
        s.bias = by["MASTER_BIAS"][0]
    else:
        if not by["MASTER_DARK"] and not by["LAMPOFF"]:
            raise rule_error("missing-dark", arm=arm.arm, files=_names(frames))
        s.dark = by["MASTER_DARK"][0] if by["MASTER_DARK"] else None
        s.lampoff = by["LAMPOFF"]
        _scalable_darks([s.dark] if s.dark else s.lampoff, [f for fl in s.flats.values() for f in fl])
    _order_tables(s, by["ORDER_TAB"], frames, arm)
    s.bpm = by["BP_MAP_RP"][0] if by["BP_MAP_RP"] else None
    if s.bpm is None:
        s.warnings.append("no static bad-pixel map (BP_MAP_RP) given: all pixels start as good")
