import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


import pytest  # noqa: E402


# small simulated sets shared by the input-contract tests (tests/input_cases.py), written once per session
@pytest.fixture(scope="session")
def inputs_vis(tmp_path_factory):
    from soxs_mflat.simulate.run import simulate_set
    return simulate_set("soxs", "vis", tmp_path_factory.mktemp("inputs_vis"), nflats=2, seed=5)


@pytest.fixture(scope="session")
def inputs_nir(tmp_path_factory):
    from soxs_mflat.simulate.run import simulate_set
    return simulate_set("xshooter", "nir", tmp_path_factory.mktemp("inputs_nir"), nflats=2, seed=6)


@pytest.fixture(scope="session")
def inputs_uvb(tmp_path_factory):
    from soxs_mflat.simulate.run import simulate_set
    return simulate_set("xshooter", "uvb", tmp_path_factory.mktemp("inputs_uvb"), nflats=1, binning="2x2", seed=7)

# a simulated two-night archive shared by the organiser and EDPS workflow tests: SOXS VIS in two
# binnings (1x2 first: the 2x2 bias is nearer its flats than its own) both nights, and on the first
# night X-shooter UVB (D2 15 s + QTH 4 s) and X-shooter NIR (lamp-off frames); the frames of a set
# plain, .fits.gz, .fits.fz (tile-compressed) or .fits.Z (unix compress), all four forms present
ARCHIVE_SETUPS = ["soxs/vis/1x2", "soxs/vis/2x2", "xshooter/uvb/2x2@0", "xshooter/nir/1x1@0"]


@pytest.fixture(scope="session")
def sim_archive(tmp_path_factory):
    from soxs_mflat.simulate.archive import simulate_archive
    out = tmp_path_factory.mktemp("archive")
    return out, simulate_archive(out, 2, setups=ARCHIVE_SETUPS, nflats=2, compress=("", "gz", "fz", "Z"))


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    """``module_tmp(name)``: a directory for a module-scoped fixture, removed when the module's tests are
    done (tmp_path_factory's would stay until the session ends, ~12 GB on a full run)."""
    made = []

    def make(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]
    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)
