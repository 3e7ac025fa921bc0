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
    assert (o.n_ignored, o.n_unusable) == (truth["n_ignored"], truth["n_unusable"])   # each file counted once
    assert o.n_unusable == len(o.set_aside()) and truth["n_unusable"] > 0
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
    assert f"{truth['n_ignored']} files ignored (" in table and f"; {truth['n_unusable']} unusable (" in table
    summary = next(ln for ln in table.splitlines() if " files ignored (" in ln)
    assert "unreadable" not in summary.split("files ignored")[1].split("unusable")[0], summary   # not counted twice
    lines = table.splitlines()
    at = lines[0].index("missing")   # the column lines up on every row (file names come last, after it)
    rows = [ln for ln in lines[2:] if ln[:4].isdigit()]
    assert [ln[at:].split()[0] for ln in rows].count("MASTER_BIAS") == 1 and all(ln[at - 2:at] == "  " for ln in rows)
    assert lines[0].endswith("calibrations")


def test_simulate_archive_compressions(tmp_path):
    """The CLI writes all four forms by default (ncompress is a test dependency) and refuses an
    unknown one before writing anything."""
    from soxs_mflat.cli_archive import _default_compressions
    assert _default_compressions() == ("", "gz", "fz", "Z")
    r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "simulate-archive", "--out", str(tmp_path / "a"),
                        "--nights", "1", "--compress", "gz", "xz"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown compression 'xz'" in r.stderr
    assert not (tmp_path / "a").exists()


# ---- unusable files: paths no SOF line can hold, the same exposure twice (input contract, duplicate-input)

import gzip
import os
import shutil

from astropy.io import fits

from soxs_mflat.frames import load_frames, parse_sof
from soxs_mflat.organise import BAD_PATH, DUPLICATE


@pytest.fixture(scope="module")
def one_set(module_tmp):
    """A SOXS VIS 2x2 set of 3 flats (raw/SOXS_VIS_FLAT_QTH_0[123].fits, calib/...)."""
    from soxs_mflat.simulate.run import simulate_set
    root = module_tmp("one_set")
    simulate_set("soxs", "vis", root / "set", nflats=3, binning="2x2")
    return root / "set"


def _tree(one_set, dest):
    """The set's raw frames and calibrations (no SOFs, no truth) copied to dest."""
    shutil.copytree(one_set / "raw", dest / "raw")
    shutil.copytree(one_set / "calib", dest / "calib")
    return dest


def _another_exposure(src, dst, seconds):
    """A copy of raw frame src taken `seconds` later: DATE-OBS, MJD-OBS and ARCFILE changed."""
    shutil.copyfile(src, dst)
    with fits.open(dst, mode="update") as hl:
        h = hl[0].header
        date = h["DATE-OBS"]
        h["DATE-OBS"] = date[:17] + f"{float(date[17:]) + seconds:06.3f}"
        h["MJD-OBS"] = h["MJD-OBS"] + seconds / 86400
        h["ARCFILE"] = f"SOXS.{h['DATE-OBS']}.fits"


def _sof_flats(sof):
    return [Path(p).name for p, tag in parse_sof(Path(sof)) if tag.startswith("LAMP,FLAT")]


def test_path_with_whitespace_set_aside_and_the_rest_of_its_set_organised(one_set, tmp_path):
    """A raw flat under a path with a space (esorex's SOF line is 'PATH TAG [GROUP]', split at whitespace):
    not written into any SOF (was: written unquoted, and `run` then failed [sof-format] or, with a third
    token, 'unknown frame group'); reported with the reason; the set is organised from the other frames."""
    tree = _tree(one_set, tmp_path / "tree")
    (tree / "sp ace").mkdir()
    _another_exposure(tree / "raw" / "SOXS_VIS_FLAT_QTH_01.fits", tree / "sp ace" / "flat 4.fits", 7)
    _another_exposure(tree / "raw" / "SOXS_VIS_FLAT_QTH_02.fits", tree / "raw" / "tab\tflat.fits", 9)
    o = organise(tree, tmp_path / "sofs")
    assert len(o.sets) == 1 and o.sets[0].complete
    assert sorted(o.ignored[BAD_PATH]) == sorted([tree / "sp ace" / "flat 4.fits", tree / "raw" / "tab\tflat.fits"])
    for p in o.ignored[BAD_PATH]:
        assert o.notes[p].startswith(f"{p}: its path contains whitespace") and "SOF" in o.notes[p]
    lines = o.sets[0].sof.read_text().splitlines()
    assert all(len(line.split()) == 2 for line in lines), lines
    assert _sof_flats(o.sets[0].sof) == [f"SOXS_VIS_FLAT_QTH_0{i}.fits" for i in (1, 2, 3)]
    load_frames(o.sets[0].sof)      # the recipe reads the SOF as written
    # the table names each unusable file with its reason
    r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "organise", str(tree)], capture_output=True, text=True)
    assert r.returncode == 0 and "2 path unusable in a SOF" in r.stdout
    assert f"  {tree / 'sp ace' / 'flat 4.fits'}: its path contains whitespace" in r.stdout


