// soxs_mflat._core: pybind11 face of the C++ master-flat engine.
#include "convert.hpp"

void bind_kernels(py::module_& m);
void bind_orders(py::module_& m);
void bind_master(py::module_& m);
void bind_prep(py::module_& m);

// The core's parameter defaults (soxs/mflat.hpp, from data/parameters.yaml's SOXS VIS column), for the
// Python wrappers' signatures (soxs_mflat.core): written once, in C++.
static py::dict defaults() {
  const soxs::ClipParams c{}; const soxs::MasterFlatParams m{}; const soxs::BackgroundParams b{};
  const soxs::LowSensParams l{}; const soxs::UvbParams u{};
  py::dict d;
  d["clip"] = py::dict(py::arg("sigma_lower") = c.sigma_lower, py::arg("sigma_upper") = c.sigma_upper,
                       py::arg("max_iters") = c.max_iters, py::arg("error_floor") = c.error_floor);
  d["norm"] = py::dict(py::arg("clip_sigma") = soxs::NORM_CLIP_SIGMA, py::arg("clip_iters") = soxs::NORM_CLIP_ITERS);
  d["fit"] = py::dict(py::arg("clip_sigma") = m.fit_clip_sigma, py::arg("max_iters") = m.fit_clip_iters);
  d["background"] = py::dict(py::arg("margin") = b.margin, py::arg("spline_deg") = b.spline_deg,
                             py::arg("smooth_sigma") = b.smooth_sigma, py::arg("outer_width") = b.outer_width,
                             py::arg("end_margin") = b.end_margin, py::arg("halos") = b.halos);
  d["low_sens"] = py::dict(py::arg("clip_sigma") = l.clip_sigma, py::arg("half_window") = l.half_a);
  d["stitch"] = py::dict(py::arg("offset") = u.offset);
  return d;
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "soxs-mflat C++ core (float32 kernels; see soxs_mflat.core for documented wrappers)";
  bind_kernels(m);
  bind_orders(m);
  bind_master(m);
  bind_prep(m);
  m.attr("DEFAULTS") = defaults();
}
