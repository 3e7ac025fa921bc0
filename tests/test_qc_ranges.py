"""QC ranges: the contract's defaults pushed both ways, soxspipe's qc-acceptable-ranges block and a whole
soxspipe settings file, the night of an observation."""
import logging
import re

import pytest
import yaml

from soxs_mflat import contract, settings
from soxs_mflat.errors import InputError
from soxs_mflat.qc import default_ranges, definitions, failures, night_of, parse_ranges, qc_record, qc_table

ARMS = [("soxs", "vis"), ("soxs", "nir"), ("xshooter", "uvb"), ("xshooter", "vis"), ("xshooter", "nir")]


def test_every_range_names_a_metric_and_is_ordered():
    for inst, arms in contract.section("qc")["ranges"].items():
        for arm, ranges in arms.items():
            for name, (lo, hi) in ranges.items():
                assert name in definitions(), (inst, arm, name)
                assert lo <= hi


@pytest.mark.parametrize("inst,arm", ARMS)
def test_each_default_range_pushed_both_ways(inst, arm):
    ranges = default_ranges(inst, arm)
    assert ranges, "every arm has ranges (X-shooter's from the simulator's nominal sets)"
    for name, (lo, hi) in ranges.items():
        eps = max(abs(lo), abs(hi), 1.0) * 1e-9
        flags = [qc_table({name: v}, ranges)[0].flag for v in (lo, hi, lo - eps, hi + eps)]
        assert flags == ["pass", "pass", "fail", "fail"], (name, lo, hi)   # inclusive at both ends


def test_qc_without_range_is_reported_not_flagged():
    rows = qc_table({"N LOW SENS": 12, "X RES SD": 0.5}, {"X RES SD": (0.0, 0.37)})
    assert [(r.name, r.value, r.flag) for r in rows] == [("X RES SD", 0.5, "fail"), ("N LOW SENS", 12, "none")]
    assert [r.name for r in failures(rows)] == ["X RES SD"]
    rec = qc_record(rows, {"instrument": "SOXS", "arm": "VIS", "date_obs": "2025-10-12T11:14:44.000"})
    assert rec["passed"] is False and rec["n_failed"] == 1 and rec["night"] == "2025-10-11"
    assert rec["qc"][1] == {"name": "N LOW SENS", "value": 12, "unit": "pixels", "range": None, "flag": "none",
                            "comment": definitions()["N LOW SENS"][1]}


def test_soxspipe_block_keys_and_errors():
    got = parse_ranges({"inner-order-pix-sum": [1e5, 7e5], "X_RES_SD": [0, 0.3], "detector-temp": [0, 165]}, "f")
    assert got == {"INNER ORDER PIX SUM": (1e5, 7e5), "X RES SD": (0.0, 0.3)}
    for block, match in (({"nonsense": [0, 1]}, "unknown QC 'nonsense'; known: .*x-res-sd"),
                         ({"ordexp90": [2, 1]}, "low 2 > high 1"), ({"ordexp90": [0, float("nan")]}, "two numbers"),
                         ({"ordexp90": 5}, r"must be \[low, high\]"), ([1, 2], "must map")):
        with pytest.raises(InputError, match=match):
            parse_ranges(block, "f")


SOXSPIPE_FILE = """
version: 1
instrument: soxs
workspace-root-dir: ./
soxs-mbias:
  frame-clipping-sigma: 3
soxs-mdark:
  frame-clipping-sigma: 3
soxs-mflat:
  subtract_background: True
  stacked-clipping-sigma: 15
  stacked-clipping-iterations: 3
  vis:
    centre-order-window: 10
    order-deg: 3
    qc-acceptable-ranges:
      detector-temp: [0, 165]
      inner-order-pix-mean: [0.9, 1.1]
      inner-order-pix-sum: [100000, 700000]
      x-res-sd: [0, 0.37]
  nir:
    order-deg: 6
    qc-acceptable-ranges:
      x-res-sd: [0, 0.2]
background-subtraction:
  bspline-deg: 1
  gaussian-blur-sigma: 40
logging settings:
  handlers:
    file: {filename: /Users/Dave/.config/soxspipe/soxspipe.log}
"""


