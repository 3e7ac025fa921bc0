// Recipe parameter names (data/parameters.yaml) to the core's parameter structs.
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "soxs/mflat.hpp"
#include "validate.hpp"

namespace soxs {
namespace {

// Integers must be exact (no silent truncation of 3.5, no undefined cast of 1e300), reals finite.
template <class T>
void get(const NamedParams& m, const char* key, T& out) {
  auto it = m.find(key);
  if (it == m.end()) return;
  const double v = it->second;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  if constexpr (std::is_integral_v<T>) {
    if (!(v == std::floor(v) && std::fabs(v) <= 2147483647.0))
      throw std::invalid_argument("parameter " + std::string(key) + " must be an integer, got " + buf);
  } else if (!std::isfinite(v)) {
    throw std::invalid_argument("parameter " + std::string(key) + " must be finite, got " + buf);
  }
  out = static_cast<T>(v);
}

void edge_params(const NamedParams& m, EdgeParams& e) {
  get(m, "slice_length_for_edge_detection", e.slice_length);
  get(m, "slice_width_for_edge_detection", e.slice_width);
  get(m, "min_percentage_threshold_for_edge_detection", e.min_pct);
  get(m, "max_percentage_threshold_for_edge_detection", e.max_pct);
  get(m, "edge_min_snr", e.min_snr);
}

}  // namespace

MasterFlatParams master_params_from(const NamedParams& m) {
  MasterFlatParams p;
  get(m, "stacked_clipping_sigma", p.stack.sigma_lower);
  p.stack.sigma_upper = p.stack.sigma_lower;
  get(m, "stacked_clipping_iterations", p.stack.max_iters);
  get(m, "centre_order_window", p.centre_window);
  edge_params(m, p.edges);
  get(m, "order_deg", p.order_deg);
  get(m, "disp_axis_deg", p.disp_deg);
  get(m, "poly_fitting_residual_clipping_sigma", p.fit_clip_sigma);
  get(m, "poly_clipping_iteration_limit", p.fit_clip_iters);
  double bg = p.subtract_background ? 1 : 0;
  get(m, "subtract_background", bg);
  p.subtract_background = bg != 0;
  get(m, "bspline_deg", p.background.spline_deg);
  get(m, "gaussian_blur_sigma", p.background.smooth_sigma);
  get(m, "background_margin", p.background.margin);
  get(m, "low_sensitivity_clipping_sigma", p.low_sens.clip_sigma);
  get(m, "low_sensitivity_half_window", p.low_sens.half_a);
  p.low_sens.half_b = p.low_sens.half_a;
  get(m, "threads", p.threads);
  return p;
}

UvbParams uvb_params_from(const NamedParams& m) {
  UvbParams p;
  double scale = 1;
  get(m, "scale_d2_to_qth", scale);
  p.scale_d2_to_qth = scale != 0;
  edge_params(m, p.edges);
  get(m, "order_deg", p.order_deg);
  get(m, "disp_axis_deg", p.disp_deg);
  get(m, "poly_fitting_residual_clipping_sigma", p.fit_clip_sigma);
  get(m, "poly_clipping_iteration_limit", p.fit_clip_iters);
  get(m, "threads", p.threads);
  return p;
}

void check_recipe_params(const NamedParams& named, size_t n_orders) {
  // image-size limits are checked again once the frames are known; here the largest detector
  detail::check_master_params(master_params_from(named), n_orders, detail::MAX_SIDE, detail::MAX_SIDE);
  detail::check_uvb_params(uvb_params_from(named), n_orders, detail::MAX_SIDE, detail::MAX_SIDE);
}

}  // namespace soxs
