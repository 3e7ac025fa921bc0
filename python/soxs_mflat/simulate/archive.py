"""A simulated raw archive: several nights of mixed frames named as the ESO archive names them
(``XSHOO.<DATE-OBS>.fits``, ``SOXS.<DATE-OBS>.fits``, some compressed), calibrations as the cascade
leaves them (master bias, order-centre tables, bad-pixel maps), distractors (other DPR types,
non-FITS files, an HTML error page saved as .fits) and at least one incomplete set.

Layout of ``out``:  ``archive/<night>/`` raw frames, ``archive/calib/<night>/`` calibrations (the
tree to organise) and ``truth/`` (outside the tree): ``sets.json`` (every set: its frames, the
calibrations it must get, complete or not and what is missing) and ``<set>/truth.fits``. The
static bad-pixel map of a setup is stored once (``calib/static``), from its first night's set.
X-shooter UVB D2 flats get a longer exposure than their QTH flats (as at the telescope), so that
grouping by EXPTIME alone would split the set.
"""
from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time

from ..instruments import get_arm
from .calibs import sof_name
from .run import simulate_set

PREFIX = {"SOXS": "SOXS", "XSHOOTER": "XSHOO"}
# per instrument: the setups observed each night, in time order. SOXS VIS 1x2 comes first so that
# the 2x2 master bias of the same night is nearer in time to its flats than its own (1x2) bias.
SETUPS = {"soxs": ["soxs/vis/1x2", "soxs/vis/2x2", "soxs/nir/1x1"],
          "xshooter": ["xshooter/uvb/2x2", "xshooter/vis/2x2", "xshooter/nir/1x1"]}
COMPRESSIONS = ("", "gz", "fz", "Z")   # none, gzip, tile-compressed (fpack layout), unix compress
D2_EXPTIME = 15.0                # s; the QTH flats keep the arm's 4 s
SET_SPACING_DAYS = 0.02          # 29 min between the sets of one night
FIRST_NIGHT_MJD = Time("2025-10-12T11:14:44").mjd   # morning calibrations (UT) after the night 2025-10-11


def archive_name(header: fits.Header, suffix: str = ".fits") -> str:
    """The ESO archive file name: <instrument prefix>.<DATE-OBS>.fits (milliseconds kept)."""
    t = Time(header["DATE-OBS"], format="isot", precision=3).isot
    return f"{PREFIX[str(header['INSTRUME']).upper()]}.{t}{suffix}"


def _night(mjd: float) -> str:
    return Time(mjd - 15 / 24, format="mjd").strftime("%Y-%m-%d")


def _store(src: Path, dest_dir: Path, compress: str) -> Path:
    """Move a raw frame into the tree under its archive name, compressed as asked: "" (none), "gz"
    (gzip), "fz" (tile-compressed image in HDU 1, fpack's layout) or "Z" (unix compress)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    header = fits.getheader(src)
    if compress == "gz":
        dest = dest_dir / archive_name(header, ".fits.gz")
        with open(src, "rb") as fin, gzip.open(dest, "wb", compresslevel=1) as fout:
            shutil.copyfileobj(fin, fout)
        src.unlink()
    elif compress == "fz":   # tile-compressed, lossless (integers; floats quantisation off)
        dest = dest_dir / archive_name(header, ".fits.fz")
        data = fits.getdata(src)
        comp = fits.CompImageHDU(data, header, compression_type="RICE_1" if data.dtype.kind in "iu" else "GZIP_2",
                                 quantize_level=0.0)
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(dest)
        src.unlink()
    elif compress == "Z":    # unix compress (LZW), as old archive downloads come; ncompress writes it
        dest = dest_dir / archive_name(header, ".fits.Z")
        dest.write_bytes(_lzw(src.read_bytes()))
        src.unlink()
    elif compress == "":
        dest = dest_dir / archive_name(header)
        shutil.move(src, dest)
    else:
        raise ValueError(f"unknown compression {compress!r} (one of '', gz, fz, Z)")
    return dest


def _lzw(data: bytes) -> bytes:
    try:
        import ncompress
    except ImportError:
        raise ValueError("writing .fits.Z needs the ncompress package (pip install ncompress), "
                         "or leave Z out of the compressions") from None
    return ncompress.compress(data)


def _store_calib(src: Path, dest_dir: Path, label: str, mjd: float | None = None) -> Path:
    """Move a calibration into the tree (``mjd``: MJD-OBS to give a file that has none)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    if mjd is not None:
        fits.setval(src, "MJD-OBS", value=mjd)
    stamp = Time(fits.getval(src, "MJD-OBS"), format="mjd").strftime("%Y%m%dT%H%M%S")
    dest = dest_dir / f"{stamp}_{label}.fits"
    shutil.move(src, dest)
    return dest