def test_whole_soxspipe_settings_file(tmp_path, caplog):
    f = tmp_path / "soxspipe.yaml"
    f.write_text(SOXSPIPE_FILE)
    with caplog.at_level(logging.WARNING, logger="soxs_mflat"):
        p = settings.resolve("soxs", "vis", f)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "ignoring 6 settings" in warned[0] and "soxs-mbias" in warned[0]
    assert p["stacked_clipping_sigma"] == 15 and p["order_deg"] == 3
    assert p["bspline_deg"] == 1 and p["gaussian_blur_sigma"] == 40     # the shared background block
    assert "qc_acceptable_ranges" not in p                              # not a parameter (nor a PARAM card)
    vis = settings.qc_ranges("soxs", "vis", f)
    assert vis["INNER ORDER PIX SUM"] == (1e5, 7e5)                      # the file's, not the default 7.5e5
    assert vis["ORDEXP90"] == default_ranges("soxs", "vis")["ORDEXP90"]  # defaults kept where not given
    nir = settings.qc_ranges("soxs", "nir", f)
    assert nir["X RES SD"] == (0.0, 0.2) and nir["INNER ORDER PIX SUM"] == (1e6, 1.2e6)


def test_example_yaml_for_one_arm_lists_its_ranges(tmp_path):
    text = settings.example_yaml("xshooter", "nir")
    lines = text.splitlines()
    i = lines.index("    # qc-acceptable-ranges:")
    block = yaml.safe_load("\n".join(line.replace("    #   ", "", 1) for line in lines[i + 1:]))
    assert parse_ranges(block, "example") == default_ranges("xshooter", "nir")
    assert "  nir:" in lines and "    # order_deg: 6" in lines
    # uncommented, it sets the NIR arm only: another arm keeps its own defaults
    f = tmp_path / "nir.yaml"
    value = re.compile(r"^    # ([a-z_]+: \S|qc-acceptable-ranges:$|  [a-z0-9-]+: \[)")   # not the descriptions
    f.write_text("\n".join(ln.replace("# ", "", 1) if value.match(ln) else ln for ln in lines) + "\n")
    assert "\n    order_deg: 6\n" in f.read_text() and "\n      x-res-sd: [" in f.read_text()
    assert settings.resolve("xshooter", "nir", f) == settings.resolve("xshooter", "nir")
    assert settings.resolve("xshooter", "vis", f) == settings.resolve("xshooter", "vis")
    assert settings.qc_ranges("xshooter", "nir", f) == default_ranges("xshooter", "nir")


def test_night_of():
    assert night_of("2025-10-12T11:14:44.000") == "2025-10-11"    # morning calibrations: the previous night
    assert night_of("2025-10-12T23:30:00") == "2025-10-12"
    assert night_of(None) is None and night_of("garbage") is None


def test_top_level_and_arm_ranges_merge_per_qc(tmp_path):
    """The arm's block overrides the QC it names; the top level's other ranges stay (a whole arm block
    used to replace them: x-res-sd fell back to its default)."""
    f = tmp_path / "s.yaml"
    f.write_text("soxs-mflat:\n  qc-acceptable-ranges:\n    x-res-sd: [0, 0.005]\n    ordexp90: [1, 2]\n"
                 "  vis:\n    qc-acceptable-ranges:\n      inner-order-pix-mean: [0.95, 1.05]\n      ordexp90: [3, 4]\n")
    vis = settings.qc_ranges("soxs", "vis", f)
    assert vis["X RES SD"] == (0.0, 0.005) and vis["INNER ORDER PIX MEAN"] == (0.95, 1.05) and vis["ORDEXP90"] == (3, 4)
    nir = settings.qc_ranges("soxs", "nir", f)
    assert nir["X RES SD"] == (0.0, 0.005) and nir["ORDEXP90"] == (1, 2)
    assert nir["INNER ORDER PIX MEAN"] == default_ranges("soxs", "nir")["INNER ORDER PIX MEAN"]


