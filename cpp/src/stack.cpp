// Kernel 1: iterative median/MAD sigma clipping along the stack axis, then mean.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "parallel.hpp"
#include "soxs/mflat.hpp"
#include "stats.hpp"
#include "validate.hpp"

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

// With known noise, the clip's centre: the median, unless its window [m - lw, m + uw] holds at most
// half of the samples and the window around one of the samples holds strictly more; then the
// sample whose window holds the most (ties: nearest the median, then the lower). Cosmic rays
// hitting 3 of 5 frames make the median a hit and clip the 2 clean frames; their different
// energies rarely agree within the noise, the clean frames do. Where the median's window holds a majority nothing changes (a
// marginal outlier within reach of an extreme clean sample must not move the centre to it).
// Applied on the first pass only (later passes start from the cluster it chose).
inline double densest_centre(const Sample* s, int lo, int hi, double m, double lw, double uw) {
  auto count = [&](double c) { int k = 0; for (int q = lo; q < hi; ++q) k += s[q].v >= c - lw && s[q].v <= c + uw; return k; };
  int best = count(m), bdist = INT32_MAX;
  if (2 * best > hi - lo) return m;   // the median's window holds a majority: it stands
  double bm = m;
  for (int i = lo; i < hi; ++i) {
    const int c = count(s[i].v), dist = std::abs(2 * i - (lo + hi - 1));
    if (c > best || (c == best && bdist != INT32_MAX && dist < bdist)) { best = c; bm = s[i].v; bdist = dist; }
  }
  return bm;
}

// Clip sorted samples in place; returns surviving range [lo, hi).
template <class ErrOf>
inline void clip_sorted(const Sample* s, int n, const ClipParams& p, int& lo, int& hi, ErrOf err_of) {
  lo = 0; hi = n;
  for (int it = 0; it < p.max_iters && hi > lo; ++it) {
    double m = median_range(s, lo, hi);
    double sd = detail::MAD_TO_SIGMA * mad_range(s, lo, hi, m);
    if (p.error_floor) {
      double e2 = 0;
      for (int q = lo; q < hi; ++q) e2 += err_of(s[q].k) * err_of(s[q].k);
      // known noise: clip on it (frames equal up to a scale and a smooth colour, which the
      // caller divides out); the MAD of a handful of frames would let cosmic rays through
      sd = std::sqrt(e2 / (hi - lo));
      if (it == 0) m = densest_centre(s, lo, hi, m, p.sigma_lower * sd, p.sigma_upper * sd);
    }
    double lb = m - p.sigma_lower * sd, ub = m + p.sigma_upper * sd;
    int nlo = lo, nhi = hi;
    while (nlo < nhi && s[nlo].v < lb) ++nlo;
    while (nhi > nlo && s[nhi - 1].v > ub) --nhi;
    if (nlo == lo && nhi == hi) break;
    lo = nlo; hi = nhi;
  }
}

// Vector path for blocks of W pixels (n <= 16 frames): the same iterative clip, done lane-wise
// on SIMD vectors (GCC vector extensions, portable across ISAs). Unusable samples (masked,
// non-finite) become +inf and sort to the end; survivors stay a contiguous range [lo, hi)
// of every lane's sorted samples, errors travel with their samples through the sort.
constexpr int W = 16;
typedef float VF __attribute__((vector_size(W * sizeof(float))));
typedef int VI __attribute__((vector_size(W * sizeof(int))));

template <bool Carry>
inline void sort_net(VF* x, VF* c, int n) {
  for (int pass = 0; pass < n; ++pass)
    for (int k = pass & 1; k + 1 < n; k += 2) {
      VF a = x[k], b = x[k + 1];
      VI sw = b < a;
      x[k] = sw ? b : a;
      x[k + 1] = sw ? a : b;
      if (Carry) { VF ca = c[k], cb = c[k + 1]; c[k] = sw ? cb : ca; c[k + 1] = sw ? ca : cb; }
    }
}

