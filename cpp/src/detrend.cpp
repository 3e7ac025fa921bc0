// Preparation (orientation, trim, gain) and detrending arithmetic shared by every front end.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "soxs/mflat.hpp"
#include "validate.hpp"

namespace soxs {

void prepare_frame(const ImageView& raw, const PrepareParams& p, float* out) {
  detail::check_image_size(raw.ny, raw.nx, "prepare_frame");
  if (!raw.data || !out) throw std::invalid_argument("prepare_frame: missing raw or output buffer");
  const int k = ((p.rot90 % 4) + 4) % 4;
  const int64_t m = raw.ny, n = raw.nx;                 // raw shape
  const int64_t ry = (k % 2) ? n : m, rx = (k % 2) ? m : n;  // rotated shape
  if (p.row0 < 0 || p.col0 < 0 || p.row1 > ry || p.col1 > rx || p.row1 <= p.row0 || p.col1 <= p.col0)
    throw std::invalid_argument("prepare_frame: science window rows " + std::to_string(p.row0) + ":" +
                                std::to_string(p.row1) + ", cols " + std::to_string(p.col0) + ":" +
                                std::to_string(p.col1) + " does not fit the rotated frame of shape (" +
                                std::to_string(ry) + ", " + std::to_string(rx) + ")");
  const int64_t w = p.col1 - p.col0;
  // 64x64 tiles: a quarter turn reads the raw frame column-wise, which is cache-hostile on whole rows
  constexpr int64_t T = 64;
  for (int64_t i0 = p.row0; i0 < p.row1; i0 += T)
    for (int64_t j0 = p.col0; j0 < p.col1; j0 += T)
      for (int64_t i = i0; i < std::min(i0 + T, p.row1); ++i)
        for (int64_t j = j0; j < std::min(j0 + T, p.col1); ++j) {
          int64_t si, sj;  // np.rot90: k=1 out[i,j] = in[j, n-1-i]; k=2 in[m-1-i, n-1-j]; k=3 in[m-1-j, i]
          switch (k) {
            case 1: si = j; sj = n - 1 - i; break;
            case 2: si = m - 1 - i; sj = n - 1 - j; break;
            case 3: si = m - 1 - j; sj = i; break;
            default: si = i; sj = j;
          }
          out[(i - p.row0) * w + (j - p.col0)] = raw.data[si * n + sj] * p.gain;
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
