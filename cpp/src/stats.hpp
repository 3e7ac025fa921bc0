// Small robust-statistics helpers shared by the kernels (astropy/numpy semantics).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace soxs::detail {

constexpr double MAD_TO_SIGMA = 1.482602218505602;  // 1 / Phi^-1(3/4), as astropy mad_std

// Compare-exchange without branches (minss/maxss); the networks below are N. Devillard's
// optimal median searches for 3, 5 and 7 values, the low-sensitivity model's usual windows.
template <class T>
inline void sort2(T& a, T& b) { T lo = std::min(a, b); b = std::max(a, b); a = lo; }

template <class T>
inline T median_network(T* p, int64_t n) {
  if (n == 3) { sort2(p[0], p[1]); sort2(p[1], p[2]); sort2(p[0], p[1]); return p[1]; }
  if (n == 5) {
    sort2(p[0], p[1]); sort2(p[3], p[4]); sort2(p[0], p[3]); sort2(p[1], p[4]);
    sort2(p[1], p[2]); sort2(p[2], p[3]); sort2(p[1], p[2]);
    return p[2];
  }
  sort2(p[0], p[5]); sort2(p[0], p[3]); sort2(p[1], p[6]); sort2(p[2], p[4]); sort2(p[0], p[1]);
  sort2(p[3], p[5]); sort2(p[2], p[6]); sort2(p[2], p[3]); sort2(p[3], p[6]); sort2(p[4], p[5]);
  sort2(p[1], p[4]); sort2(p[1], p[3]); sort2(p[3], p[4]);
  return p[3];
}

// Median of v (reorders v). Even counts average the two middle values (numpy).
template <class T>
double median_inplace(T* v, int64_t n) {
  if (n <= 0) return std::nan("");
  if (n == 1) return double(v[0]);
  if (n == 3 || n == 5 || n == 7) return double(median_network(v, n));
  int64_t h = n / 2;
  if (n <= 16) {  // tiny windows (low-sensitivity model, slice profiles): insertion sort is fastest
    for (int64_t i = 1; i < n; ++i) {
      T x = v[i];
      int64_t j = i - 1;
      while (j >= 0 && v[j] > x) { v[j + 1] = v[j]; --j; }
      v[j + 1] = x;
    }
    return (n % 2) ? double(v[h]) : 0.5 * (double(v[h - 1]) + double(v[h]));
  }
  std::nth_element(v, v + h, v + n);
  double hi = v[h];
  if (n % 2) return hi;
  double lo = *std::max_element(v, v + h);
  return 0.5 * (lo + hi);
}

// astropy sigma_clip(cenfunc=median, stdfunc=mad_std) then the survivors' mean, by selection
// (no sort): survivors are filtered in place each iteration. Reorders v.
inline double clipped_mean_select(std::vector<double>& v, double sig_lo, double sig_hi, int iters) {
  std::vector<double> dev;
  for (int it = 0; it < iters && !v.empty(); ++it) {
    double med = median_inplace(v.data(), int64_t(v.size()));
    dev.resize(v.size());
    for (size_t k = 0; k < v.size(); ++k) dev[k] = std::fabs(v[k] - med);
    double sd = MAD_TO_SIGMA * median_inplace(dev.data(), int64_t(dev.size()));
    double lo_b = med - sig_lo * sd, hi_b = med + sig_hi * sd;
    size_t before = v.size();
    v.erase(std::remove_if(v.begin(), v.end(), [&](double x) { return x < lo_b || x > hi_b; }), v.end());
    if (v.size() == before) break;
  }
  if (v.empty()) return std::nan("");
  double acc = 0;
  for (double x : v) acc += x;
  return acc / double(v.size());
}

}  // namespace soxs::detail