def _distractors(night_dir: Path, instrument: str, mjd: float, rng) -> tuple[int, int]:
    """Frames and files the organiser must ignore (raw bias, format check, science, non-FITS) and one it
    must report as unusable (a .fits that is not FITS): their numbers."""
    n = 0
    for k, (dtype, tech) in enumerate((("BIAS", "IMAGE"), ("LAMP,FMTCHK", "ECHELLE,PINHOLE"), ("OBJECT", "ECHELLE,SLIT"))):
        h = fits.Header()
        t = Time(mjd + 0.001 * (k + 1), format="mjd")
        h["INSTRUME"], h["MJD-OBS"], h["DATE-OBS"], h["EXPTIME"] = instrument, t.mjd, t.isot, 1.0
        h["HIERARCH ESO SEQ ARM"] = "VIS"
        h["HIERARCH ESO DPR CATG"] = "CALIB" if dtype != "OBJECT" else "SCIENCE"
        h["HIERARCH ESO DPR TYPE"], h["HIERARCH ESO DPR TECH"] = dtype, tech
        fits.PrimaryHDU(rng.integers(900, 1100, (16, 16)).astype(np.uint16), h).writeto(night_dir / archive_name(h))
        n += 1
    (night_dir / f"README_{PREFIX[instrument]}.txt").write_text("observing log: nothing to see here\n")
    # what an interrupted archive download leaves: an HTML error page with a FITS name
    (night_dir / f"{PREFIX[instrument]}.download_error.fits").write_text("<html><body>503 Service Unavailable</body></html>\n")
    return n + 1, 1


def _binning_label(arm, binning: str) -> str:
    return "1x1" if arm.nir_like else binning.lower()


def _one_set(out: Path, spec: str, mjd0: float, seed: int, nflats: int, compress: str, static: dict,
             detector_seed: int) -> dict:
    """One set into the tree; ``static``: the bad-pixel map of each setup, stored once (the first night);
    ``detector_seed``: the setup's detector (its defects are those of the static map on every night)."""
    inst, arm_name, binning = spec.split("/")
    arm = get_arm(inst, arm_name)
    bx, by = (int(v) for v in _binning_label(arm, binning).split("x"))
    # soxspipe's organiser names a set by its first flat: the D2 flats (and their exposure time) for UVB
    set_id = sof_name(replace(arm, exptime=D2_EXPTIME) if arm.arm == "UVB" else arm, bx, by, mjd0)[:-4]
    stage = out / "truth" / set_id
    w = simulate_set(inst, arm_name, stage, nflats, f"{bx}x{by}", seed, mjd0=mjd0, detector_seed=detector_seed)
    for p in w["raw"] + w["off"]:   # one template per set, as at the telescope
        fits.setval(p, "HIERARCH ESO TPL START", value=Time(mjd0, format="mjd").isot[:19])
        if arm.arm == "UVB" and "_D2_" in p.name:
            fits.setval(p, "EXPTIME", value=D2_EXPTIME)
    night = _night(mjd0)
    raw_dir, cal_dir = out / "archive" / night, out / "archive" / "calib" / night
    raws = [_store(p, raw_dir, compress) for p in w["raw"]]
    offs = [_store(p, raw_dir, compress) for p in w["off"]]
    setup = f"{arm.arm}_{bx}X{by}"
    lamp = lambda p: "_" + p.stem.split("_")[-1] if arm.arm == "UVB" else ""   # noqa: E731 (UVB: _D2, _QTH)
    cals = {"ORDER_TAB": [_store_calib(p, cal_dir, f"ORDER_TAB_{setup}{lamp(p)}") for p in w["order_tab"]]}
    if spec not in static:
        static[spec] = _store_calib(w["bpm"], out / "archive" / "calib" / "static", f"BP_MAP_RP_{setup}", mjd0 - 30)
    cals["BP_MAP_RP"] = [static[spec]]
    if "bias" in w:
        cals["MASTER_BIAS"] = [_store_calib(w["bias"], cal_dir, f"MASTER_BIAS_{setup}")]
    w["spectral_format"].unlink()
    w["bpm"].unlink(missing_ok=True)
    for sof in [w["sof"], stage / "soxspipe" / w["sof"].name]:
        sof.unlink()
    shutil.rmtree(stage / "raw"), shutil.rmtree(stage / "calib"), shutil.rmtree(stage / "soxspipe")
    rel = lambda p: str(p.relative_to(out / "archive"))   # noqa: E731
    return {"id": set_id, "night": night, "instrument": arm.instrument, "arm": arm.arm, "binning": f"{bx}x{by}",
            "n_flats": len(raws), "flats": [rel(p) for p in raws], "lampoff": [rel(p) for p in offs],
            "calibs": {k: [rel(p) for p in v] for k, v in cals.items()}, "truth": str(Path(set_id) / "truth.fits"),
            "compressed": compress, "complete": True, "missing": []}


