// Kernel 2: statistics of the pixels inside a window centred on every order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "geometry.hpp"
#include "stats.hpp"

namespace soxs {

std::vector<int64_t> detail::centre_window_pixels(int64_t ny, int64_t nx, const Poly2D& centre,
                                                  const std::vector<OrderSpan>& orders, const Geometry& g,
                                                  int window) {
  if (window < 1) throw std::invalid_argument("inner_order_stats: window must be >= 1");
  const int64_t la = g.a_is_x ? nx : ny, lb = g.a_is_x ? ny : nx;
  std::vector<int64_t> idx;
  for (const auto& o : orders) {
    int64_t b0, b1;
    detail::b_lines(o, g, lb, b0, b1);
    for (int64_t b = b0; b <= b1; ++b) {
      double c = detail::a_at(centre, o.order, b, g);
      int64_t a0 = detail::clamp_index(std::floor(c - 0.5 * (window - 1) + 0.5));
      for (int64_t a = std::max<int64_t>(0, a0); a < std::min<int64_t>(la, a0 + window); ++a)
        idx.push_back(g.index(a, b, nx));
    }
  }
  return idx;
}

InnerStats inner_order_stats(const ImageView& img, const float* ref, const MaskView& mask,
                             const Poly2D& centre, const std::vector<OrderSpan>& orders,
                             const Geometry& g, int window, double clip_sigma, int clip_iters,
                             bool want_percentiles) {
  detail::check_geometry(img, g, "inner_order_stats");
  detail::check_poly(centre, "inner_order_stats");
  detail::check_order_list(orders, "inner_order_stats");
  return detail::inner_stats_at(img.data, ref, mask.data, detail::centre_window_pixels(img.ny, img.nx, centre, orders,
                                g, window), clip_sigma, clip_iters, want_percentiles);
}

InnerStats detail::inner_stats_at(const float* img, const float* ref, const uint8_t* mask,
                                  const std::vector<int64_t>& idx, double clip_sigma, int clip_iters,
                                  bool want_percentiles) {
  std::vector<double> vals;
  vals.reserve(idx.size());
  for (int64_t i : idx) {
    if (!detail::good(img, mask, i)) continue;
    double v = img[i];
    if (ref) {
      if (!(std::isfinite(ref[i]) && ref[i] != 0.0f)) continue;
      v /= ref[i];
    }
    vals.push_back(v);
  }
  InnerStats s;
  s.n = static_cast<int64_t>(vals.size());
  if (vals.empty()) throw std::runtime_error("inner_order_stats: no good pixels inside the order-centre windows");
  // selection instead of a full sort: O(n) per statistic
  auto pct = [&](double q) {
    double pos = q / 100.0 * double(vals.size() - 1);
    size_t i = static_cast<size_t>(std::floor(pos));
    std::nth_element(vals.begin(), vals.begin() + i, vals.end());
    double lo = vals[i];
    if (i + 1 >= vals.size()) return lo;
    double hi = *std::min_element(vals.begin() + i + 1, vals.end());
    return lo + (pos - double(i)) * (hi - lo);
  };
  if (want_percentiles) {
    s.p10 = pct(10); s.p90 = pct(90); s.median = s.p50 = pct(50);
  }
  s.mean = detail::clipped_mean_select(vals, clip_sigma, clip_sigma, clip_iters);
  return s;
}

}  // namespace soxs
