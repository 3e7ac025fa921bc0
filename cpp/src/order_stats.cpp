// Kernel 2: statistics of the pixels inside a window centred on every order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "geometry.hpp"
#include "stats.hpp"

namespace soxs {

InnerStats inner_order_stats(const ImageView& img, const float* ref, const MaskView& mask,
                             const Poly2D& centre, const std::vector<OrderSpan>& orders,
                             const Geometry& g, int window, double clip_sigma, int clip_iters) {
  detail::check_geometry(img, g, "inner_order_stats");
  detail::check_poly(centre, "inner_order_stats");
  if (window < 1) throw std::invalid_argument("inner_order_stats: window must be >= 1");
  const int64_t la = g.len_a(img), lb = g.len_b(img);
  std::vector<double> vals;
  for (const auto& o : orders) {
    int64_t b0, b1;
    detail::b_lines(o, g, lb, b0, b1);
    for (int64_t b = b0; b <= b1; ++b) {
      double c = detail::a_at(centre, o.order, b, g);
      int64_t a0 = static_cast<int64_t>(std::floor(c - 0.5 * (window - 1) + 0.5));
      for (int64_t a = std::max<int64_t>(0, a0); a < std::min<int64_t>(la, a0 + window); ++a) {
        int64_t i = g.index(a, b, img.nx);
        if (!detail::good(img.data, mask.data, i)) continue;
        double v = img.data[i];
        if (ref) {
          if (!(std::isfinite(ref[i]) && ref[i] != 0.0f)) continue;
          v /= ref[i];
        }
        vals.push_back(v);
      }
    }
  }
  InnerStats s;
  s.n = static_cast<int64_t>(vals.size());
  if (vals.empty()) throw std::runtime_error("inner_order_stats: no good pixels inside the order-centre windows");
  std::sort(vals.begin(), vals.end());
  s.median = detail::percentile_sorted(vals, 50);
  s.p10 = detail::percentile_sorted(vals, 10);
  s.p50 = s.median;
  s.p90 = detail::percentile_sorted(vals, 90);
  s.mean = detail::clipped_mean_sorted(vals, clip_sigma, clip_sigma, clip_iters);
  return s;
}

}  // namespace soxs
