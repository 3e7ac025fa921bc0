// UVB D2/QTH stitching primitive: a curved line beyond the crossover order's edge that
// faces the next (QTH) order; D2 pixels on the crossover side, QTH pixels elsewhere.
#include <cmath>
#include <stdexcept>
#include <string>

#include "geometry.hpp"

namespace soxs {

std::vector<double> stitch_line(const Poly2D& lower, const Poly2D& upper, int crossover, int64_t len_b,
                                const Geometry& g, double offset, bool* d_below) {
  detail::check_poly(lower, "stitch_line"); detail::check_poly(upper, "stitch_line");
  if (len_b <= 0 || len_b > detail::MAX_SIDE || !std::isfinite(offset))
    throw std::invalid_argument("stitch_line: need 0 < len_b <= " + std::to_string(detail::MAX_SIDE) + " and a finite offset");
  // which side is order crossover-1 on? compare centres at mid-detector
  int64_t bm = len_b / 2;
  double cx = 0.5 * (detail::a_at(lower, crossover, bm, g) + detail::a_at(upper, crossover, bm, g));
  double nx = 0.5 * (detail::a_at(lower, crossover - 1, bm, g) + detail::a_at(upper, crossover - 1, bm, g));
  if (!(std::isfinite(cx) && std::isfinite(nx)) || cx == nx)
    throw std::runtime_error("stitch_line: cannot tell on which side order " + std::to_string(crossover - 1) + " lies");
  bool next_above = nx > cx;  // QTH orders at larger A: D2 is below the line
  if (d_below) *d_below = next_above;
  std::vector<double> line(len_b);
  for (int64_t b = 0; b < len_b; ++b) {
    double lo = detail::a_at(lower, crossover, b, g), up = detail::a_at(upper, crossover, b, g);
    line[b] = next_above ? std::max(lo, up) + offset : std::min(lo, up) - offset;
  }
  return line;
}

void stitch_frames(const float* d_flux, const float* d_err, const uint8_t* d_qual, const float* q_flux,
                   const float* q_err, const uint8_t* q_qual, int64_t ny, int64_t nx, const Geometry& g,
                   const std::vector<double>& line, bool d_below, double scale, float* out_flux,
                   float* out_err, uint8_t* out_qual) {
  detail::check_image_size(ny, nx, "stitch_frames");
  const int64_t la = g.a_is_x ? nx : ny, lb = g.a_is_x ? ny : nx;
  if (int64_t(line.size()) != lb)
    throw std::invalid_argument("stitch_frames: line has " + std::to_string(line.size()) + " entries, frame has " +
                                std::to_string(lb) + " lines");
  if (!(scale > 0)) throw std::invalid_argument("stitch_frames: scale must be > 0");
  for (int64_t b = 0; b < lb; ++b)
    for (int64_t a = 0; a < la; ++a) {
      int64_t i = g.index(a, b, nx);
      bool from_d = d_below ? (a < line[b]) : (a > line[b]);
      out_flux[i] = from_d ? float(d_flux[i] * scale) : q_flux[i];
      out_err[i] = from_d ? float(d_err[i] * scale) : q_err[i];
      out_qual[i] = from_d ? d_qual[i] : q_qual[i];
    }
}

}  // namespace soxs