// Lane-wise median of the sorted range [lo, lo + nu) of x (nu >= 1 where used).
inline VF median_sel(const VF* x, int n, VI lo, VI nu) {
  VI i1 = lo + (nu - 1) / 2, i2 = lo + nu / 2;
  VF a = x[0] - x[0], b = a;
  for (int k = 0; k < n; ++k) { a = (i1 == k) ? x[k] : a; b = (i2 == k) ? x[k] : b; }
  return 0.5f * (a + b);
}

// densest_centre, lane-wise, on the first pass: lo = 0 and the unusable samples past hi are +inf,
// outside every finite window, so no range test is needed.
inline VF densest_centre_vec(const VF* x, int n, VI lo, VI hi, VF m, VF lw, VF uw) {
  auto count = [&](VF c) {
    VI k = VI{};
    const VF a = c - lw, b = c + uw;
    for (int q = 0; q < n; ++q) k -= (x[q] >= a) & (x[q] <= b);
    return k;
  };
  VI best = count(m), bdist = VI{} + INT32_MAX;
  VF bm = m;
  // the usual case: the median's window holds a majority in every lane
  const VI minority = 2 * best <= hi - lo;
  uint64_t w[sizeof(VI) / sizeof(uint64_t)], any = 0;
  std::memcpy(w, &minority, sizeof(VI));
  for (uint64_t q : w) any |= q;
  if (!any) return m;
  const VI mid2 = lo + hi - 1;
  for (int i = 0; i < n; ++i) {
    const VI in = (i >= lo) & (i < hi);
    const VI c = count(x[i]);
    VI dist = 2 * i - mid2;
    dist = dist < 0 ? -dist : dist;
    const VI better = minority & in & ((c > best) | ((c == best) & (bdist != INT32_MAX) & (dist < bdist)));
    best = better ? c : best;
    bm = better ? x[i] : bm;
    bdist = better ? dist : bdist;
  }
  return bm;
}

template <bool HaveErr>
void block_vec(int n, const std::vector<const float*>& fr, const std::vector<const float*>& er,
               const std::vector<const uint8_t*>& mk, const float* sc, int64_t i0, const ClipParams& p,
               float* mean, float* err, uint8_t* qual, uint8_t* nused) {
  VF v[16], ev[16], d[16];
  const VF inf = VF{} + INFINITY;
  VI nvalid = VI{};
  for (int k = 0; k < n; ++k) {
    std::memcpy(&v[k], fr[k] + i0, sizeof(VF));
    v[k] *= sc[k];
    VI ok = (v[k] == v[k]) & (v[k] < inf) & (v[k] > -inf);
    if (!mk.empty() && mk[k])
      for (int j = 0; j < W; ++j) ok[j] = mk[k][i0 + j] ? 0 : ok[j];
    v[k] = ok ? v[k] : inf;
    nvalid -= ok;  // ok lanes are -1
    if (HaveErr) { std::memcpy(&ev[k], er[k] + i0, sizeof(VF)); ev[k] *= sc[k]; }
  }
  sort_net<HaveErr>(v, ev, n);
  VI lo = VI{}, hi = nvalid;
  for (int it = 0; it < p.max_iters; ++it) {
    VI nu = hi - lo;
    VF m = median_sel(v, n, lo, nu);
    for (int k = 0; k < n; ++k) {
      VI in = (k >= lo) & (k < hi);
      VF t = v[k] - m;
      d[k] = in ? (t < 0 ? -t : t) : inf;
    }
    sort_net<false>(d, nullptr, n);
    VF sd = float(detail::MAD_TO_SIGMA) * median_sel(d, n, VI{}, nu);
    if (HaveErr && p.error_floor) {
      VF e2 = VF{};
      for (int k = 0; k < n; ++k) { VI in = (k >= lo) & (k < hi); e2 += in ? ev[k] * ev[k] : VF{}; }
      VF fnu = __builtin_convertvector(nu, VF);
      for (int j = 0; j < W; ++j) {
        if (fnu[j] > 0) {
          sd[j] = std::sqrt(e2[j] / fnu[j]);   // known noise (as in clip_sorted)
        }
      }
      if (it == 0) m = densest_centre_vec(v, n, lo, hi, m, float(p.sigma_lower) * sd, float(p.sigma_upper) * sd);   // lo = 0
    }
    VF lb = m - float(p.sigma_lower) * sd, ub = m + float(p.sigma_upper) * sd;
    VI nlo = lo, nhi = hi;
    for (int k = 0; k < n; ++k) {
      VI in = (k >= lo) & (k < hi) & (nu > 0);
      nlo -= in & (v[k] < lb);
      nhi += in & (v[k] > ub);
    }
    VI changed = (nlo != lo) | (nhi != hi);
    lo = nlo; hi = nhi;
    bool any = false;
    for (int j = 0; j < W; ++j) any |= changed[j] != 0;
    if (!any) break;
  }
  VI nu = hi - lo;
  VF sum = VF{}, esum = VF{}, sq = VF{};
  for (int k = 0; k < n; ++k) {
    VI in = (k >= lo) & (k < hi);
    sum += in ? v[k] : VF{};
    if (HaveErr) esum += in ? ev[k] * ev[k] : VF{};
  }
  VF fnu = __builtin_convertvector(nu, VF);
  VF mu = fnu > 0 ? sum / fnu : VF{};
  if (!HaveErr)
    for (int k = 0; k < n; ++k) { VI in = (k >= lo) & (k < hi); VF t = v[k] - mu; sq += in ? t * t : VF{}; }
  float ev_out[W];
  for (int j = 0; j < W; ++j) {
    const float u = fnu[j];
    ev_out[j] = HaveErr ? (u > 0 ? std::sqrt(esum[j]) / u : 0.0f)   // sqrt(sum sigma_k^2) / n
                        : (u > 1 ? std::sqrt(sq[j] / (u - 1)) / std::sqrt(u) : 0.0f);
  }
  std::memcpy(mean, &mu, sizeof(VF));
  if (err) std::memcpy(err, ev_out, sizeof(VF));
  for (int j = 0; j < W; ++j) {
    if (qual) qual[j] = nu[j] ? 0 : 1;
    if (nused) nused[j] = static_cast<uint8_t>(nu[j]);
  }
}

