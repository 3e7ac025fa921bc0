// Kernel 5: scattered light from the inter-order gaps. Per line: robust level of every
// gap; each gap's levels are smoothed along B with a Gaussian; each line is then
// interpolated across A. Orders are sorted by their actual A position on every line,
// so the model does not care which way order numbers run.
#include <algorithm>
#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "geometry.hpp"
#include "parallel.hpp"
#include "stats.hpp"

namespace soxs {
namespace {

struct GapSample { double a, level; };
using GapKey = std::pair<int, int>;  // neighbouring order numbers; INT_MIN/INT_MAX = detector side

// Natural cubic spline (or linear) through sorted points, evaluated at every a in [0, la).
void interpolate_line(const std::vector<double>& x, const std::vector<double>& y, int deg,
                      int64_t la, float* out, int64_t stride) {
  const size_t n = x.size();
  std::vector<double> m2(n, 0.0);
  if (deg >= 2 && n >= 3) {  // second derivatives, tridiagonal solve
    std::vector<double> u(n, 0.0);
    for (size_t i = 1; i + 1 < n; ++i) {
      double sig = (x[i] - x[i - 1]) / (x[i + 1] - x[i - 1]);
      double p = sig * m2[i - 1] + 2.0;
      m2[i] = (sig - 1.0) / p;
      double d = (y[i + 1] - y[i]) / (x[i + 1] - x[i]) - (y[i] - y[i - 1]) / (x[i] - x[i - 1]);
      u[i] = (6.0 * d / (x[i + 1] - x[i - 1]) - sig * u[i - 1]) / p;
    }
    m2[n - 1] = 0;
    for (size_t k = n - 1; k-- > 0;) m2[k] = m2[k] * m2[k + 1] + u[k];
  }
  size_t seg = 0;
  for (int64_t a = 0; a < la; ++a) {
    double v;
    if (a <= x.front()) v = y.front();
    else if (a >= x.back()) v = y.back();
    else {
      while (seg + 2 < n && x[seg + 1] < a) ++seg;
      double h = x[seg + 1] - x[seg], t = (a - x[seg]) / h, s = 1 - t;
      v = s * y[seg] + t * y[seg + 1] + ((s * s * s - s) * m2[seg] + (t * t * t - t) * m2[seg + 1]) * h * h / 6.0;
    }
    out[a * stride] = static_cast<float>(v);
  }
}

}  // namespace

BackgroundResult fit_background(const ImageView& img, const MaskView& mask, const Poly2D& lower,
                                const Poly2D& upper, const std::vector<OrderSpan>& orders,
                                const Geometry& g, const BackgroundParams& p, int threads) {
  detail::check_geometry(img, g, "fit_background");
  detail::check_poly(lower, "fit_background"); detail::check_poly(upper, "fit_background");
  if (p.margin < 0 || p.outer_width < 0 || !(p.smooth_sigma >= 0 && p.smooth_sigma <= 1e9) || p.end_margin < 0)
    throw std::invalid_argument("fit_background: margin, outer_width, end_margin must be >= 0, 0 <= smooth_sigma <= 1e9");
  detail::check_order_list(orders, "fit_background");
  const int64_t la = g.len_a(img), lb = g.len_b(img);
  // 1. gap levels per line, keyed by the neighbouring orders
  std::vector<std::vector<std::pair<GapKey, GapSample>>> per_line(lb);
  detail::parallel_for(lb, threads, [&](int64_t s, int64_t e) {
    std::vector<float> vals;
    struct Iv { double lo, up; int order; };
    for (int64_t b = s; b < e; ++b) {
      std::vector<Iv> iv;
      for (const auto& o : orders) {
        int64_t b0, b1;
        detail::b_lines(o, g, lb, b0, b1);
        if (b < b0 - p.end_margin || b > b1 + p.end_margin) continue;
        double lo = detail::a_at(lower, o.order, b, g), up = detail::a_at(upper, o.order, b, g);
        if (!(std::isfinite(lo) && std::isfinite(up))) continue;   // NaN would break the sort below
        iv.push_back({std::min(lo, up) - p.margin, std::max(lo, up) + p.margin, o.order});
      }
      if (iv.empty()) continue;
      std::sort(iv.begin(), iv.end(), [](const Iv& x, const Iv& y) { return x.lo < y.lo; });
      auto sample = [&](double from, double to, GapKey key) {
        int64_t a0 = std::max<int64_t>(0, detail::clamp_index(std::ceil(from)));
        int64_t a1 = std::min<int64_t>(la - 1, detail::clamp_index(std::floor(to)));
        vals.clear();
        for (int64_t a = a0; a <= a1; ++a) {
          int64_t i = g.index(a, b, img.nx);
          if (detail::good(img.data, mask.data, i)) vals.push_back(img.data[i]);
        }
        if (vals.size() < 2) return;
        double lvl = detail::median_inplace(vals.data(), int64_t(vals.size()));
        per_line[b].push_back({key, GapSample{0.5 * (a0 + a1), lvl}});
      };
      sample(iv.front().lo - p.outer_width, iv.front().lo, {INT32_MIN, iv.front().order});
      for (size_t k = 0; k + 1 < iv.size(); ++k) sample(iv[k].up, iv[k + 1].lo, {iv[k].order, iv[k + 1].order});
      sample(iv.back().up, iv.back().up + p.outer_width, {iv.back().order, INT32_MAX});
    }
  }, 16);
  // 2. smooth every gap's levels along B
  std::map<GapKey, std::vector<std::pair<int64_t, GapSample>>> series;
  BackgroundResult r;
  for (int64_t b = 0; b < lb; ++b)
    for (auto& kv : per_line[b]) { series[kv.first].push_back({b, kv.second}); ++r.n_samples; }
  std::vector<std::pair<GapKey, std::vector<std::pair<int64_t, GapSample>>>> sv(series.begin(), series.end());
  detail::parallel_for(static_cast<int64_t>(sv.size()), threads, [&](int64_t s, int64_t e) {
    for (int64_t q = s; q < e; ++q) {
      auto& ser = sv[q].second;
      if (p.smooth_sigma <= 0) continue;
      std::vector<double> sm(ser.size());
      const double sg = p.smooth_sigma;
      // lags beyond the frame never occur: the weight table stays frame-sized for any sigma
      const int64_t reach = std::min<int64_t>(lb, static_cast<int64_t>(std::ceil(3 * sg)));
      std::vector<double> wt(reach + 1);  // Gaussian weight per integer line lag (no exp() per pair)
      for (int64_t d = 0; d <= reach; ++d) wt[d] = std::exp(-0.5 * double(d * d) / (sg * sg));
      size_t lo = 0;
      for (size_t i = 0; i < ser.size(); ++i) {
        while (ser[lo].first < ser[i].first - reach) ++lo;
        double wsum = 0, acc = 0;
        for (size_t k = lo; k < ser.size() && ser[k].first <= ser[i].first + reach; ++k) {
          double w = wt[std::abs(ser[k].first - ser[i].first)];
          wsum += w; acc += w * ser[k].second.level;
        }
        sm[i] = acc / wsum;
      }
      for (size_t i = 0; i < ser.size(); ++i) ser[i].second.level = sm[i];
    }
  }, 1);
  for (auto& line : per_line) line.clear();
  for (auto& kv : sv) for (auto& e : kv.second) per_line[e.first].push_back({kv.first, e.second});
  // 3. interpolate across A on every line; lines without samples copy the nearest line
  r.model.assign(static_cast<size_t>(img.ny * img.nx), 0.0f);
  const int64_t stride = g.a_is_x ? 1 : img.nx;
  std::vector<uint8_t> done(lb, 0);
  detail::parallel_for(lb, threads, [&](int64_t s, int64_t e) {
    std::vector<double> x, y;
    for (int64_t b = s; b < e; ++b) {
      auto& pts = per_line[b];
      if (pts.empty()) continue;
      std::sort(pts.begin(), pts.end(), [](auto& u, auto& v) { return u.second.a < v.second.a; });
      x.clear(); y.clear();
      for (auto& q : pts) {
        if (!x.empty() && q.second.a <= x.back()) continue;
        x.push_back(q.second.a); y.push_back(q.second.level);
      }
      interpolate_line(x, y, p.spline_deg, la, &r.model[g.index(0, b, img.nx)], stride);
      done[b] = 1;
    }
  }, 16);
  int64_t last = -1;
  std::vector<int64_t> nearest(lb, -1);
  for (int64_t b = 0; b < lb; ++b) { if (done[b]) last = b; nearest[b] = last; }
  for (int64_t b = lb - 1, next = -1; b >= 0; --b) {
    if (done[b]) { next = b; continue; }
    int64_t src = nearest[b];
    if (next >= 0 && (src < 0 || next - b < b - src)) src = next;
    if (src < 0) continue;
    for (int64_t a = 0; a < la; ++a) r.model[g.index(a, b, img.nx)] = r.model[g.index(a, src, img.nx)];
  }
  return r;
}

}  // namespace soxs
