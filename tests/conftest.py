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