@pytest.mark.parametrize("block, match", [
    ("  nir:\n    qc-acceptable-ranges:\n      x-res-sdd: [0, 0.1]\n", r"s\.yaml \(nir block\): .*unknown QC 'x-res-sdd'"),
    ("  uvb:\n    order-degg: 3\n", r"unknown parameter 'order_degg' \(.*s\.yaml \(uvb block\)\)"),
    ("  nir:\n    order-deg: many\n", r"order_deg \(.*s\.yaml \(nir block\)\) must be int"),
    # a misspelt arm block: not "unknown parameter 'vsi'" alone, but what the arm blocks are
    ("  vsi:\n    order-deg: 4\n", r"unknown parameter or arm block 'vsi' \(.*s\.yaml\) \(did you mean 'vis'\?\): "
                                   r"the arm blocks are uvb:, vis:, nir:"),
    ("  VIS:\n    order-deg: 4\n", r"arm block 'VIS' .*did you mean 'vis'"),
    ("  uvb:\n    slice-lenght-for-edge-detection: 3\n",
     r"unknown parameter 'slice_lenght_for_edge_detection' .*did you mean 'slice_length_for_edge_detection'"),
])
def test_every_arm_block_is_checked_not_only_the_one_reduced(tmp_path, block, match):
    f = tmp_path / "s.yaml"
    f.write_text("soxs-mflat:\n  order-deg: 3\n" + block)
    with pytest.raises(InputError, match=match):
        settings.resolve("soxs", "vis", f)


@pytest.mark.parametrize("value", ["[0, .inf]", "[-.inf, 1]", "[0, 1.0e400]", "['0', 'inf']", "[0, -.Inf]"])
@pytest.mark.parametrize("where", ["top", "vis", "nir"])
def test_infinite_bounds_refused_up_front(tmp_path, value, where):
    """Infinite bounds are refused like NaN bounds, by every reader of the file, naming the file, its
    block and the QC (was: accepted, then qc.json failed to write: 'Out of range float values are not
    JSON compliant', exit 1 after processing). soxspipe's files give plain numbers."""
    f = tmp_path / "s.yaml"
    block = f"    qc-acceptable-ranges:\n      x-res-sd: {value}\n"
    f.write_text("soxs-mflat:\n" + ("  qc-acceptable-ranges:\n    x-res-sd: " + value + "\n" if where == "top"
                                    else f"  {where}:\n" + block))
    origin = re.escape(str(f) + ("" if where == "top" else f" ({where} block)"))
    want = (rf"^{origin}: qc-acceptable-ranges: x-res-sd must be two finite numbers, got .* "
            r"\(for an open end give a large number, e\.g\. 1e30\)$")
    if "-.Inf" in value:      # low > high is found first
        want = rf"^{origin}: qc-acceptable-ranges: x-res-sd has low 0 > high -inf"
    for call in (lambda: settings.resolve("soxs", "vis", f), lambda: settings.check_file(f)):
        with pytest.raises(InputError, match=want):
            call()


def test_large_finite_bound_is_an_open_end(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("soxs-mflat:\n  vis:\n    qc-acceptable-ranges:\n      x-res-sd: [0, 1.0e+30]\n")
    assert settings.qc_ranges("soxs", "vis", f)["X RES SD"] == (0.0, 1e30)
    rec = qc_record(qc_table({"X RES SD": 5.0}, settings.qc_ranges("soxs", "vis", f)),
                    {"instrument": "SOXS", "arm": "VIS", "date_obs": "2025-10-12T11:14:44.000"})
    assert rec["qc"][0]["range"] == [0.0, 1e30] and rec["qc"][0]["flag"] == "pass"


@pytest.mark.parametrize("value", ["[true, 1]", "[0, false]", "[0]", "[0, 1, 2]", "'0 1'"])
def test_a_range_of_booleans_or_not_two_values_is_refused(tmp_path, value):
    """YAML's true/false were taken as 1 and 0 (float(True)); a range is two numbers."""
    f = tmp_path / "s.yaml"
    f.write_text(f"soxs-mflat:\n  qc-acceptable-ranges:\n    x-res-sd: {value}\n")
    with pytest.raises(InputError, match=r"x-res-sd must be \[low, high\], got"):
        settings.qc_ranges("soxs", "vis", f)


def test_docs_qc_table_gives_the_contract_units():
    """docs/recipe.md's QC table said e⁻ / px where the products, qc.json and qc.yaml say electrons / pixels;
    every metric it names has the contract's unit ('–' for none)."""
    import re
    from pathlib import Path

    from soxs_mflat.qc import definitions
    doc = (Path(__file__).resolve().parent.parent / "docs" / "recipe.md").read_text()
    seen = set()
    for line in doc[doc.index("| QC | description | unit |"):].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name in (n.strip() for n in re.split(r",| / ", cells[0])):
            assert name in definitions(), name
            assert cells[2] == (definitions()[name][0] or "–"), (name, cells[2])
            seen.add(name)
    assert seen == set(definitions()), set(definitions()) - seen