def test_whole_tree_under_a_path_with_whitespace_gives_no_sof_but_a_link_does(one_set, tmp_path):
    """Every file under 'my archive/' is unusable (none can be written in a SOF line), and no SOF is written;
    the same tree given through a link without whitespace is organised (SOF paths are absolute, not resolved)."""
    tree = _tree(one_set, tmp_path / "my archive")
    o = organise(tree, tmp_path / "sofs")
    assert o.sets == [] and len(o.ignored[BAD_PATH]) == 3 + 3    # the spectral-format table: not an input
    assert not list((tmp_path / "sofs").iterdir())
    os.symlink(tree, tmp_path / "link")
    o = organise(tmp_path / "link", tmp_path / "sofs2")
    assert len(o.sets) == 1 and o.sets[0].complete and BAD_PATH not in o.ignored
    assert all(line.startswith(f"{tmp_path / 'link'}/") for line in o.sets[0].sof.read_text().splitlines())
    load_frames(o.sets[0].sof)


def test_same_exposure_twice_one_kept_the_others_reported(one_set, tmp_path):
    """The tester's case: raws 01-03, a byte-identical copy of 01 and a gzip copy of 03 (and here a link to
    02, and a copy of 02 without ARCFILE but the same DATE-OBS): one frame of each exposure is kept, the
    uncompressed one even where the compressed copy's path sorts first; the others are reported as
    [duplicate-input] naming the frame kept (was: all in one set, which `run` refuses)."""
    tree = _tree(one_set, tmp_path / "tree")
    raw = tree / "raw"
    (tree / "a").mkdir()
    shutil.copyfile(raw / "SOXS_VIS_FLAT_QTH_01.fits", tree / "z_copy_01.fits")
    with open(raw / "SOXS_VIS_FLAT_QTH_03.fits", "rb") as fin, gzip.open(tree / "a" / "f3.fits.gz", "wb") as fout:
        shutil.copyfileobj(fin, fout)
    os.symlink(raw / "SOXS_VIS_FLAT_QTH_02.fits", tree / "z_link_02.fits")
    shutil.copyfile(raw / "SOXS_VIS_FLAT_QTH_02.fits", tree / "z_noarc_02.fits")
    with fits.open(tree / "z_noarc_02.fits", mode="update") as hl:
        del hl[0].header["ARCFILE"]
        hl[0].header["OBJECT"] = "changed: not byte-identical"
    o = organise(tree, tmp_path / "sofs")
    assert len(o.sets) == 1 and o.sets[0].complete
    assert sorted(f.path for f in o.sets[0].flats) == [raw / f"SOXS_VIS_FLAT_QTH_0{i}.fits" for i in (1, 2, 3)]
    dups = {p.name: o.notes[p] for p in o.ignored[DUPLICATE]}
    assert sorted(dups) == ["f3.fits.gz", "z_copy_01.fits", "z_link_02.fits", "z_noarc_02.fits"]
    assert all(n.startswith("[duplicate-input] ") for n in dups.values())
    assert f"z_copy_01.fits: identical bytes as {raw / 'SOXS_VIS_FLAT_QTH_01.fits'}, which is used instead" in \
        dups["z_copy_01.fits"]
    assert f": the same file as {raw / 'SOXS_VIS_FLAT_QTH_02.fits'}, which" in dups["z_link_02.fits"]
    assert "the same exposure (ARCFILE SOXS." in dups["f3.fits.gz"] and dups["f3.fits.gz"].endswith(
        f"as {raw / 'SOXS_VIS_FLAT_QTH_03.fits'}, which is used instead")
    assert "the same exposure (DATE-OBS 2025-" in dups["z_noarc_02.fits"]
    assert _sof_flats(o.sets[0].sof) == [f"SOXS_VIS_FLAT_QTH_0{i}.fits" for i in (1, 2, 3)]
    # the SOF runs (it was refused: [duplicate-input])
    r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "run", str(o.sets[0].sof), "-o", str(tmp_path / "out"),
                        "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_different_exposures_with_one_date_obs_are_not_duplicates(one_set, tmp_path):
    """Two raw frames with the same DATE-OBS but different ARCFILEs are two exposures (ARCFILE decides when
    both have one): both kept. A compressed copy whose uncompressed original is unreadable is kept."""
    tree = _tree(one_set, tmp_path / "tree")
    raw = tree / "raw"
    shutil.copyfile(raw / "SOXS_VIS_FLAT_QTH_01.fits", raw / "other_01.fits")
    with fits.open(raw / "other_01.fits", mode="update") as hl:
        hl[0].header["ARCFILE"] = "SOXS.another.fits"
    with open(raw / "SOXS_VIS_FLAT_QTH_03.fits", "rb") as fin, gzip.open(tree / "f3.fits.gz", "wb") as fout:
        shutil.copyfileobj(fin, fout)
    with open(raw / "SOXS_VIS_FLAT_QTH_03.fits", "r+b") as fh:
        fh.truncate(5000)
    o = organise(tree)
    assert DUPLICATE not in o.ignored
    assert sorted(f.path.name for f in o.sets[0].flats) == ["SOXS_VIS_FLAT_QTH_01.fits", "SOXS_VIS_FLAT_QTH_02.fits",
                                                           "f3.fits.gz", "other_01.fits"]
    assert o.notes[raw / "SOXS_VIS_FLAT_QTH_03.fits"].startswith("[unreadable-fits] ")


