// Kernel 1: iterative median/MAD sigma clipping along the stack axis, then mean.
#include <cmath>
#include <stdexcept>
#include <string>

#include "parallel.hpp"
#include "soxs/mflat.hpp"
#include "stats.hpp"

namespace soxs {
namespace {

struct Sample { float v; int k; };

inline void insertion_sort(Sample* s, int n) {
  for (int i = 1; i < n; ++i) {
    Sample x = s[i];
    int j = i - 1;
    while (j >= 0 && s[j].v > x.v) { s[j + 1] = s[j]; --j; }
    s[j + 1] = x;
  }
}

inline double median_range(const Sample* s, int lo, int hi) {
  int n = hi - lo;
  return (n % 2) ? s[lo + n / 2].v : 0.5 * (double(s[lo + n / 2 - 1].v) + s[lo + n / 2].v);
}

// k-th (0-based) smallest |s - m| over sorted s[lo,hi): merge outward from m.
inline double kth_deviation(const Sample* s, int lo, int hi, double m, int k) {
  int i = lo;
  while (i < hi && s[i].v < m) ++i;
  int j = i - 1;
  double d = 0;
  for (int c = 0; c <= k; ++c) {
    double dr = (i < hi) ? s[i].v - m : INFINITY;
    double dl = (j >= lo) ? m - s[j].v : INFINITY;
    if (dr <= dl) { d = dr; ++i; } else { d = dl; --j; }
  }
  return d;
}

inline double mad_range(const Sample* s, int lo, int hi, double m) {
  int n = hi - lo;
  if (n % 2) return kth_deviation(s, lo, hi, m, n / 2);
  return 0.5 * (kth_deviation(s, lo, hi, m, n / 2 - 1) + kth_deviation(s, lo, hi, m, n / 2));
}

// Clip sorted samples in place; returns surviving range [lo, hi).
inline void clip_sorted(const Sample* s, int n, const ClipParams& p, int& lo, int& hi) {
  lo = 0; hi = n;
  for (int it = 0; it < p.max_iters && hi > lo; ++it) {
    double m = median_range(s, lo, hi);
    double sd = detail::MAD_TO_SIGMA * mad_range(s, lo, hi, m);
    double lb = m - p.sigma_lower * sd, ub = m + p.sigma_upper * sd;
    int nlo = lo, nhi = hi;
    while (nlo < nhi && s[nlo].v < lb) ++nlo;
    while (nhi > nlo && s[nhi - 1].v > ub) --nhi;
    if (nlo == lo && nhi == hi) break;
    lo = nlo; hi = nhi;
  }
}

}  // namespace

void clip_and_stack(const std::vector<const float*>& frames, const std::vector<const float*>& errors,
                    const std::vector<const uint8_t*>& masks, const std::vector<double>& scales,
                    int64_t npix, const ClipParams& p, float* out_mean, float* out_error,
                    uint8_t* out_quality, uint8_t* out_nused, int threads) {
  const int n = static_cast<int>(frames.size());
  if (n == 0) throw std::invalid_argument("clip_and_stack: no frames given");
  if (n > 255) throw std::invalid_argument("clip_and_stack: at most 255 frames, got " + std::to_string(n));
  if (!errors.empty() && int(errors.size()) != n)
    throw std::invalid_argument("clip_and_stack: " + std::to_string(errors.size()) + " error maps for " + std::to_string(n) + " frames");
  if (!masks.empty() && int(masks.size()) != n)
    throw std::invalid_argument("clip_and_stack: " + std::to_string(masks.size()) + " masks for " + std::to_string(n) + " frames");
  if (!scales.empty() && int(scales.size()) != n)
    throw std::invalid_argument("clip_and_stack: " + std::to_string(scales.size()) + " scales for " + std::to_string(n) + " frames");
  if (p.max_iters < 0 || !(p.sigma_lower > 0) || !(p.sigma_upper > 0))
    throw std::invalid_argument("clip_and_stack: sigmas must be > 0 and iterations >= 0");
  for (int k = 0; k < n; ++k)
    if (!frames[k]) throw std::invalid_argument("clip_and_stack: frame " + std::to_string(k) + " is null");
  bool have_err = !errors.empty();
  for (int k = 0; k < n && have_err; ++k) have_err = errors[k] != nullptr;
  std::vector<float> sc(n, 1.0f);
  for (int k = 0; k < n && !scales.empty(); ++k) sc[k] = static_cast<float>(scales[k]);

  detail::parallel_for(npix, threads, [&](int64_t b, int64_t e) {
    std::vector<Sample> buf(n);
    Sample* s = buf.data();
    for (int64_t i = b; i < e; ++i) {
      int m = 0;
      for (int k = 0; k < n; ++k) {
        if (!masks.empty() && masks[k] && masks[k][i]) continue;
        float v = frames[k][i] * sc[k];
        if (std::isfinite(v)) s[m++] = Sample{v, k};
      }
      insertion_sort(s, m);
      int lo = 0, hi = 0;
      clip_sorted(s, m, p, lo, hi);
      int used = hi - lo;
      double sum = 0, esum = 0, sq = 0;
      for (int q = lo; q < hi; ++q) {
        sum += s[q].v;
        if (have_err) esum += double(errors[s[q].k][i]) * sc[s[q].k];
      }
      double mean = used ? sum / used : 0.0, err = 0.0;
      if (used && have_err) {
        err = esum / used / std::sqrt(double(used));
      } else if (used > 1) {
        for (int q = lo; q < hi; ++q) sq += (s[q].v - mean) * (s[q].v - mean);
        err = std::sqrt(sq / (used - 1)) / std::sqrt(double(used));
      }
      out_mean[i] = static_cast<float>(mean);
      if (out_error) out_error[i] = static_cast<float>(err);
      if (out_quality) out_quality[i] = used ? 0 : 1;
      if (out_nused) out_nused[i] = static_cast<uint8_t>(used);
    }
  }, 4096);
}

}  // namespace soxs
