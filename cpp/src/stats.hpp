// Small robust-statistics helpers shared by the kernels (astropy/numpy semantics).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace soxs::detail {

constexpr double MAD_TO_SIGMA = 1.482602218505602;  // 1 / Phi^-1(3/4), as astropy mad_std

// Median of v (reorders v). Even counts average the two middle values (numpy).
template <class T>
double median_inplace(T* v, int64_t n) {
  if (n <= 0) return std::nan("");
  int64_t h = n / 2;
  std::nth_element(v, v + h, v + n);
  double hi = v[h];
  if (n % 2) return hi;
  double lo = *std::max_element(v, v + h);
  return 0.5 * (lo + hi);
}

// numpy percentile, linear interpolation, on a sorted vector.
inline double percentile_sorted(const std::vector<double>& s, double pct) {
  if (s.empty()) return std::nan("");
  double pos = pct / 100.0 * double(s.size() - 1);
  size_t i = static_cast<size_t>(std::floor(pos));
  if (i + 1 >= s.size()) return s.back();
  double f = pos - double(i);
  return s[i] + f * (s[i + 1] - s[i]);
}

// astropy sigma_clip(cenfunc=median, stdfunc=mad_std) on a sorted vector: survivors form a
// contiguous range [lo, hi). Returns the survivors' mean.
inline double clipped_mean_sorted(const std::vector<double>& s, double sig_lo, double sig_hi,
                                  int iters, int64_t* n_kept = nullptr) {
  size_t lo = 0, hi = s.size();
  std::vector<double> dev;
  for (int it = 0; it < iters && hi > lo; ++it) {
    size_t n = hi - lo;
    double med = (n % 2) ? s[lo + n / 2] : 0.5 * (s[lo + n / 2 - 1] + s[lo + n / 2]);
    dev.resize(n);
    for (size_t k = 0; k < n; ++k) dev[k] = std::fabs(s[lo + k] - med);
    double sd = MAD_TO_SIGMA * median_inplace(dev.data(), int64_t(n));
    double lo_b = med - sig_lo * sd, hi_b = med + sig_hi * sd;
    size_t nlo = std::lower_bound(s.begin() + lo, s.begin() + hi, lo_b) - s.begin();
    size_t nhi = std::upper_bound(s.begin() + lo, s.begin() + hi, hi_b) - s.begin();
    if (nlo == lo && nhi == hi) break;
    lo = nlo; hi = nhi;
  }
  if (n_kept) *n_kept = int64_t(hi - lo);
  if (hi <= lo) return std::nan("");
  double acc = 0;
  for (size_t k = lo; k < hi; ++k) acc += s[k];
  return acc / double(hi - lo);
}

}  // namespace soxs::detail
