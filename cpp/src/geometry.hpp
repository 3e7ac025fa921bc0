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

inline void b_lines(const OrderSpan& o, const Geometry& g, int64_t len_b, int64_t& b0, int64_t& b1) {
  b0 = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(g.to_binned_b(o.b_min))));
  b1 = std::min<int64_t>(len_b - 1, static_cast<int64_t>(std::floor(g.to_binned_b(o.b_max))));
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

// Pixel indices of the order-centre windows (`window` >= 1 px along A per B line), order by order.
std::vector<int64_t> centre_window_pixels(int64_t ny, int64_t nx, const Poly2D& centre,
                                          const std::vector<OrderSpan>& orders, const Geometry& g, int window);
// inner_order_stats on a precomputed window (the same pixel order gives the same bits).
InnerStats inner_stats_at(const float* img, const float* ref, const uint8_t* mask, const std::vector<int64_t>& idx,
                          double clip_sigma, int clip_iters, bool want_percentiles);

}  // namespace soxs::detail