def test_organise_cli_unwritable_sof_dir_is_exit_2(one_set, tmp_path):
    (tmp_path / "file").write_text("x")
    r = subprocess.run([sys.executable, "-m", "soxs_mflat.cli", "organise", str(one_set), "--sof-dir",
                        str(tmp_path / "file" / "sofs")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"--sof-dir {tmp_path / 'file' / 'sofs'}: cannot write SOFs" in r.stderr


def test_sof_name_of_a_slit_with_a_slash_is_one_file(one_set, tmp_path):
    """A header value with '/' or a space (here the slit) is no folder in the SOF's name (was: the write
    failed, FileNotFoundError)."""
    tree = _tree(one_set, tmp_path / "tree")
    for p in (tree / "raw").iterdir():
        fits.setval(p, "HIERARCH ESO INS VISE NAME", value="SLIT 1.0/5")
    o = organise(tree, tmp_path / "sofs")
    assert o.sets[0].key["slit"] == "SLIT 1.0/5" and o.sets[0].complete
    assert [p.name for p in (tmp_path / "sofs").iterdir()] == ["20251012T111444_VIS_2X2_1_MFLAT_QTH_SLIT_1_0_5_20_0S_SOXS.sof"]



def test_one_detector_per_setup_on_every_night(archive):
    """The simulated archive stores one static bad-pixel map per setup (its first night's), but drew new
    defects every night: on night 2 none of the truth's 'in the static map' pixels (DEFECTS bit 8) was in the
    map, and N LOW SENS jumped 30-50x (a false trend in qc_trends.pdf)."""
    import numpy as np
    from astropy.io import fits
    root, truth = archive
    for s in truth["sets"]:
        static = fits.getdata(root / "archive" / s["calibs"]["BP_MAP_RP"][0]) != 0
        in_map = (fits.getdata(root / "truth" / s["truth"], "DEFECTS") & 8) != 0
        assert in_map.any() and np.array_equal(in_map, static), (s["id"], int(in_map.sum()), int((in_map & static).sum()))
    nights = {s["night"] for s in truth["sets"]}
    assert len(nights) == 2
