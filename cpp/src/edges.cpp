// Kernel 3: order edges as sub-pixel threshold crossings on cross-dispersion slices,
// and the combined detect + global-fit step.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "geometry.hpp"
#include "parallel.hpp"
#include "stats.hpp"

namespace soxs {
namespace {

struct Task { size_t oi; int64_t b; };
struct Hit { bool ok = false; double b = 0, lo = 0, up = 0, level = 0, peak = 0; };

// Width-median profile along A of length L starting at s0, centred on line b.
void cut_profile(const ImageView& img, const MaskView& mask, const Geometry& g, int64_t s0, int L,
                 int64_t b, int hw, std::vector<float>& prof, std::vector<float>& tmp) {
  for (int k = 0; k < L; ++k) {
    int m = 0;
    for (int64_t q = b - hw; q <= b + hw; ++q) {
      int64_t i = g.index(s0 + k, q, img.nx);
      if (detail::good(img.data, mask.data, i)) tmp[m++] = img.data[i];
    }
    prof[k] = m ? static_cast<float>(detail::median_inplace(tmp.data(), m)) : NAN;
  }
}

void median_filter(const std::vector<float>& in, int width, std::vector<float>& out) {
  int h = width / 2, L = static_cast<int>(in.size());
  std::vector<float> w(width);
  for (int k = 0; k < L; ++k) {
    int m = 0;
    for (int q = std::max(0, k - h); q <= std::min(L - 1, k + h); ++q)
      if (std::isfinite(in[q])) w[m++] = in[q];
    out[k] = m ? static_cast<float>(detail::median_inplace(w.data(), m)) : NAN;
  }
}

// Crossing of `thr` between k and k+1: cubic through k-1..k+2 when available and
// bracketing, else linear. Returns offset in [0, 1].
double crossing(const std::vector<float>& p, const std::vector<float>& f, int k, double thr) {
  int L = static_cast<int>(p.size());
  auto lin = [&](const std::vector<float>& v) {
    double d = double(v[k + 1]) - v[k];
    return d == 0 ? 0.5 : std::clamp((thr - v[k]) / d, 0.0, 1.0);
  };
  bool bracket = (p[k] - thr) * (p[k + 1] - thr) <= 0;
  if (k < 1 || k + 2 >= L || !bracket || !std::isfinite(p[k - 1]) || !std::isfinite(p[k + 2]))
    return bracket ? lin(p) : lin(f);
  double y0 = p[k - 1], y1 = p[k], y2 = p[k + 1], y3 = p[k + 2];
  auto cubic = [&](double t) {  // Lagrange through t = -1, 0, 1, 2
    return -y0 * t * (t - 1) * (t - 2) / 6 + y1 * (t + 1) * (t - 1) * (t - 2) / 2 -
           y2 * (t + 1) * t * (t - 2) / 2 + y3 * (t + 1) * t * (t - 1) / 6 - thr;
  };
  double lo = 0, hi = 1, flo = cubic(0);
  for (int it = 0; it < 40; ++it) {
    double mid = 0.5 * (lo + hi), fm = cubic(mid);
    if ((fm <= 0) == (flo <= 0)) { lo = mid; flo = fm; } else { hi = mid; }
  }
  return 0.5 * (lo + hi);
}

// The normal quantile: Newton's method on erfc from the logistic approximation; u in (0, 1).
double probit(double u) {
  double z = std::log(u / (1 - u)) / 1.702;
  for (int it = 0; it < 8; ++it) {
    const double step = (0.5 * std::erfc(-z / std::sqrt(2.0)) - u) / (std::exp(-0.5 * z * z) / std::sqrt(2 * M_PI));
    z -= step;
    if (std::fabs(step) < 1e-12) break;
  }
  return z;
}

// Crossing of `thr` between k and k+1 for an edge of the shape a slit image has (a step blurred by the
// optics, sampled by pixels: an erf, to a good approximation also once pixel-integrated): linear between
// the two samples in probit(u), u the fraction of the slice's range (exact for an erf edge, 0.03 px off on
// a linear ramp). The interpolating cubic put both edges of a 2x2-binned order ~0.035 binned px outwards
// (an edge is 2-3 samples wide there). False where a sample is not inside (0.002, 0.998) of the range.
bool probit_crossing(const std::vector<float>& p, int k, double mn, double range, double thr, double& t) {
  const double u0 = (double(p[k]) - mn) / range, u1 = (double(p[k + 1]) - mn) / range;
  if (!(u0 > 0.002 && u0 < 0.998 && u1 > 0.002 && u1 < 0.998) || u0 == u1) return false;
  const double z0 = probit(u0), z1 = probit(u1);
  t = std::clamp((probit((thr - mn) / range) - z0) / (z1 - z0), 0.0, 1.0);
  return std::isfinite(t);
}

// Median of the finite samples v[k0..k1] within tol (>= 0) above `ref` (a minimum) or, with `below`,
// below it (a maximum); tol = 0 keeps the extreme itself.
double near_median(const std::vector<float>& v, int k0, int k1, double ref, double tol, bool below) {
  std::vector<double> w;
  for (int k = k0; k <= k1; ++k)
    if (std::isfinite(v[k]) && (below ? v[k] >= ref - tol : v[k] <= ref + tol)) w.push_back(v[k]);
  return w.empty() ? ref : detail::median_inplace(w.data(), int64_t(w.size()));
}

Hit measure(const ImageView& img, const float* err, const MaskView& mask, const Poly2D& centre,
            int order, int64_t b, const Geometry& g, const EdgeParams& p,
            std::vector<float>& prof, std::vector<float>& filt, std::vector<float>& tmp) {
  Hit h;
  const int L = p.slice_length, hw = p.slice_width / 2;
  const int64_t la = g.len_a(img), lb = g.len_b(img);
  double c = detail::a_at(centre, order, b, g);
  if (!(c > -double(L) && c < double(la + L))) return h;   // slice off the detector (or centre not finite)
  int64_t s0 = static_cast<int64_t>(std::lround(c)) - L / 2;
  if (s0 < 0 || s0 + L > la || b - hw < 0 || b + hw >= lb) return h;
  cut_profile(img, mask, g, s0, L, b, hw, prof, tmp);
  median_filter(prof, p.median_filter, filt);
  const int mid = static_cast<int>(std::lround(c - s0));
  const int core = std::min(8, L / 2 - 1);
  double mx = -INFINITY, mn = INFINITY;
  int kmx = mid, kmn = 0;
  const int c0 = std::max(0, mid - core), c1 = std::min(L - 1, mid + core);
  for (int k = c0; k <= c1; ++k)
    if (std::isfinite(filt[k]) && filt[k] > mx) { mx = filt[k]; kmx = k; }
  for (int k = 0; k < L; ++k) if (std::isfinite(filt[k]) && filt[k] < mn) { mn = filt[k]; kmn = k; }
  double range = mx - mn;
  if (!(range > 0)) return h;
  if (err) {
    double e = err[g.index(std::clamp<int64_t>(std::lround(c), 0, la - 1), b, img.nx)];
    if (std::isfinite(e) && range < p.min_snr * e) return h;
    // the extremes of a noisy slice are biased: the minimum of ~70 samples lies ~2 of the filtered
    // slice's sigma below the floor, the maximum ~1.5 above the top, which moved the threshold and
    // widened the faint orders' edges. The floor and the top are the medians of the samples within 3
    // pixel error-sigma of them (several sigma of the filtered slice, so the whole noisy floor or top);
    // an error of 0 (no sample survived the stack) or NaN keeps the raw extreme
    auto tol = [&](int k) { const double v = err[g.index(s0 + k, b, img.nx)]; return std::isfinite(v) && v > 0 ? 3 * v : 0.0; };
    mn = near_median(filt, 0, L - 1, mn, tol(kmn), false);
    mx = near_median(filt, c0, c1, mx, tol(kmx), true);
    range = mx - mn;
    if (!(range > 0)) return h;
  }
  for (double pct = p.min_pct; pct <= p.max_pct + 1e-9; pct += 10.0) {
    double thr = mn + range * pct / 100.0;
    int up = -1, lo = -1;
    for (int k = mid + 1; k < L; ++k) if (filt[k] < thr) { up = k; break; }
    for (int k = mid - 1; k >= 0; --k) if (filt[k] < thr) { lo = k; break; }
    if (up < 0 || lo < 0) continue;
    auto at = [&](int k) {
      double t;
      return double(k) + (probit_crossing(prof, k, mn, range, thr, t) ? t : crossing(prof, filt, k, thr));
    };
    double a_up = s0 + at(up - 1);
    double a_lo = s0 + at(lo);
    if (a_up - a_lo < p.min_width) return h;
    h.ok = true; h.level = pct; h.peak = mx;
    h.lo = g.to_unbinned_a(a_lo); h.up = g.to_unbinned_a(a_up); h.b = g.to_unbinned_b(double(b));
    return h;
  }
  return h;
}

}  // namespace

EdgePoints detect_edges(const ImageView& img, const float* err, const MaskView& mask,
                        const Poly2D& centre, const std::vector<OrderSpan>& orders,
                        const Geometry& g, const EdgeParams& p, int threads) {
  detail::check_geometry(img, g, "detect_edges");
  detail::check_poly(centre, "detect_edges");
  if (p.slice_length < 8 || p.slice_width < 1 || p.slice_width % 2 == 0 || p.median_filter < 1 || p.median_filter % 2 == 0)
    throw std::invalid_argument("detect_edges: need slice_length >= 8, an odd slice_width >= 1 (slice_width must be "
                                "odd) and an odd median_filter");
  if (!(p.min_pct > 0 && p.min_pct <= p.max_pct && p.max_pct < 100))
    throw std::invalid_argument("detect_edges: need 0 < min_pct <= max_pct < 100");
  detail::check_order_list(orders, "detect_edges");
  const int64_t lb = g.len_b(img);
  // a slice longer than the detector never fits (and would allocate slice_length floats per worker)
  if (p.slice_length > g.len_a(img) || p.slice_width > lb || p.median_filter > p.slice_length)
    throw std::invalid_argument("detect_edges: slice_length " + std::to_string(p.slice_length) + " / slice_width " +
                                std::to_string(p.slice_width) + " exceed the image (" + std::to_string(g.len_a(img)) +
                                " x " + std::to_string(lb) + " px across x along the orders)");
  if (!(p.step_unbinned >= 1 && p.step_unbinned <= 1e6) || !(p.min_snr >= 0) || !std::isfinite(p.min_width))
    throw std::invalid_argument("detect_edges: need 1 <= step_unbinned <= 1e6, min_snr >= 0, finite min_width");
  const int64_t step = std::max<int64_t>(1, std::lround(p.step_unbinned / g.bin_b));
  std::vector<Task> tasks;
  EdgePoints out;
  out.n_slices_per_order.assign(orders.size(), 0);
  for (size_t oi = 0; oi < orders.size(); ++oi) {
    int64_t b0, b1;
    detail::b_lines(orders[oi], g, lb, b0, b1);
    for (int64_t b = b0 + step / 2; b <= b1; b += step) { tasks.push_back({oi, b}); ++out.n_slices_per_order[oi]; }
  }
  std::vector<Hit> hits(tasks.size());
  detail::parallel_for(static_cast<int64_t>(tasks.size()), threads, [&](int64_t s, int64_t e) {
    std::vector<float> prof(p.slice_length), filt(p.slice_length), tmp(p.slice_width + 1);
    for (int64_t t = s; t < e; ++t)
      hits[t] = measure(img, err, mask, centre, orders[tasks[t].oi].order, tasks[t].b, g, p, prof, filt, tmp);
  }, 8);
  for (size_t t = 0; t < tasks.size(); ++t) {
    if (!hits[t].ok) continue;
    out.order.push_back(orders[tasks[t].oi].order);
    out.b.push_back(hits[t].b); out.lower.push_back(hits[t].lo); out.upper.push_back(hits[t].up);
    out.level_pct.push_back(hits[t].level); out.peak.push_back(hits[t].peak);
  }
  return out;
}

EdgeFit detect_and_fit_edges(const ImageView& img, const float* err, const MaskView& mask,
                             const Poly2D& centre, const std::vector<OrderSpan>& orders,
                             const Geometry& g, const EdgeParams& ep, int order_deg, int disp_deg,
                             double clip_sigma, int clip_iters, int threads) {
  EdgeFit f;
  f.points = detect_edges(img, err, mask, centre, orders, g, ep, threads);
  const auto& P = f.points;
  if (P.order.empty()) {   // say which parameters decide it: the message named none
    char snr[32];
    std::snprintf(snr, sizeof snr, "%g", ep.min_snr);
    throw std::runtime_error(std::string("edge detection found no order edges on any slice (no slice's peak reached "
                                         "edge_min_snr = ") + snr + " times its error, or none had both edges in "
                             "the min/max_percentage_threshold_for_edge_detection band)");
  }
  std::vector<double> n(P.order.begin(), P.order.end());
  try {
    f.lower = fit_global_poly(n, P.b, P.lower, order_deg, disp_deg, clip_sigma, clip_iters);
    f.upper = fit_global_poly(n, P.b, P.upper, order_deg, disp_deg, clip_sigma, clip_iters);
  } catch (const std::runtime_error& e) {   // "polynomial fit: 8 points for 35 coefficients" said not which, nor why
    throw std::runtime_error("order-edge fit: " + std::string(e.what()) + " (" + std::to_string(P.order.size()) +
                             " edge points found; order_deg " + std::to_string(order_deg) + ", disp_axis_deg " +
                             std::to_string(disp_deg) + "): too few edges passed the detection (edge_min_snr, the "
                             "edge thresholds) for the degrees asked");
  }
  f.n_used_per_order.assign(orders.size(), 0);
  for (size_t i = 0; i < P.order.size(); ++i) {
    if (f.lower.clipped[i] || f.upper.clipped[i]) continue;
    for (size_t oi = 0; oi < orders.size(); ++oi)
      if (orders[oi].order == P.order[i]) { ++f.n_used_per_order[oi]; break; }
  }
  for (const auto& o : orders) {
    std::vector<double> peak, level;
    for (size_t i = 0; i < P.order.size(); ++i)
      if (P.order[i] == o.order) { peak.push_back(P.peak[i]); level.push_back(P.level_pct[i]); }
    const double pk = detail::median_inplace(peak.data(), int64_t(peak.size()));
    f.peak_per_order.push_back(pk);
    f.level_pct_per_order.push_back(detail::median_inplace(level.data(), int64_t(level.size())));
    f.min_threshold.push_back(pk * ep.min_pct / 100);
    f.max_threshold.push_back(pk * ep.max_pct / 100);
  }
  return f;
}

}  // namespace soxs
