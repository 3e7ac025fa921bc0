// Order geometry helpers: which binned B lines an order covers, and where it is along A.
#pragma once
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "soxs/mflat.hpp"
#include "validate.hpp"

namespace soxs::detail {

// Unbinned px within which a B range that stops short of the detector edge still runs off it: the
// order-centre table samples its range every 3 px, and binned lines sit every bin px.
inline double edge_snap(const Geometry& g) { return std::max(3.0, double(g.bin_b)); }

// The binned B lines [b0, b1] of an order. A range ending within edge_snap of the detector edge is
// extended to the edge: the order runs off the detector there, and its last lines are illuminated.
inline void b_lines(const OrderSpan& o, const Geometry& g, int64_t len_b, int64_t& b0, int64_t& b1) {
  b0 = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(g.to_binned_b(o.b_min))));
  b1 = std::min<int64_t>(len_b - 1, static_cast<int64_t>(std::floor(g.to_binned_b(o.b_max))));
  if (o.b_min < edge_snap(g)) b0 = 0;
  if (o.b_max > g.to_unbinned_b(double(len_b - 1)) - edge_snap(g)) b1 = len_b - 1;
}

inline double a_at(const Poly2D& P, int order, int64_t b, const Geometry& g) {
  return g.to_binned_a(P.eval(order, g.to_unbinned_b(double(b))));
}

inline void check_poly(const Poly2D& P, const char* what) { check_polynomial(P, what); }

inline void check_geometry(const ImageView& v, const Geometry& g, const char* what) {
  if (!v.data || v.ny <= 0 || v.nx <= 0) throw std::invalid_argument(std::string(what) + ": empty image");
  check_image_size(v.ny, v.nx, what);
  if (g.bin_a < 1 || g.bin_b < 1 || g.bin_a > 64 || g.bin_b > 64)
    throw std::invalid_argument(std::string(what) + ": binning must be in [1, 64]");
}

inline bool good(const float* img, const uint8_t* mask, int64_t i) {
  return (!mask || !mask[i]) && std::isfinite(img[i]);
}

// Pixels between the fitted edges (in_order_mask); those on lines within `margin` lines beyond an order's B
// range are not set to 1 but flagged QUAL_BEYOND_RANGE (the order's light fades there). Every other pixel
// is set to exactly 1 (error 0): inter-order pixels are not flat-fielded. Returns the in-order mask.
std::vector<uint8_t> finish_flat(std::vector<float>& flux, std::vector<float>& error, std::vector<uint8_t>& quality,
                                 int64_t ny, int64_t nx, const Poly2D& lower, const Poly2D& upper,
                                 const std::vector<OrderSpan>& orders, const Geometry& g, int margin);

// Pixel indices of the order-centre windows (`window` >= 1 px along A per B line), order by order.
std::vector<int64_t> centre_window_pixels(int64_t ny, int64_t nx, const Poly2D& centre,
                                          const std::vector<OrderSpan>& orders, const Geometry& g, int window);
// inner_order_stats on a precomputed window (the same pixel order gives the same bits).
InnerStats inner_stats_at(const float* img, const float* ref, const uint8_t* mask, const std::vector<int64_t>& idx,
                          double clip_sigma, int clip_iters, bool want_percentiles);

}  // namespace soxs::detail
