// Preparation (orientation, trim, gain) and detrending arithmetic shared by every front end.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "soxs/mflat.hpp"

namespace soxs {

void prepare_frame(const ImageView& raw, const PrepareParams& p, float* out) {
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
