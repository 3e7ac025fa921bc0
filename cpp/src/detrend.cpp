// Preparation (orientation, trim, gain) and detrending arithmetic shared by every front end.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "soxs/mflat.hpp"
#include "validate.hpp"

namespace soxs {

namespace {

// Raw pixel (si, sj) for output pixel (i, j) of rot90(raw, K) (np.rot90: k=1 out[i,j] = in[j, n-1-i];
// k=2 in[m-1-i, n-1-j]; k=3 in[m-1-j, i]).
template <int K>
inline int64_t source_index(int64_t i, int64_t j, int64_t m, int64_t n) {
  if constexpr (K == 1) return j * n + (n - 1 - i);
  else if constexpr (K == 2) return (m - 1 - i) * n + (n - 1 - j);
  else if constexpr (K == 3) return (m - 1 - j) * n + i;
  else return i * n + j;
}

template <int K, class At>
void rotate_trim_k(int64_t m, int64_t n, const PrepareParams& p, float* out, At at) {
  const int64_t w = p.col1 - p.col0;
  if constexpr (K == 0 || K == 2) {   // whole rows of the raw frame: contiguous, vectorisable
    for (int64_t i = p.row0; i < p.row1; ++i)
      for (int64_t j = p.col0; j < p.col1; ++j) out[(i - p.row0) * w + (j - p.col0)] = at(source_index<K>(i, j, m, n)) * p.gain;
    return;
  }
  // 64x64 tiles: a quarter turn reads the raw frame column-wise, which is cache-hostile on whole rows
  constexpr int64_t T = 64;
  for (int64_t i0 = p.row0; i0 < p.row1; i0 += T)
    for (int64_t j0 = p.col0; j0 < p.col1; j0 += T)
      for (int64_t i = i0; i < std::min(i0 + T, p.row1); ++i)
        for (int64_t j = j0; j < std::min(j0 + T, p.col1); ++j)
          out[(i - p.row0) * w + (j - p.col0)] = at(source_index<K>(i, j, m, n)) * p.gain;
}

// The window of rot90(raw, k) at rows row0:row1, cols col0:col1 of the rotated frame, times the gain;
// ``at(i)`` is the raw frame's pixel i (row-major, m x n) as float32.
template <class At>
void rotate_trim(int64_t m, int64_t n, const PrepareParams& p, float* out, At at) {
  const int k = ((p.rot90 % 4) + 4) % 4;
  const int64_t ry = (k % 2) ? n : m, rx = (k % 2) ? m : n;  // rotated shape
  if (p.row0 < 0 || p.col0 < 0 || p.row1 > ry || p.col1 > rx || p.row1 <= p.row0 || p.col1 <= p.col0)
    throw std::invalid_argument("prepare_frame: science window rows " + std::to_string(p.row0) + ":" +
                                std::to_string(p.row1) + ", cols " + std::to_string(p.col0) + ":" +
                                std::to_string(p.col1) + " does not fit the rotated frame of shape (" +
                                std::to_string(ry) + ", " + std::to_string(rx) + ")");
  switch (k) {
    case 1: rotate_trim_k<1>(m, n, p, out, at); break;
    case 2: rotate_trim_k<2>(m, n, p, out, at); break;
    case 3: rotate_trim_k<3>(m, n, p, out, at); break;
    default: rotate_trim_k<0>(m, n, p, out, at);
  }
}

inline uint8_t bswap(uint8_t v) { return v; }
inline int16_t bswap(int16_t v) { return int16_t(__builtin_bswap16(uint16_t(v))); }
inline int32_t bswap(int32_t v) { return int32_t(__builtin_bswap32(uint32_t(v))); }

// Pixel i of a stored integer data unit; Swap: its byte order is not the host's.
template <class T, bool Swap>
inline T load_int(const uint8_t* b, int64_t i) {
  T v;
  std::memcpy(&v, b + i * int64_t(sizeof(T)), sizeof(T));
  return Swap ? bswap(v) : v;
}

template <class T, bool Swap>
void prepare_int(const RawIntView& raw, const PrepareParams& p, float* out) {
  const auto* b = static_cast<const uint8_t*>(raw.data);
  const double z = raw.bzero;
  rotate_trim(raw.ny, raw.nx, p, out, [&](int64_t i) { return static_cast<float>(double(load_int<T, Swap>(b, i)) + z); });
}

template <class T>
void prepare_int(const RawIntView& raw, const PrepareParams& p, float* out) {
  const uint16_t one = 1;
  const bool host_big = *reinterpret_cast<const uint8_t*>(&one) == 0;
  if (raw.big_endian != host_big) prepare_int<T, true>(raw, p, out);
  else prepare_int<T, false>(raw, p, out);
}

}  // namespace

void prepare_frame(const ImageView& raw, const PrepareParams& p, float* out) {
  detail::check_image_size(raw.ny, raw.nx, "prepare_frame");
  if (!raw.data || !out) throw std::invalid_argument("prepare_frame: missing raw or output buffer");
  rotate_trim(raw.ny, raw.nx, p, out, [&](int64_t i) { return raw.data[i]; });
}

void prepare_frame_int(const RawIntView& raw, const PrepareParams& p, float* out) {
  detail::check_image_size(raw.ny, raw.nx, "prepare_frame");
  if (!raw.data || !out) throw std::invalid_argument("prepare_frame: missing raw or output buffer");
  // a whole offset within 2^31: raw + bzero is exact in double (and what astropy's scaling gives)
  if (!(std::fabs(raw.bzero) <= 2147483648.0) || raw.bzero != std::floor(raw.bzero))
    throw std::invalid_argument("prepare_frame: BZERO must be a whole number within 2^31");
  switch (raw.bitpix) {
    case 8: prepare_int<uint8_t>(raw, p, out); break;
    case 16: prepare_int<int16_t>(raw, p, out); break;
    case 32: prepare_int<int32_t>(raw, p, out); break;
    default: throw std::invalid_argument("prepare_frame: integer BITPIX must be 8, 16 or 32, not " +
                                         std::to_string(raw.bitpix));
  }
}

double sample_percentile(const ImageView& img, int step, double q) {
  if (step < 1 || !(q >= 0 && q <= 100)) throw std::invalid_argument("sample_percentile: step >= 1, 0 <= q <= 100");
  if (img.ny < 0 || img.nx < 0 || (img.ny * img.nx > 0 && !img.data))
    throw std::invalid_argument("sample_percentile: bad image");
  std::vector<float> v;
  v.reserve(size_t((img.ny + step - 1) / step * ((img.nx + step - 1) / step)));
  for (int64_t i = 0; i < img.ny; i += step)
    for (int64_t j = 0; j < img.nx; j += step) v.push_back(img.data[i * img.nx + j]);
  if (v.empty()) return std::nan("");
  for (float x : v) if (std::isnan(x)) return std::nan("");   // as numpy.percentile
  const double pos = q / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  std::nth_element(v.begin(), v.begin() + lo, v.end());
  const double a = v[lo], b = hi == lo ? a : *std::min_element(v.begin() + lo + 1, v.end());
  const double t = pos - double(lo);
  return t >= 0.5 ? b - (b - a) * (1 - t) : a + (b - a) * t;   // numpy's _lerp
}

std::vector<int> pair_by_time(const std::vector<double>& flat_mjd, const std::vector<double>& off_mjd) {
  if (off_mjd.empty()) throw std::invalid_argument("pair_by_time: no lamp-off frames");
  std::vector<int> out;
  std::vector<uint8_t> used(off_mjd.size(), 0);
  size_t n_unused = off_mjd.size();
  for (double t : flat_mjd) {
    int best = -1;
    for (size_t j = 0; j < off_mjd.size(); ++j) {
      if (n_unused && used[j]) continue;   // reuse only once every frame has been used
      double d = (off_mjd[j] - t) * (off_mjd[j] - t);
      if (best < 0 || d < (off_mjd[best] - t) * (off_mjd[best] - t)) best = int(j);
    }
    if (n_unused && !used[best]) { used[best] = 1; --n_unused; }
    out.push_back(best);
  }
  return out;
}

void detrend_frame(float* data, int64_t npix, const float* cal, const float* cal_err, double cal_scale, double ron,
                   float* err) {
  const float s = static_cast<float>(cal_scale), r2 = static_cast<float>(ron * ron);
  for (int64_t i = 0; i < npix; ++i) {
    float var = 0.0f;
    if (cal) data[i] -= cal[i] * s;
    if (cal_err) { float e = cal_err[i] * s; var = e * e; }
    if (err) err[i] = std::sqrt((std::max(data[i], 0.0f) + r2) + var);
  }
}

}  // namespace soxs
