"""The defaults of the kernels' APIs (C++ structs, pybind11 signatures, soxs_mflat.core) are the recipe's,
read here from data/parameters.yaml with PyYAML (not the package's reader): SOXS VIS for the single-lamp
kernels, X-shooter UVB for the stitching. A literal written again anywhere in that chain fails one of these."""
import inspect
import re
from pathlib import Path

import yaml

import soxs_mflat
from soxs_mflat import _core, core

YAML = Path(soxs_mflat.__file__).parent / "data" / "parameters.yaml"


def _contract(inst: str = "soxs", arm: str = "vis") -> dict:
    out = {}
    for name, d in yaml.safe_load(YAML.read_text()).items():
        v = d["default"]
        if isinstance(v, dict):
            v = v[inst]
            v = v[arm] if isinstance(v, dict) else v
        out[name] = v
    return out


# (kernel, argument) -> the recipe parameter it defaults to
KERNEL_ARGS = {
    ("clip_and_stack", "sigma_lower"): "stacked_clipping_sigma",
    ("clip_and_stack", "sigma_upper"): "stacked_clipping_sigma",
    ("clip_and_stack", "max_iters"): "stacked_clipping_iterations",
    ("fit_global_poly", "clip_sigma"): "poly_fitting_residual_clipping_sigma",
    ("fit_global_poly", "max_iters"): "poly_clipping_iteration_limit",
    ("fit_background", "margin"): "background_margin",
    ("fit_background", "spline_deg"): "bspline_deg",
    ("fit_background", "smooth_sigma"): "gaussian_blur_sigma",
    ("flag_low_sensitivity", "clip_sigma"): "low_sensitivity_clipping_sigma",
}


def _binding_defaults(fn) -> dict[str, str]:
    """Defaults as pybind11 prints them in the signature line of the docstring."""
    return dict(re.findall(r"(\w+): [^=,]+ = ([^,)]+)", fn.__doc__.splitlines()[0]))


def test_python_wrappers_default_to_the_recipe():
    c = _contract()
    for (fn, arg), name in KERNEL_ARGS.items():
        got = inspect.signature(getattr(core, fn)).parameters[arg].default
        assert got == c[name], (fn, arg, got, c[name])
    assert inspect.signature(core.flag_low_sensitivity).parameters["half_window"].default == \
        c["low_sensitivity_half_window"]


def test_bindings_default_to_the_recipe():
    c = _contract()
    for (fn, arg), name in KERNEL_ARGS.items():
        assert float(_binding_defaults(getattr(_core, fn))[arg]) == float(c[name]), (fn, arg)
    lows = _binding_defaults(_core.flag_low_sensitivity)
    assert int(lows["half_a"]) == int(lows["half_b"]) == c["low_sensitivity_half_window"]


def test_generated_struct_defaults_per_arm():
    """param_defaults.hpp holds every parameter for the two arms the structs take: SOXS VIS and UVB."""
    text = (Path(__file__).parent.parent / "cpp" / "include" / "soxs" / "param_defaults.hpp").read_text()
    for ns, (inst, arm) in {"soxs_vis": ("soxs", "vis"), "xsh_uvb": ("xshooter", "uvb")}.items():
        block = text.split(f"namespace {ns} {{")[1].split("}")[0]
        got = dict(re.findall(r"constexpr \w+ (\w+) = ([^;]+);", block))
        for name, v in _contract(inst, arm).items():
            want = ("true" if v else "false") if isinstance(v, bool) else v
            assert (got[name] == want) if isinstance(v, bool) else float(got[name]) == float(want), (ns, name)
