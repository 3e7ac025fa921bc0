// Preparation (orientation, trim, gain) and detrending arithmetic shared by every front end.
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
  for (int64_t i = p.row0; i < p.row1; ++i)
    for (int64_t j = p.col0; j < p.col1; ++j) {
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
