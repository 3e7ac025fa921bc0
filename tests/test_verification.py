"""Verification through the API (run_mflat): warnings, existing products, inputs left unmodified. Every
bad input (each rule of the input contract) lives in tests/input_cases.py and runs through the CLI and
esorex in tests/test_inputs_esorex.py."""
from pathlib import Path

import numpy as np
import pytest

from soxs_mflat.frames import VerificationError
from soxs_mflat.recipe import run_mflat
from soxs_mflat.simulate.run import simulate_set


@pytest.fixture(scope="module")
def vis(module_tmp):
    return simulate_set("soxs", "vis", module_tmp("vset"), nflats=3, seed=5)


def _entries(w):
    return [ln.split() for ln in Path(w["sof"]).read_text().splitlines() if ln.strip()]


def test_api_raises_the_rule_before_writing(vis, tmp_path):
    sof = tmp_path / "bad.sof"
    sof.write_text("\n".join(" ".join(e) for e in _entries(vis) if e[1] != "MASTER_BIAS_VIS") + "\n")
    with pytest.raises(VerificationError, match=r"^\[missing-bias\] SOXS VIS flats need a MASTER_BIAS_VIS") as info:
        run_mflat(sof, tmp_path / "out")
    assert info.value.rule == "missing-bias" and isinstance(info.value, ValueError)
    assert not (tmp_path / "out").exists()


def test_few_flats_warn_and_existing_products_are_kept(vis, tmp_path):
    entries = [e for e in _entries(vis) if e[1] != "LAMP,FLAT_VIS"][:] + [e for e in _entries(vis)
                                                                          if e[1] == "LAMP,FLAT_VIS"][:2]
    sof = tmp_path / "two.sof"
    sof.write_text("\n".join(" ".join(e) for e in entries) + "\n")
    res = run_mflat(sof, tmp_path / "out")
    assert any("only 2 FLAT frame(s)" in w for w in res.warnings)
    before = {p: p.stat().st_mtime_ns for p in res.products.values()}
    from soxs_mflat.errors import InputError
    with pytest.raises(InputError, match="already exist.*--overwrite"):
        run_mflat(sof, tmp_path / "out")
    assert {p: p.stat().st_mtime_ns for p in res.products.values()} == before
    res2 = run_mflat(sof, tmp_path / "out", overwrite=True)
    assert all(p.stat().st_mtime_ns >= before[p] for p in res2.products.values())
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_inputs_are_not_modified(vis, tmp_path):
    import hashlib
    digest = {p: hashlib.md5(Path(p).read_bytes()).hexdigest() for p, _ in _entries(vis)}
    run_mflat(vis["sof"], tmp_path / "out")
    assert digest == {p: hashlib.md5(Path(p).read_bytes()).hexdigest() for p, _ in _entries(vis)}


def test_parameter_docs_and_shipped_settings_are_generated_from_the_single_source():
    from importlib import resources

    from soxs_mflat import settings
    doc = (Path(__file__).parent.parent / "docs" / "recipe.md").read_text()
    assert settings.markdown_table() in doc
    shipped = resources.files("soxs_mflat").joinpath("data/settings.yaml").read_text()
    assert shipped == settings.example_yaml()


def test_identical_bytes_found_past_equal_headers(tmp_path):
    """Duplicates are hashed whole only when sizes and the first 64 kB agree: a file that differs from
    another only in its last byte is not a duplicate, a byte copy is."""
    from astropy.io import fits

    from soxs_mflat.frames import Frame, _refuse_duplicates
    data = np.random.default_rng(2).integers(0, 255, 200_000, dtype=np.uint8).tobytes()
    paths = {n: tmp_path / f"{n}.fits" for n in "abc"}
    paths["a"].write_bytes(data)
    paths["b"].write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    paths["c"].write_bytes(data)
    frame = lambda n: Frame(paths[n], fits.Header(), "FLAT")  # noqa: E731
    _refuse_duplicates([frame("a"), frame("b")])
    with pytest.raises(VerificationError, match="c.fits"):
        _refuse_duplicates([frame("a"), frame("b"), frame("c")])
