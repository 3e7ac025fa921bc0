// Entry-point validation of sizes, polynomials, order lists, geometry and parameters.
#include "validate.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

#include "geometry.hpp"

namespace soxs::detail {
namespace {

std::string num(double v) {   // %g: the Python front end formats with :g, so texts agree
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void in_range(const char* name, double v, double lo, double hi) {
  if (!(v >= lo && v <= hi))
    throw std::invalid_argument("parameter " + std::string(name) + " must be in [" + num(lo) + ", " + num(hi) +
                                "], got " + num(v));
}

void positive(const char* name, double v, double hi = 1e6) {
  if (!(v > 0 && v <= hi))
    throw std::invalid_argument("parameter " + std::string(name) + " must be > 0 and <= " + num(hi) + ", got " +
                                num(v));
}

void check_edges(const EdgeParams& e, int64_t la, int64_t lb) {
  in_range("slice_length_for_edge_detection", e.slice_length, 8, double(la));
  in_range("slice_width_for_edge_detection", e.slice_width, 1, double(lb));
  if (e.slice_width % 2 != 1)   // a median across an odd number of lines (data/parameters.yaml: odd)
    throw std::invalid_argument("parameter slice_width_for_edge_detection must be odd, got " +
                                std::to_string(e.slice_width));
  in_range("min_percentage_threshold_for_edge_detection", e.min_pct, 1e-9, 99.999999);
  if (!(e.min_pct <= e.max_pct))   // the Python front end's text (settings._check)
    throw std::invalid_argument("parameter min_percentage_threshold_for_edge_detection = " + num(e.min_pct) +
                                " must not exceed max_percentage_threshold_for_edge_detection = " + num(e.max_pct));
  in_range("max_percentage_threshold_for_edge_detection", e.max_pct, 1e-9, 99.999999);
  in_range("edge_min_snr", e.min_snr, 0, 1e12);
  if (!(e.step_unbinned >= 1 && e.step_unbinned <= 1e6) || !(e.min_width >= 0 && e.min_width <= double(la)) ||
      e.median_filter < 1 || e.median_filter > 99)
    throw std::invalid_argument("edge detection: step, min_width or median_filter out of range");
}

void check_fit(int order_deg, int disp_deg, double clip_sigma, int clip_iters, size_t n_orders) {
  in_range("order_deg", order_deg, 0, MAX_POLY_DEG);
  in_range("disp_axis_deg", disp_deg, 0, MAX_POLY_DEG);
  positive("poly_fitting_residual_clipping_sigma", clip_sigma);
  in_range("poly_clipping_iteration_limit", clip_iters, 0, MAX_CLIP_ITERS);
  if (size_t(order_deg) >= n_orders)
    throw std::invalid_argument("order_deg = " + std::to_string(order_deg) + " needs more orders than the " +
                                std::to_string(n_orders) + " in the order table (order_deg must be below the number "
                                "of orders)");
}

}  // namespace

void check_image_size(int64_t ny, int64_t nx, const std::string& what) {
  if (ny < 1 || nx < 1 || ny > MAX_SIDE || nx > MAX_SIDE || ny * nx > MAX_PIXELS)
    throw std::invalid_argument(what + ": image size (" + std::to_string(ny) + ", " + std::to_string(nx) +
                                ") is empty or above the core's limit of " + std::to_string(MAX_SIDE) +
                                " px per axis and " + std::to_string(MAX_PIXELS) + " px");
}

void check_polynomial(const Poly2D& P, const std::string& what) {
  if (P.deg_n < 0 || P.deg_b < 0 || P.deg_n > MAX_POLY_DEG || P.deg_b > MAX_POLY_DEG)
    throw std::invalid_argument(what + ": polynomial degrees (" + std::to_string(P.deg_n) + ", " +
                                std::to_string(P.deg_b) + ") must be in [0, " + std::to_string(MAX_POLY_DEG) + "]");
  if (P.c.size() != size_t(P.deg_n + 1) * size_t(P.deg_b + 1))
    throw std::invalid_argument(what + ": polynomial has " + std::to_string(P.c.size()) +
                                " coefficients, expected (deg_n+1)*(deg_b+1)");
  for (size_t k = 0; k < P.c.size(); ++k)
    if (!std::isfinite(P.c[k]))
      throw std::invalid_argument(what + ": polynomial coefficient c" + std::to_string(k / (P.deg_b + 1)) +
                                  std::to_string(k % (P.deg_b + 1)) + " is not finite");
}

void check_order_list(const std::vector<OrderSpan>& orders, const std::string& what) {
  if (orders.empty()) throw std::invalid_argument(what + ": no orders given");
  if (orders.size() > MAX_ORDERS)
    throw std::invalid_argument(what + ": " + std::to_string(orders.size()) + " orders, at most " +
                                std::to_string(MAX_ORDERS) + " are supported");
  std::set<int> seen;
  for (const auto& o : orders) {
    const std::string on = what + ": order " + std::to_string(o.order);
    if (o.order < -MAX_ORDER_NUMBER || o.order > MAX_ORDER_NUMBER)
      throw std::invalid_argument(on + ": order number out of range");
    if (!seen.insert(o.order).second) throw std::invalid_argument(on + " is listed twice");
    if (!(std::fabs(o.b_min) <= 1e9 && std::fabs(o.b_max) <= 1e9 && o.b_min <= o.b_max))   // finite, castable
      throw std::invalid_argument(on + ": its range along the order (" + num(o.b_min) + " to " + num(o.b_max) +
                                  ") is not finite or empty");
  }
}

void check_orders_on_detector(const Poly2D& centre, const std::vector<OrderSpan>& orders, const Geometry& g,
                              int64_t ny, int64_t nx, const std::string& what) {
  const int64_t la = g.a_is_x ? nx : ny, lb = g.a_is_x ? ny : nx;
  for (const auto& o : orders) {
    const std::string on = what + ": order " + std::to_string(o.order);
    if (o.b_max < g.to_unbinned_b(0) - 0.5 * g.bin_b || o.b_min > g.to_unbinned_b(double(lb - 1)) + 0.5 * g.bin_b)
      throw std::invalid_argument(on + ": its range along the order (" + num(o.b_min) + " to " + num(o.b_max) +
                                  " unbinned px) is not on the detector");
    int64_t b0, b1;
    b_lines(o, g, lb, b0, b1);
    bool on_det = false;
    for (int64_t b = b0; b <= b1; ++b) {
      const double a = a_at(centre, o.order, b, g);
      if (!std::isfinite(a))
        throw std::invalid_argument(on + ": its centre is not finite at line " + std::to_string(b));
      on_det |= a >= -0.5 && a < double(la) - 0.5;
    }
    if (!on_det)
      throw std::invalid_argument(on + ": its centre is nowhere on the detector (" + std::to_string(la) +
                                  " px across the orders)");
  }
}

void check_master_params(const MasterFlatParams& p, size_t n_orders, int64_t la, int64_t lb) {
  positive("stacked_clipping_sigma", p.stack.sigma_lower);
  positive("stacked_clipping_sigma", p.stack.sigma_upper);
  in_range("stacked_clipping_iterations", p.stack.max_iters, 0, MAX_CLIP_ITERS);
  in_range("centre_order_window", p.centre_window, 1, double(la));
  positive("norm_clip_sigma", p.norm_clip_sigma);
  in_range("norm_clip_iters", p.norm_clip_iters, 0, MAX_CLIP_ITERS);
  check_edges(p.edges, la, lb);
  if (p.centre_window >= p.edges.slice_length)
    throw std::invalid_argument("centre_order_window = " + std::to_string(p.centre_window) +
                                " must be below slice_length_for_edge_detection = " +
                                std::to_string(p.edges.slice_length));
  check_fit(p.order_deg, p.disp_deg, p.fit_clip_sigma, p.fit_clip_iters, n_orders);
  in_range("bspline_deg", p.background.spline_deg, 1, 5);
  in_range("gaussian_blur_sigma", p.background.smooth_sigma, 0, 1e9);
  in_range("background_margin", p.background.margin, 0, double(la));
  in_range("outer_width", p.background.outer_width, 0, double(la));
  in_range("end_margin", p.background.end_margin, 0, double(lb));
  positive("low_sensitivity_clipping_sigma", p.low_sens.clip_sigma);
  in_range("low_sensitivity_half_window", p.low_sens.half_a, 1, MAX_LOWSENS_HALF);
  in_range("low_sensitivity_half_window", p.low_sens.half_b, 1, MAX_LOWSENS_HALF);
}

void check_uvb_params(const UvbParams& p, size_t n_orders, int64_t la, int64_t lb) {
  check_edges(p.edges, la, lb);
  check_fit(p.order_deg, p.disp_deg, p.fit_clip_sigma, p.fit_clip_iters, n_orders);
  if (!(p.min_frac >= 0 && p.min_frac <= 1) || !(std::fabs(p.offset) <= double(la)))
    throw std::invalid_argument("combine_uvb: min_frac must be in [0, 1] and |offset| within the detector");
}

}  // namespace soxs::detail

namespace soxs {

void check_image_shape(int64_t ny, int64_t nx, const std::string& what) { detail::check_image_size(ny, nx, what); }

void check_poly_coeffs(const Poly2D& P, const std::string& what) { detail::check_polynomial(P, what); }

void check_order_table(const Poly2D& centre, const std::vector<OrderSpan>& orders, const Geometry& g, int64_t ny,
                       int64_t nx) {
  detail::check_image_size(ny, nx, "order table");
  if (g.bin_a < 1 || g.bin_b < 1 || g.bin_a > 64 || g.bin_b > 64)
    throw std::invalid_argument("order table: binning must be in [1, 64]");
  detail::check_order_list(orders, "order table");
  detail::check_polynomial(centre, "order table: order centre");
  detail::check_orders_on_detector(centre, orders, g, ny, nx, "order table");
}

}  // namespace soxs
