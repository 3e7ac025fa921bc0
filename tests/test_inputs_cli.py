"""The input contract through the Python CLI (the bad inputs of tests/input_cases.py run through
both front ends in tests/test_inputs_esorex.py): the dialects and forms of good input that the field produces (soxspipe-organised tags, esorex's three-column SOF, relative paths,
CDELT-only binning, one FITS file in place of a SOF) are accepted."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import input_cases as ic
from soxs_mflat.cli import main
from soxs_mflat.frames import load_frames
from soxs_mflat.prepare import prepare_raw
from soxs_mflat.rules import VerificationError
from soxs_mflat.simulate.run import simulate_set


@pytest.fixture
def vis(inputs_vis):
    return inputs_vis


@pytest.fixture
def nir(inputs_nir):
    return inputs_nir


@pytest.fixture
def uvb(inputs_uvb):
    return inputs_uvb


def cli_refuses(sof: Path, out: Path, rule: str, name: str, capsys):
    rc = main(["run", str(sof), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"[{rule}]" in err and name in err, err
    assert "Traceback" not in err
    assert not out.exists()
    return err


def test_too_many_frames_is_found_before_any_file_is_read(tmp_path, capsys):
    rows = [[str(tmp_path / f"f{i}.fits"), "LAMP,FLAT_VIS"] for i in range(256)]   # none exists
    cli_refuses(ic.write_sof(tmp_path, rows), tmp_path / "out", "too-many-frames", "bad.sof", capsys)


def test_binary_sof_is_a_clean_error(tmp_path, capsys):
    sof = tmp_path / "bin.sof"
    sof.write_bytes(bytes(range(256)) * 4)
    cli_refuses(sof, tmp_path / "out", "sof-format", "bin.sof", capsys)


def test_soxspipe_organiser_tags_for_nir_lamp_off_frames(nir, tmp_path):
    """soxspipe's organiser tags lamp-on and lamp-off NIR frames '<DPR TYPE>_<ARM>': both are read by
    their DPR TECH, so the set classifies exactly like the esorex-tagged one."""
    rows = [[p, t.replace("_OFF_", "_")] for p, t in ic.entries(nir)]
    assert {t for _, t in rows} >= {"LAMP,FLAT_NIR"} and not any("OFF" in t for _, t in rows)
    organised = load_frames(ic.write_sof(tmp_path, rows, "organised.sof"))
    esorex = load_frames(nir["sof"])
    assert [(f.path, f.kind) for f in organised] == [(f.path, f.kind) for f in esorex]
    assert [f.kind for f in organised].count("LAMPOFF") == len(nir["off"]) == 2


def test_esorex_three_column_sof_with_comments(vis, tmp_path):
    rows = [[p, t, "CALIB" if t.startswith(("MASTER", "ORDER", "BP_")) else "RAW"] for p, t in ic.entries(vis)]
    sof = tmp_path / "three.sof"
    sof.write_text("# written for esorex\n\n" + "\n".join(" ".join(r) for r in rows) + "\n")
    got = [(f.path, f.tag, f.kind) for f in load_frames(sof)]
    assert got == [(f.path, f.tag, f.kind) for f in load_frames(vis["sof"])]
    bad = tmp_path / "group.sof"
    bad.write_text(f"{rows[0][0]} {rows[0][1]} SCIENCE\n")
    with pytest.raises(VerificationError, match=r"group.sof:1: unknown frame group 'SCIENCE'") as e:
        load_frames(bad)
    assert e.value.rule == "sof-format"


def test_relative_paths_resolve_against_the_working_directory(vis, tmp_path, monkeypatch):
    """esorex's rule, for both front ends: relative to the working directory, not to the SOF."""
    root = Path(vis["sof"]).parent
    rows = [[os.path.relpath(p, root), t] for p, t in ic.entries(vis)]
    sof = ic.write_sof(root, rows, "relative.sof")
    monkeypatch.chdir(root)
    assert [f.path.resolve() for f in load_frames(sof)] == [Path(p) for p, _ in ic.entries(vis)]
    monkeypatch.chdir(tmp_path)     # the paths exist only relative to the SOF's folder now
    with pytest.raises(VerificationError, match="relative SOF paths are resolved against the working directory") as e:
        load_frames(sof)
    assert e.value.rule == "missing-file" and str(rows[0][0]) in str(e.value)


