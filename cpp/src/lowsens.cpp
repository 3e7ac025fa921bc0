// Kernel 6: low-sensitivity pixels relative to a local smooth model of the flat inside
// each order. Model = separable median: first across A (robust to bad columns up to
// half_a wide), then along B (robust to bad rows). Near the order edges both sequences
// are locally monotone, so their medians equal the central pixel's expected value.
// Noise per pixel combines the order's pixel-to-pixel scatter and the error map.
#include <algorithm>
#include <cmath>
#include <vector>

#include "geometry.hpp"
#include "parallel.hpp"
#include "stats.hpp"

namespace soxs {

std::vector<uint8_t> in_order_mask(int64_t ny, int64_t nx, const Poly2D& lower, const Poly2D& upper,
                                   const std::vector<OrderSpan>& orders, const Geometry& g) {
  detail::check_image_size(ny, nx, "in_order_mask");
  detail::check_poly(lower, "in_order_mask: lower edge"); detail::check_poly(upper, "in_order_mask: upper edge");
  detail::check_order_list(orders, "in_order_mask");
  if (g.bin_a < 1 || g.bin_b < 1 || g.bin_a > 64 || g.bin_b > 64)
    throw std::invalid_argument("in_order_mask: binning must be in [1, 64]");
  std::vector<uint8_t> m(static_cast<size_t>(ny * nx), 0);
  const int64_t la = g.a_is_x ? nx : ny, lb = g.a_is_x ? ny : nx;
  for (const auto& o : orders) {
    int64_t b0, b1;
    detail::b_lines(o, g, lb, b0, b1);
    for (int64_t b = b0; b <= b1; ++b) {
      double lo = detail::a_at(lower, o.order, b, g), up = detail::a_at(upper, o.order, b, g);
      if (!(std::isfinite(lo) && std::isfinite(up))) continue;
      lo = std::max(lo, -1.0); up = std::min(up, double(la));   // exact: the loop is clipped to [0, la) anyway
      for (int64_t a = std::max<int64_t>(0, int64_t(std::ceil(lo))); a <= std::min<int64_t>(la - 1, int64_t(std::floor(up))); ++a)
        m[g.index(a, b, nx)] = 1;
    }
  }
  return m;
}

std::vector<uint8_t> detail::finish_flat(std::vector<float>& flux, std::vector<float>& error,
                                         std::vector<uint8_t>& quality, int64_t ny, int64_t nx, const Poly2D& lower,
                                         const Poly2D& upper, const std::vector<OrderSpan>& orders,
                                         const Geometry& g, int margin) {
  auto inorder = in_order_mask(ny, nx, lower, upper, orders, g);
  std::vector<uint8_t> beyond(inorder.size(), 0);
  const int64_t la = g.a_is_x ? nx : ny, lb = g.a_is_x ? ny : nx;
  for (const auto& o : orders) {
    int64_t b0, b1;
    detail::b_lines(o, g, lb, b0, b1);
    if (b0 > b1) continue;   // the order misses the detector
    for (int64_t b = std::max<int64_t>(0, b0 - margin); b <= std::min<int64_t>(lb - 1, b1 + margin); ++b) {
      if (b == b0) b = b1 + 1;
      if (b > std::min<int64_t>(lb - 1, b1 + margin)) break;
      double lo = detail::a_at(lower, o.order, b, g), up = detail::a_at(upper, o.order, b, g);
      if (!(std::isfinite(lo) && std::isfinite(up))) continue;
      lo = std::max(lo, -1.0); up = std::min(up, double(la));   // exact: the loop is clipped to [0, la) anyway
      for (int64_t a = std::max<int64_t>(0, int64_t(std::ceil(lo))); a <= std::min<int64_t>(la - 1, int64_t(std::floor(up))); ++a)
        beyond[g.index(a, b, nx)] = 1;
    }
  }
  for (size_t i = 0; i < inorder.size(); ++i) {
    if (inorder[i]) continue;
    if (beyond[i]) { quality[i] |= QUAL_BEYOND_RANGE; continue; }
    flux[i] = 1.0f; error[i] = 0.0f;
  }
  return inorder;
}

LowSensResult flag_low_sensitivity(const ImageView& flat, const float* err, const MaskView& mask,
                                   const Poly2D& lower, const Poly2D& upper,
                                   const std::vector<OrderSpan>& orders, const Geometry& g,
                                   const LowSensParams& p, int threads) {
  detail::check_geometry(flat, g, "flag_low_sensitivity");
  if (p.half_a < 1 || p.half_b < 1 || p.half_a > detail::MAX_LOWSENS_HALF || p.half_b > detail::MAX_LOWSENS_HALF ||
      !(p.clip_sigma > 0 && p.clip_sigma < 1e12))
    throw std::invalid_argument("flag_low_sensitivity: half windows must be in [1, " +
                                std::to_string(detail::MAX_LOWSENS_HALF) + "] and clip_sigma > 0");
  detail::check_poly(lower, "flag_low_sensitivity: lower edge");
  detail::check_poly(upper, "flag_low_sensitivity: upper edge");
  detail::check_order_list(orders, "flag_low_sensitivity");
  const int64_t la = g.len_a(flat), lb = g.len_b(flat);
  LowSensResult r;
  r.flags.assign(static_cast<size_t>(flat.ny * flat.nx), 0);
  r.sigma_rel.assign(orders.size(), 0.0);
  std::vector<int64_t> counts(orders.size(), 0);
  detail::parallel_for(static_cast<int64_t>(orders.size()), threads, [&](int64_t s, int64_t e) {
    std::vector<float> w;
    for (int64_t oi = s; oi < e; ++oi) {
      const auto& o = orders[oi];
      int64_t b0, b1;
      detail::b_lines(o, g, lb, b0, b1);
      if (b1 < b0) continue;
      const int64_t nb = b1 - b0 + 1;
      // order-local grid: offset k from the (rounded) lower edge, width W
      std::vector<int64_t> base(nb), kmax(nb);
      int W = 0;
      for (int64_t q = 0; q < nb; ++q) {
        double lo = detail::a_at(lower, o.order, b0 + q, g), up = detail::a_at(upper, o.order, b0 + q, g);
        if (!(std::isfinite(lo) && std::isfinite(up))) { lo = up = -double(la); }
        // within one detector width of the detector: sane geometry is untouched, wild edges stay bounded
        lo = std::clamp(lo, -double(la), 2.0 * double(la)); up = std::clamp(up, -double(la), 2.0 * double(la));
        base[q] = int64_t(std::ceil(std::min(lo, up)));
        kmax[q] = int64_t(std::floor(std::max(lo, up))) - base[q];
        W = std::max(W, int(kmax[q] + 1));
      }
      if (W <= 0) continue;
      // grid k in [-P, W + P): the B median runs along detector columns (a fixed), where
      // values are locally monotone across the edges, so it is unbiased there.
      const int P = p.half_a + 2, G = W + 2 * P, R = P + p.half_a, V = W + 2 * R;
      // the order's pixels copied once into a padded line-by-line buffer (NaN = masked or off
      // the detector): the windows below then read contiguous memory, also when A runs along y
      std::vector<float> vals(nb * V);
      for (int64_t q = 0; q < nb; ++q)
        for (int j = 0; j < V; ++j) {
          int64_t a = base[q] + j - R, i = a < 0 || a >= la ? -1 : g.index(a, b0 + q, flat.nx);
          vals[q * V + j] = i >= 0 && detail::good(flat.data, mask.data, i) ? flat.data[i] : NAN;
        }
      auto at = [&](int64_t q, int k) -> float { return vals[q * V + k + R]; };
      std::vector<float> med_a(nb * G), model(nb * W);
      w.resize(2 * std::max(p.half_a, p.half_b) + 1);
      for (int64_t q = 0; q < nb; ++q) {
        const float* row = &vals[q * V + R];
        for (int k = -P; k < W + P; ++k) {
          // symmetric pairs only: a masked neighbour on one side would bias the median on a slope
          int n = 0;
          if (std::isfinite(row[k])) w[n++] = row[k];
          for (int d = 1; d <= p.half_a; ++d) {
            float lo = row[k - d], hi = row[k + d];
            if (std::isfinite(lo) && std::isfinite(hi)) { w[n++] = lo; w[n++] = hi; }
          }
          med_a[q * G + k + P] = n ? float(detail::median_inplace(w.data(), n)) : NAN;
        }
      }
      for (int64_t q = 0; q < nb; ++q)
        for (int k = 0; k < W; ++k) {
          // symmetric window, shrunk at the order's ends: one-sided medians are biased where the
          // flux falls steeply along B
          const int64_t h = std::min<int64_t>({int64_t(p.half_b), q, nb - 1 - q});
          auto ma = [&](int64_t d) -> float {  // A-median at this detector column on line d
            int64_t kk = base[q] + k - base[d];
            return (kk < -P || kk >= W + P) ? NAN : med_a[d * G + kk + P];
          };
          int n = 0;
          float c0 = ma(q);
          if (std::isfinite(c0)) w[n++] = c0;
          for (int64_t d = 1; d <= h; ++d) {
            float lo = ma(q - d), hi = ma(q + d);
            if (std::isfinite(lo) && std::isfinite(hi)) { w[n++] = lo; w[n++] = hi; }
          }
          model[q * W + k] = n ? float(detail::median_inplace(w.data(), n)) : NAN;
        }
      // relative scatter of the order (MAD of ratio) minus the photon part from the error map
      std::vector<double> ratio, photon;
      for (int64_t q = 0; q < nb; ++q)
        for (int k = 0; k <= kmax[q]; ++k) {
          float v = at(q, k), m = model[q * W + k];
          if (!std::isfinite(v) || !(m > 0)) continue;
          ratio.push_back(v / m - 1.0);
          if (err) { double e = err[g.index(base[q] + k, b0 + q, flat.nx)] / m; photon.push_back(e * e); }
        }
      if (ratio.size() < 10) continue;
      std::vector<double> tmp(ratio);
      double med = detail::median_inplace(tmp.data(), int64_t(tmp.size()));
      for (size_t i = 0; i < ratio.size(); ++i) tmp[i] = std::fabs(ratio[i] - med);
      double sd = detail::MAD_TO_SIGMA * detail::median_inplace(tmp.data(), int64_t(tmp.size()));
      double ph = photon.empty() ? 0.0 : detail::median_inplace(photon.data(), int64_t(photon.size()));
      double prnu2 = std::max(0.0, sd * sd - ph);
      r.sigma_rel[oi] = sd;
      for (int64_t q = 0; q < nb; ++q)
        for (int k = 0; k <= kmax[q]; ++k) {
          float v = at(q, k), m = model[q * W + k];
          if (!std::isfinite(v) || !(m > 0)) continue;
          int64_t i = g.index(base[q] + k, b0 + q, flat.nx);
          double e = err ? double(err[i]) / m : 0.0;
          double sig = err ? std::sqrt(prnu2 + e * e) : sd;
          if (v / m - 1.0 < -p.clip_sigma * sig) { r.flags[i] = 1; ++counts[oi]; }
        }
    }
  }, 1);
  for (auto c : counts) r.n_flagged += c;
  return r;
}

}  // namespace soxs