// The last (npix % W) pixels through the vector path too, copied into W-wide buffers padded with
// NaN (unusable samples): every pixel gets the same arithmetic wherever it lies in the image.
void tail_block(int n, const std::vector<const float*>& fr, const std::vector<const float*>& er,
                const std::vector<const uint8_t*>& mk, const float* sc, int64_t i0, int64_t r, const ClipParams& p,
                float* mean, float* err, uint8_t* qual, uint8_t* nused) {
  std::vector<float> f(size_t(n) * W, NAN), e(er.empty() ? 0 : size_t(n) * W, 0.0f);
  std::vector<uint8_t> m(mk.empty() ? 0 : size_t(n) * W, 1);
  std::vector<const float*> fp(n), ep(er.size());
  std::vector<const uint8_t*> mp(mk.size());
  for (int k = 0; k < n; ++k) {
    std::copy(fr[k] + i0, fr[k] + i0 + r, f.begin() + size_t(k) * W);
    fp[k] = f.data() + size_t(k) * W;
    if (!er.empty()) { std::copy(er[k] + i0, er[k] + i0 + r, e.begin() + size_t(k) * W); ep[k] = e.data() + size_t(k) * W; }
    if (!mk.empty() && mk[k]) { std::copy(mk[k] + i0, mk[k] + i0 + r, m.begin() + size_t(k) * W); mp[k] = m.data() + size_t(k) * W; }
  }
  float om[W], oe[W];
  uint8_t oq[W], on[W];
  if (er.empty()) block_vec<false>(n, fp, ep, mp, sc, 0, p, om, oe, oq, on);
  else block_vec<true>(n, fp, ep, mp, sc, 0, p, om, oe, oq, on);
  std::copy(om, om + r, mean);
  if (err) std::copy(oe, oe + r, err);
  if (qual) std::copy(oq, oq + r, qual);
  if (nused) std::copy(on, on + r, nused);
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
  if (npix < 0 || npix > detail::MAX_PIXELS) throw std::invalid_argument("clip_and_stack: bad pixel count " + std::to_string(npix));
  if (!out_mean) throw std::invalid_argument("clip_and_stack: no output buffer");
  if (p.max_iters < 0 || !(p.sigma_lower > 0) || !(p.sigma_upper > 0))
    throw std::invalid_argument("clip_and_stack: sigmas must be > 0 and iterations >= 0");
  for (int k = 0; k < n; ++k)
    if (!frames[k]) throw std::invalid_argument("clip_and_stack: frame " + std::to_string(k) + " is null");
  bool have_err = !errors.empty();
  for (int k = 0; k < n && have_err; ++k) have_err = errors[k] != nullptr;
  std::vector<float> sc(n, 1.0f);
  for (int k = 0; k < n && !scales.empty(); ++k) sc[k] = static_cast<float>(scales[k]);

  // the error floor needs error maps: without them both paths clip on the MAD sigma alone
  ClipParams pc = p;
  pc.error_floor = p.error_floor && have_err;
  const bool block_ok = n <= 16;
  // work is split into W-pixel blocks at fixed positions (the last one padded), so which path and
  // which arithmetic a pixel gets never depends on the chunks, i.e. on the number of threads
  const int64_t nblk = (npix + W - 1) / W;
  detail::parallel_for(nblk, threads, [&](int64_t bb, int64_t be) {
    std::vector<Sample> buf(n);
    Sample* s = buf.data();
    auto scalar = [&](int64_t i) {
      int m = 0;
      for (int k = 0; k < n; ++k) {
        if (!masks.empty() && masks[k] && masks[k][i]) continue;
        float v = frames[k][i] * sc[k];
        if (std::isfinite(v)) s[m++] = Sample{v, k};
      }
      insertion_sort(s, m);
      int lo = 0, hi = 0;
      clip_sorted(s, m, pc, lo, hi, [&](int k) { return have_err ? double(errors[k][i]) * sc[k] : INFINITY; });
      int used = hi - lo;
      double sum = 0, esum = 0, sq = 0;
      for (int q = lo; q < hi; ++q) {
        sum += s[q].v;
        if (have_err) { const double e = double(errors[s[q].k][i]) * sc[s[q].k]; esum += e * e; }
      }
      double mean = used ? sum / used : 0.0, err = 0.0;
      if (used && have_err) {
        err = std::sqrt(esum) / used;   // the error of a mean of `used` frames: sqrt(sum sigma_k^2) / n
      } else if (used > 1) {
        for (int q = lo; q < hi; ++q) sq += (s[q].v - mean) * (s[q].v - mean);
        err = std::sqrt(sq / (used - 1)) / std::sqrt(double(used));
      }
      out_mean[i] = static_cast<float>(mean);
      if (out_error) out_error[i] = static_cast<float>(err);
      if (out_quality) out_quality[i] = used ? 0 : 1;
      if (out_nused) out_nused[i] = static_cast<uint8_t>(used);
    };
    for (int64_t blk = bb; blk < be; ++blk) {
      const int64_t i = blk * W, r = std::min<int64_t>(W, npix - i);
      if (!block_ok) {
        for (int64_t j = i; j < i + r; ++j) scalar(j);
        continue;
      }
      float* oe = out_error ? out_error + i : nullptr;
      uint8_t* oq = out_quality ? out_quality + i : nullptr;
      uint8_t* on = out_nused ? out_nused + i : nullptr;
      if (r < W) tail_block(n, frames, have_err ? errors : std::vector<const float*>{}, masks, sc.data(), i, r, pc,
                            out_mean + i, oe, oq, on);
      else if (have_err) block_vec<true>(n, frames, errors, masks, sc.data(), i, pc, out_mean + i, oe, oq, on);
      else block_vec<false>(n, frames, errors, masks, sc.data(), i, pc, out_mean + i, oe, oq, on);
    }
  }, 4096 / W);
}

}  // namespace soxs