def _make_incomplete(out: Path, s: dict) -> None:
    """Delete the set's master bias (UVB/VIS; a bias of another binning stays in the night) or its
    order-centre table (NIR): the organiser must say so."""
    what = "MASTER_BIAS" if "MASTER_BIAS" in s["calibs"] else "ORDER_TAB"
    for p in s["calibs"].pop(what):
        (out / "archive" / p).unlink()
    s["complete"], s["missing"] = False, [what]


def simulate_archive(out: str | Path, nights: int, instruments=("soxs", "xshooter"), setups=None,
                     nflats: int = 3, compress=COMPRESSIONS, seed: int = 0) -> dict:
    """Write the archive; returns the truth (also in ``out/truth/sets.json``). ``setups``:
    "instrument/arm/binning" strings observed each night ("...@N": on night N only; default: SETUPS
    of each instrument);
    ``compress``: cycled over the sets ("", "gz", "fz", "Z"; checked before anything is written). The first set of the last night is made incomplete."""
    out = Path(out)
    if nights < 1:
        raise ValueError("nights must be >= 1")
    for c in compress:
        if c not in COMPRESSIONS:
            raise ValueError(f"unknown compression {c!r} (one of '', gz, fz, Z)")
    if "Z" in compress:
        _lzw(b"")        # ncompress is there (before anything is written)
    specs = list(setups) if setups else [s for i in instruments for s in SETUPS[i.lower()]]
    on_night = lambda spec, n: "@" not in spec or int(spec.split("@")[1]) == n   # noqa: E731
    rng = np.random.default_rng(seed)
    sets, ignored, unusable, static = [], 0, 0, {}
    for n in range(nights):
        mjd_night = FIRST_NIGHT_MJD + n
        for k, spec in enumerate(specs):
            if on_night(spec, n):
                setup = spec.split("@")[0]   # one detector per setup: its defects the same every night
                detector = 10**6 + seed * 1000 + sorted({x.split("@")[0] for x in specs}).index(setup)
                sets.append(_one_set(out, setup, mjd_night + k * SET_SPACING_DAYS, seed * 1000 + len(sets),
                                     nflats, compress[(n + k) % len(compress)] if compress else "", static, detector))
        for inst in sorted({s.split("/")[0].upper() for s in specs}):
            n_other, n_broken = _distractors(out / "archive" / _night(mjd_night), inst, mjd_night - 0.2, rng)
            ignored, unusable = ignored + n_other, unusable + n_broken
    _make_incomplete(out, next(s for s in sets if s["night"] == sets[-1]["night"]))
    truth = {"sets": sets, "n_ignored": ignored, "n_unusable": unusable, "archive": str(out / "archive")}
    (out / "truth" / "sets.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth
