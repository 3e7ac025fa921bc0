import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402

# a simulated two-night archive shared by the organiser and EDPS workflow tests: SOXS VIS in two
# binnings (1x2 first: the 2x2 bias is nearer its flats than its own) both nights, and on the first
# night X-shooter UVB (D2 15 s + QTH 4 s) and X-shooter NIR (lamp-off frames)
ARCHIVE_SETUPS = ["soxs/vis/1x2", "soxs/vis/2x2", "xshooter/uvb/2x2@0", "xshooter/nir/1x1@0"]


@pytest.fixture(scope="session")
def sim_archive(tmp_path_factory):
    from soxs_mflat.simulate.archive import simulate_archive
    out = tmp_path_factory.mktemp("archive")
    return out, simulate_archive(out, 2, setups=ARCHIVE_SETUPS, nflats=2, compress=("", "gz"))