def test_one_fits_file_in_place_of_a_sof(vis):
    frames = load_frames(vis["raw"][0])
    assert [(f.path, f.kind) for f in frames] == [(Path(vis["raw"][0]), "FLAT")]


def test_binning_from_cdelt_only(uvb, tmp_path):
    """X-shooter headers with binning only as CDELT1/2: verification and preparation both use them."""
    raw = str(uvb["raw"][0])
    bare = ic.copy_with(tmp_path, raw, delete=["HIERARCH ESO DET WIN1 BINX", "HIERARCH ESO DET WIN1 BINY"])
    assert "ESO DET WIN1 BINX" not in fits.getheader(bare) and fits.getval(bare, "CDELT2") == 2.0
    np.testing.assert_array_equal(prepare_raw(bare)[0], prepare_raw(raw)[0])
    rows = ic.replace(ic.entries(uvb), str(Path(raw).resolve()), bare)
    from soxs_mflat.verify import verify
    verify(load_frames(ic.write_sof(tmp_path, rows)))   # no mixed-binning: CDELT says 1x2 too


@pytest.mark.parametrize("suffix", [".gz", ".Z"])
def test_a_compressed_input_is_decompressed_once(vis, tmp_path, monkeypatch, suffix):
    """A .fits.Z (or .fits.gz) was decompressed twice in the Python front end: once to read and classify its
    header, once to load its pixels. The bytes of the first are now used for the second; the products are
    those of the plain files (the run's master flat, bit for bit)."""
    import gzip

    import ncompress
    import uncompresspy
    from soxs_mflat.recipe import run_mflat
    rows = ic.entries(vis)
    packed = {}
    for path, tag in rows:
        if tag in ("LAMP,FLAT_VIS", "MASTER_BIAS_VIS", "BP_MAP_RP_VIS"):
            dst = tmp_path / (Path(path).name + suffix)
            raw = Path(path).read_bytes()
            dst.write_bytes(gzip.compress(raw) if suffix == ".gz" else ncompress.compress(raw))
            packed[path] = str(dst)
    opened: list[str] = []

    def counting(cls):
        class Counting(cls):
            def __init__(self, filename=None, *a, **k):
                opened.append(str(filename if isinstance(filename, (str, os.PathLike)) else filename.name))
                super().__init__(filename, *a, **k)
        return Counting
    if suffix == ".gz":   # the front end inflates .gz itself (frames.gunzip); astropy would use GzipFile
        import soxs_mflat.frames as fr
        real = fr.gunzip
        monkeypatch.setattr(fr, "gunzip", lambda path: (opened.append(str(path)), real(path))[1])
        monkeypatch.setattr(gzip, "GzipFile", counting(gzip.GzipFile))
    else:   # the front end decodes .Z with ncompress (from the file's bytes); astropy would use uncompresspy
        real_z = ncompress.decompress
        sizes = {len(Path(p).read_bytes()): p for p in packed.values()}
        monkeypatch.setattr(ncompress, "decompress", lambda b: (opened.append(sizes.get(len(b), "?")), real_z(b))[1])
        monkeypatch.setattr(uncompresspy, "LZWFile", counting(uncompresspy.LZWFile))
    sof = ic.write_sof(tmp_path, [[packed.get(p, p), t] for p, t in rows])
    res = run_mflat(sof, tmp_path / "out", plots=False)
    assert sorted(opened) == sorted(packed.values()), opened    # each compressed file decompressed once
    plain = run_mflat(vis["sof"], tmp_path / "plain", plots=False)
    np.testing.assert_array_equal(fits.getdata(res.products["MFLAT"]), fits.getdata(plain.products["MFLAT"]))
    # the calibrations' DATAMD5 is that of their FITS data units (the decompressed stream), as for the plain files
    h, hp = fits.getheader(res.products["MFLAT"]), fits.getheader(plain.products["MFLAT"])
    md5 = [k for k in hp if k.startswith("ESO PRO REC1 CAL") and k.endswith("DATAMD5")]
    assert len(md5) == 3 and all(h[k] == hp[k] for k in md5), [(h[k], hp[k]) for k in md5]
