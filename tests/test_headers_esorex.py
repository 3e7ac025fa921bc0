"""What a product inherits from a raw header, in both front ends: the raw cards that CPL reads or writes
differently from astropy (long strings, full HIERARCH cards, comments, long file names), and what no product
inherits (the raw's WCS, TM-START and ESO QC keys), for plain and tile-compressed (.fits.fz) raw frames."""
from __future__ import annotations

from pathlib import Path

import pytest
from astropy.io import fits

import input_cases as ic
from soxs_mflat.simulate.run import simulate_set
from test_esorex import _compare, needs_esorex
from test_inputs_esorex import _compress, _fits_products, _run_both

FULL = "HIERARCH ESO INS OPTI2 VERY LONG KEYWORD NAME FOR EXPO TES= 1.2345678901234E-100"   # 80 columns
EDITS = {   # key -> value or (value, comment), set in every raw frame's header
    "OBJECT": "LAMP,FLAT with a name that takes more than one card " * 2,                      # CONTINUE
    "HIERARCH ESO OBS NAME": "it's the 'quoted' name of an OB, " * 4,                        # quotes doubled
    "HIERARCH ESO OBS TARG NAME": ("T" * 75, "the target's name, as the observer typed it into P2 " * 2),
    "HIERARCH ESO OBS PROG NAME": ("P" * 80, "the PI's programme"),   # a comment with a quote, on the last card
    "MJD-OBS": (60960.46956481481, "Obs start"),                                              # comments kept
    "HIERARCH ESO DET WIN1 DIT1": (20.0, "[s] actual subintegration time"),
    "CTYPE1": "PIXEL", "CRPIX1": 1.0, "CRVAL1": 1.0, "CD1_1": 1.0, "TM-START": 43200.0,      # never inherited
    "HIERARCH ESO QC RAWONLY": 1, "HIERARCH ESO QC ORDEXP10": (5.0, "a QC key in the raw"),
    "PI-COI": (None, "undefined value"), "HIERARCH ESO OBS PI-COI NAME": (None, "undefined"),   # no value
}
NOT_INHERITED = ("CTYPE1", "CRPIX1", "CRVAL1", "CD1_1", "TM-START", "ESO QC RAWONLY")


def _edited_set(tmp_path: Path, fz: bool) -> Path:
    """A SOXS VIS set whose raw frames carry EDITS and FULL, under names longer than one card can hold that
    differ only after the first 60 characters and hold brackets."""
    w = simulate_set("soxs", "vis", tmp_path / "set", nflats=3, seed=4)
    folder = tmp_path / "raws"
    folder.mkdir()
    rows = []
    for i, (path, tag) in enumerate(ic.entries(w)):
        if tag.startswith("LAMP,FLAT"):
            # brackets: CFITSIO's file-name syntax, which made the plugin skip the raw's long strings silently
            dst = folder / f"night_2025-10-12_soxs_vis_calibration_flat[lamp]_sequence_number_{i:02d}.fits"
            with fits.open(path) as hl:
                for k, v in EDITS.items():
                    hl[0].header[k] = v
                hl[0].header.append(fits.Card.fromstring(FULL))
                hl.writeto(dst)
            path = _compress(str(dst), "fz", folder) if fz else str(dst)
        rows.append([path, tag])
    return ic.write_sof(tmp_path, rows, "edited.sof")


@needs_esorex
@pytest.mark.parametrize("fz", [False, True], ids=["plain", "fz"])
def test_raw_header_cards_reach_both_front_ends_products_alike(tmp_path, capsys, fz):
    """Found by a review: the plugin cut long strings and long file names to one card (two raws had the same
    RAWi NAME), cut the value of a full HIERARCH card (E-100 -> E-10), made an undefined value the string of
    its comment ('/ undefined value'), wrote QC cards without comments, and for
    .fz raws inherited the WCS, TM-START and the raw's QC keys (the raw's comment on the recipe's own QC card);
    the CLI dropped every inherited comment and inherited the raw's ESO QC keys."""
    sof = _edited_set(tmp_path, fz)
    raws = [Path(p).name for p, t in ic.entries({"sof": sof}) if t.startswith("LAMP,FLAT")]
    py, es = _run_both(sof, tmp_path / "run", capsys)
    names = _fits_products(py)
    _compare(py, es, names)   # every inherited value and every QC value and comment equal
    full_key, full_value = FULL[9:FULL.index("=")], float(FULL.split("=")[1])
    for front in (py, es):
        for name in names:
            with fits.open(front / name, checksum=True) as hl:
                hl.verify("exception")
                h = hl[0].header
            where = (front.name, name)
            for k, v in EDITS.items():
                key = k.removeprefix("HIERARCH ")
                value, comment = v if isinstance(v, tuple) else (v, None)
                if key in NOT_INHERITED:
                    assert key not in h, where + (key,)
                elif key == "ESO QC ORDEXP10":   # the recipe's own QC card (no QC in the background image)
                    assert key not in h or (h[key] != value and h.comments[key] != comment), where
                else:
                    assert h[key] == (value.rstrip() if isinstance(value, str) else value), where + (key,)
                    if comment:
                        assert h.comments[key] == comment.rstrip(), where + (key,)
            assert h[full_key] == full_value, where
            assert [h[f"ESO PRO REC1 RAW{i} NAME"] for i in (1, 2, 3)] == raws, where
            assert h["LONGSTRN"] == "OGIP 1.0", where
