"""The organiser on a simulated multi-night archive: every set found, the right calibrations (the
simulator's truth, never one of another binning), the incomplete set reported with what is missing,
SOFs named as soxspipe's organiser names them."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from soxs_mflat.organise import organise

@pytest.fixture(scope="module")
def archive(sim_archive):
    return sim_archive     # conftest.py: two nights, SOXS VIS 1x2 + 2x2, X-shooter UVB and NIR


def _by_name(o):
    return {s.name: s for s in o.sets}


def test_every_set_found_with_the_true_calibrations(archive, tmp_path):
    out, truth = archive
    o = organise(out / "archive", tmp_path / "sofs")
    got = _by_name(o)
    assert sorted(got) == sorted(t["id"] for t in truth["sets"])
    for t in truth["sets"]:
        s = got[t["id"]]
        assert sorted(str(f.path.relative_to(out / "archive")) for f in s.flats) == sorted(t["flats"])
        cal = {k: sorted(str(c.path.relative_to(out / "archive")) for c in v) for k, v in s.calibs.items()}
        want = {k: sorted(v) for k, v in t["calibs"].items()}
        if t["lampoff"]:
            want["LAMPOFF"] = sorted(t["lampoff"])
        assert cal == want, t["id"]
        assert s.complete == t["complete"] and s.missing == t["missing"]
    assert o.n_ignored == truth["n_ignored"]
    # raw frames in each of the four forms were classified (and found in their sets above)
    suffixes = {f.path.name.split(".fits")[-1] for s in o.sets for f in s.flats}
    assert suffixes == {"", ".gz", ".fz", ".Z"}
    for s in o.sets:
        for f in s.flats:
            kind = {".gz": "gz", ".fz": "fz", ".Z": "Z", "": ""}[f.path.name.split(".fits")[-1]]
            assert kind == next(t["compressed"] for t in truth["sets"] if t["id"] == s.name)
            assert (f.hdu == 1) == (kind == "fz")
            with open(f.path, "rb") as fh:     # what the name says: the magic bytes of each form
                magic = fh.read(2)
            assert magic == {"gz": b"\x1f\x8b", "Z": b"\x1f\x9d", "fz": b"SI", "": b"SI"}[kind]


def test_wrong_binning_never_chosen(archive):
    out, truth = archive
    for s in organise(out / "archive").sets:
        for kind, cs in s.calibs.items():
            for c in cs:
                if kind in ("MASTER_BIAS", "ORDER_TAB", "BP_MAP_RP"):
                    assert f"_{s.arm}_{s.key['binx']}X{s.key['biny']}" in c.path.name, (s.name, c.path.name)


def test_uvb_lamps_one_set_and_nir_lamp_off_with_lamp_on(archive):
    out, _ = archive
    sets = organise(out / "archive").sets
    uvb = [s for s in sets if s.arm == "UVB"]
    assert len(uvb) == 1 and {f.kind for f in uvb[0].flats} == {"DFLAT", "QFLAT"}
    assert len(uvb[0].calibs["ORDER_TAB"]) == 2
    nir = [s for s in sets if s.arm == "NIR"]     # lamp-off frames join their lamp-on set
    assert len(nir) == 1 and len(nir[0].calibs["LAMPOFF"]) == 2 and "MASTER_DARK" not in nir[0].calibs


def test_sof_written_per_complete_set_and_runs(archive, tmp_path):
    out, truth = archive
    o = organise(out / "archive", tmp_path / "sofs")
    names = sorted(p.name for p in (tmp_path / "sofs").iterdir())
    assert names == sorted(f"{t['id']}.sof" for t in truth["sets"] if t["complete"])
    from soxs_mflat.frames import load_frames
    from soxs_mflat.verify import verify
    for s in o.sets:
        if s.complete:   # every SOF passes the recipe's verification as it is
            verify(load_frames(s.sof))


def test_cli_json_lists_incomplete_set_with_missing(archive):
    out, truth = archive
    r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "organise", str(out / "archive"), "--json"],
                       capture_output=True, text=True, check=True)
    rows = json.loads(r.stdout)
    assert len(rows) == len(truth["sets"])
    bad = [row for row in rows if not row["complete"]]
    assert [(b["name"], b["missing"]) for b in bad] == [(t["id"], t["missing"]) for t in truth["sets"]
                                                        if not t["complete"]]
    assert bad[0]["missing"] == ["MASTER_BIAS"] and "MASTER_BIAS" not in bad[0]["calibrations"]
    table = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "organise", str(out / "archive")],
                           capture_output=True, text=True, check=True).stdout
    assert f"{truth['n_ignored']} files ignored" in table
    assert any(line.rstrip().endswith(" MASTER_BIAS") for line in table.splitlines())


def test_simulate_archive_compressions(tmp_path):
    """The CLI writes all four forms by default (ncompress is a test dependency) and refuses an
    unknown one before writing anything."""
    from soxs_mflat.cli_archive import _default_compressions
    assert _default_compressions() == ("", "gz", "fz", "Z")
    r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "simulate-archive", "--out", str(tmp_path / "a"),
                        "--nights", "1", "--compress", "gz", "xz"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown compression 'xz'" in r.stderr
    assert not (tmp_path / "a").exists()
