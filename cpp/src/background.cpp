// Kernel 5: scattered light from the inter-order gaps. Per line: robust level of every
// gap. Scattered light is the orders' own light spread by the optics' halo, so the model is
// first a non-negative mix of the in-order flux blurred by Gaussian halos of a few widths
// (fitted to the gap levels): that follows the light inside the orders, which the gaps never
// sample, and has no steps where orders end. What the halos leave in the gaps is smoothed
// along B per gap and interpolated across A on every line (orders sorted by their actual A
// position, so the model does not care which way order numbers run).
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "geometry.hpp"
#include "parallel.hpp"
#include "stats.hpp"

namespace soxs {
namespace {

struct GapSample { double a, level; int64_t a0, a1; };  // centre, median level, pixel range
using GapKey = std::pair<int, int>;  // neighbouring order numbers; INT_MIN/INT_MAX = detector side

// Natural cubic spline (or linear) through sorted points, evaluated at every a in [0, la).
void interpolate_line(const std::vector<double>& x, const std::vector<double>& y, int deg,
                      int64_t la, float* out, int64_t stride) {
  const size_t n = x.size();
  std::vector<double> m2(n, 0.0);
  if (deg >= 2 && n >= 3) {  // second derivatives, tridiagonal solve
    std::vector<double> u(n, 0.0);
    for (size_t i = 1; i + 1 < n; ++i) {
      double sig = (x[i] - x[i - 1]) / (x[i + 1] - x[i - 1]);
      double p = sig * m2[i - 1] + 2.0;
      m2[i] = (sig - 1.0) / p;
      double d = (y[i + 1] - y[i]) / (x[i + 1] - x[i]) - (y[i] - y[i - 1]) / (x[i] - x[i - 1]);
      u[i] = (6.0 * d / (x[i + 1] - x[i - 1]) - sig * u[i - 1]) / p;
    }
    m2[n - 1] = 0;
    for (size_t k = n - 1; k-- > 0;) m2[k] = m2[k] * m2[k + 1] + u[k];
  }
  size_t seg = 0;
  for (int64_t a = 0; a < la; ++a) {
    double v;
    if (a <= x.front()) v = y.front();
    else if (a >= x.back()) v = y.back();
    else {
      while (seg + 2 < n && x[seg + 1] < a) ++seg;
      double h = x[seg + 1] - x[seg], t = (a - x[seg]) / h, s = 1 - t;
      v = s * y[seg] + t * y[seg + 1] + ((s * s * s - s) * m2[seg] + (t * t * t - t) * m2[seg + 1]) * h * h / 6.0;
    }
    out[a * stride] = static_cast<float>(v);
  }
}

// Halo widths (Gaussian sigma, unbinned px): 10 * 2^(k/4), 10 to 160 px, and the grid (binned px
// per cell) they are built on. Steps of 2^(1/4), so that a mix matches any width between: with
// steps of 2^(1/2) the simulator's 48-px halo (between 40 and 56.6) was missed by 0.7 % RMS of the
// light in the orders, a trend from -0.8 % to +1.3 % across A; now 0.1 % (docs/benchmarks.md).
constexpr int kNHalo = 17;
double halo_sigma(int k) { return 10.0 * std::pow(2.0, k / 4.0); }
constexpr int kCell = 8;
constexpr int64_t kMinGap = 4;   // clear pixels a gap needs to give a level
constexpr int kMaxPiece = 64;    // samples of one gap piece in the halo fit (pieces are < 2 kCell px)
// The halo fit takes one line in halo_line_step (4 unbinned px): the lines b = step / 2 (mod step).
// A frame of fewer lines than that has no pieces, and then no halos (the gap interpolation only).
int64_t halo_line_step(const Geometry& g) { return std::max<int64_t>(1, 4 / std::max(1, g.bin_b)); }

// The four cells around binned (a, b) and their weights; cell c is centred at kCell * c + (kCell - 1) / 2,
// clamped at the borders.
struct Bilinear {
  int64_t c00, c01, c10, c11;   // cell indices [cb * na + ca]
  double fx, fy;
  double of(const double* v, int64_t stride) const {   // v[cell * stride]
    return (1 - fy) * ((1 - fx) * v[c00 * stride] + fx * v[c01 * stride]) +
           fy * ((1 - fx) * v[c10 * stride] + fx * v[c11 * stride]);
  }
};

// Coarse grid of (len_b / kCell) x (len_a / kCell) cells, indexed [cb * na + ca].
struct Grid {
  int64_t na = 0, nb = 0;
  std::vector<double> v;
  Bilinear weights(double a, double b) const {
    double x = std::clamp((a - 0.5 * (kCell - 1)) / kCell, 0.0, double(na - 1));
    double y = std::clamp((b - 0.5 * (kCell - 1)) / kCell, 0.0, double(nb - 1));
    int64_t x0 = std::min<int64_t>(int64_t(x), na - 1), y0 = std::min<int64_t>(int64_t(y), nb - 1);
    int64_t x1 = std::min(x0 + 1, na - 1), y1 = std::min(y0 + 1, nb - 1);
    return {y0 * na + x0, y0 * na + x1, y1 * na + x0, y1 * na + x1, x - x0, y - y0};
  }
  double at(double a, double b) const { return weights(a, b).of(v.data(), 1); }
};

// model[a, b] += grid.at(a, b) on every pixel; the weights along A are the same on every line, so they
// are computed once (Grid::weights' arithmetic, term for term: the same values).
void add_grid(const Grid& grid, float* model, int64_t la, int64_t lb, const Geometry& g, int64_t nx, int threads) {
  std::vector<Bilinear> wa(static_cast<size_t>(la));
  for (int64_t a = 0; a < la; ++a) wa[a] = grid.weights(double(a), 0.0);   // c00 = x0, c01 = x1 on row 0
  detail::parallel_for(lb, threads, [&](int64_t s, int64_t e) {
    for (int64_t b = s; b < e; ++b) {
      const Bilinear wb = grid.weights(0.0, double(b));   // c00 = y0 * na, c10 = y1 * na
      const double* r0 = &grid.v[wb.c00];
      const double* r1 = &grid.v[wb.c10];
      const double fy = wb.fy;
      for (int64_t a = 0; a < la; ++a) {
        const int64_t x0 = wa[a].c00, x1 = wa[a].c01;
        const double fx = wa[a].fx;
        model[g.index(a, b, nx)] += static_cast<float>((1 - fy) * ((1 - fx) * r0[x0] + fx * r0[x1]) +
                                                       fy * ((1 - fx) * r1[x0] + fx * r1[x1]));
      }
    }
  }, 16);
}

// 1-D Gaussian blur, the edge value continued beyond the detector: orders run off the detector
// along B and their light does not stop there, so their halo does not halve at the edge (zero
// padding underestimated the scattered light near the B edges by up to a half); where nothing is
// near the edge, continuing it adds nothing.
void blur_1d(const double* in, double* out, int64_t n, int64_t stride, double sigma) {
  const int64_t reach = static_cast<int64_t>(std::ceil(3.5 * sigma));
  std::vector<double> w(reach + 1);
  double norm = 0;
  for (int64_t d = 0; d <= reach; ++d) { w[d] = std::exp(-0.5 * double(d * d) / (sigma * sigma)); norm += d ? 2 * w[d] : w[d]; }
  std::vector<double> pad(static_cast<size_t>(n + 2 * reach));   // the line, its edge values continued
  for (int64_t k = 0; k < n + 2 * reach; ++k) pad[k] = in[std::clamp<int64_t>(k - reach, 0, n - 1) * stride];
  for (int64_t i = 0; i < n; ++i) {
    const double* c = &pad[i + reach];
    double acc = w[0] * c[0];
    for (int64_t d = 1; d <= reach; ++d) acc += w[d] * (c[d] + c[-d]);
    out[i * stride] = acc / norm;
  }
}

Grid blurred(const Grid& src, double sig_a, double sig_b, int threads) {
  Grid tmp = src, out = src;
  detail::parallel_for(src.nb, threads, [&](int64_t s, int64_t e) {
    for (int64_t b = s; b < e; ++b) blur_1d(&src.v[b * src.na], &tmp.v[b * src.na], src.na, 1, sig_a);
  }, 8);
  detail::parallel_for(src.na, threads, [&](int64_t s, int64_t e) {
    for (int64_t a = s; a < e; ++a) blur_1d(&tmp.v[a], &out.v[a], src.nb, src.na, sig_b);
  }, 8);
  return out;
}

// Solves a x = rhs for an m x m matrix and nr right-hand sides (row-major, rhs m x nr), Gaussian
// elimination with partial pivoting; a zero pivot leaves its unknowns at 0.
std::vector<double> gauss_solve(std::vector<double> a, int m, std::vector<double> rhs, int nr) {
  for (int c = 0; c < m; ++c) {
    int piv = c;
    for (int r = c + 1; r < m; ++r) if (std::abs(a[r * m + c]) > std::abs(a[piv * m + c])) piv = r;
    for (int q = 0; q < m; ++q) std::swap(a[c * m + q], a[piv * m + q]);
    for (int q = 0; q < nr; ++q) std::swap(rhs[c * nr + q], rhs[piv * nr + q]);
    if (a[c * m + c] == 0) continue;
    for (int r = c + 1; r < m; ++r) {
      double f = a[r * m + c] / a[c * m + c];
      for (int q = c; q < m; ++q) a[r * m + q] -= f * a[c * m + q];
      for (int q = 0; q < nr; ++q) rhs[r * nr + q] -= f * rhs[c * nr + q];
    }
  }
  std::vector<double> x(size_t(m) * nr, 0.0);
  for (int r = m - 1; r >= 0; --r)
    for (int q = 0; q < nr; ++q) {
      double acc = rhs[r * nr + q];
      for (int c = r + 1; c < m; ++c) acc -= a[r * m + c] * x[c * nr + q];
      x[r * nr + q] = a[r * m + r] != 0 ? acc / a[r * m + r] : 0.0;
    }
  return x;
}

// Solves ata[P, P] z = atb[P] for the index set P.
std::vector<double> solve_on(const std::vector<double>& ata, const std::vector<double>& atb, int k,
                             const std::vector<int>& P) {
  const int m = int(P.size());
  std::vector<double> a(size_t(m) * m), rhs(m);
  for (int r = 0; r < m; ++r) {
    for (int c = 0; c < m; ++c) a[r * m + c] = ata[P[r] * k + P[c]];
    a[r * m + r] *= 1 + 1e-10;             // near-collinear halos stay solvable
    rhs[r] = atb[P[r]];
  }
  return gauss_solve(std::move(a), m, std::move(rhs), 1);
}

// Lawson-Hanson non-negative least squares on the normal equations (k is a handful).
std::vector<double> nnls_small(const std::vector<double>& ata, const std::vector<double>& atb, int k) {
  std::vector<double> x(k, 0.0);
  std::vector<char> in(k, 0);
  double scale = 0;
  for (int j = 0; j < k; ++j) scale = std::max(scale, std::abs(atb[j]));
  const double tol = 1e-12 * scale;
  for (int outer = 0; outer < 3 * k; ++outer) {
    int best = -1;
    double wmax = 0;
    for (int j = 0; j < k; ++j) {
      if (in[j]) continue;
      double wj = atb[j];
      for (int q = 0; q < k; ++q) wj -= ata[j * k + q] * x[q];
      if (wj > tol && wj > wmax) { wmax = wj; best = j; }
    }
    if (best < 0) break;
    in[best] = 1;
    for (int inner = 0; inner < 3 * k; ++inner) {
      std::vector<int> P;
      for (int j = 0; j < k; ++j) if (in[j]) P.push_back(j);
      std::vector<double> z = solve_on(ata, atb, k, P);
      double step = 1.0;
      for (size_t r = 0; r < P.size(); ++r)
        if (z[r] <= 0) step = std::min(step, x[P[r]] / std::max(x[P[r]] - z[r], 1e-300));
      for (size_t r = 0; r < P.size(); ++r) x[P[r]] += step * (z[r] - x[P[r]]);
      if (step >= 1.0) break;
      for (size_t r = 0; r < P.size(); ++r) if (x[P[r]] <= 0) { x[P[r]] = 0; in[P[r]] = 0; }
    }
  }
  return x;
}

// The in-order light (fitted edges widened by the margin) as coarse-cell means; everything
// outside the orders counts as zero.
Grid order_light(const ImageView& img, const MaskView& mask, const Poly2D& lower, const Poly2D& upper,
                 const std::vector<OrderSpan>& orders, const Geometry& g, int margin, int threads) {
  const int64_t la = g.len_a(img), lb = g.len_b(img);
  Grid src;
  src.na = (la + kCell - 1) / kCell; src.nb = (lb + kCell - 1) / kCell;
  src.v.assign(static_cast<size_t>(src.na * src.nb), 0.0);
  // rows of cells in parallel; within a cell the sums run as in one loop (order, then line, then A)
  detail::parallel_for(src.nb, threads, [&](int64_t s, int64_t e) {
    for (const auto& o : orders) {
      int64_t b0, b1;
      detail::b_lines(o, g, lb, b0, b1);
      for (int64_t b = std::max(b0, s * kCell); b <= std::min(b1, e * kCell - 1); ++b) {
        double lo = detail::a_at(lower, o.order, b, g), up = detail::a_at(upper, o.order, b, g);
        int64_t a0 = std::max<int64_t>(0, int64_t(std::ceil(std::min(lo, up) - margin)));
        int64_t a1 = std::min<int64_t>(la - 1, int64_t(std::floor(std::max(lo, up) + margin)));
        for (int64_t a = a0; a <= a1; ++a) {
          int64_t i = g.index(a, b, img.nx);
          if (detail::good(img.data, mask.data, i)) src.v[(b / kCell) * src.na + a / kCell] += img.data[i];
        }
      }
    }
    for (int64_t cb = s; cb < e; ++cb)
      for (int64_t ca = 0; ca < src.na; ++ca)
        src.v[cb * src.na + ca] /= double(std::min<int64_t>(kCell, la - ca * kCell) * std::min<int64_t>(kCell, lb - cb * kCell));
  }, 4);
  return src;
}

// Median over a gap's pixels (at most 64 of them, evenly spread) of a smooth grid: what the
// gap's median level would be if the grid were the light there (a wide gap is not its centre).
double gap_median(const Grid& k, const GapSample& q, double b, std::vector<double>& buf) {
  const int64_t step = std::max<int64_t>(1, (q.a1 - q.a0) / 32);
  buf.clear();
  for (int64_t a = q.a0; a <= q.a1; a += step) buf.push_back(k.at(double(a), b));
  return detail::median_inplace(buf.data(), int64_t(buf.size()));
}

// Every halo's median over a piece's pixels (as gap_median; pieces are under 16 px, so every pixel):
// the bilinear weights of a pixel are computed once for all the halos (hk interleaves them per cell).
void piece_levels(const std::vector<double>& hk, const Grid& shape, const GapSample& q, double b, double* out) {
  const int64_t step = std::max<int64_t>(1, (q.a1 - q.a0) / 32);
  double vals[kNHalo][kMaxPiece];
  int n = 0;
  for (int64_t a = q.a0; a <= q.a1 && n < kMaxPiece; a += step, ++n) {   // the bound is never reached
    const Bilinear w = shape.weights(double(a), b);
    for (int j = 0; j < kNHalo; ++j) vals[j][n] = w.of(&hk[j], kNHalo);
  }
  for (int j = 0; j < kNHalo; ++j) out[j] = detail::median_inplace(vals[j], int64_t(n));
}

// Normal equations of levels ~ halos (>= 0) + a smooth surface (u^i w^j, i <= 3, j <= 2) that takes
// whatever is not order-shaped, summed over a block of lines.
constexpr int kP = 12;
struct Normal {
  std::array<double, kNHalo * kNHalo> kk{}; std::array<double, kNHalo * kP> kp{};
  std::array<double, kP * kP> pp{}; std::array<double, kNHalo> ky{}; std::array<double, kP> py{};
  void add(const Normal& o) {
    for (size_t i = 0; i < kk.size(); ++i) kk[i] += o.kk[i];
    for (size_t i = 0; i < kp.size(); ++i) kp[i] += o.kp[i];
    for (size_t i = 0; i < pp.size(); ++i) pp[i] += o.pp[i];
    for (int i = 0; i < kNHalo; ++i) ky[i] += o.ky[i];
    for (int i = 0; i < kP; ++i) py[i] += o.py[i];
  }
};

// The upper triangles of kk and pp only (mirror_lower fills the rest).
void accumulate(Normal& ne, const double* kv, const double* pv, double level) {
  for (int j = 0; j < kNHalo; ++j) {
    ne.ky[j] += kv[j] * level;
    for (int m = j; m < kNHalo; ++m) ne.kk[j * kNHalo + m] += kv[j] * kv[m];
    for (int m = 0; m < kP; ++m) ne.kp[j * kP + m] += kv[j] * pv[m];
  }
  for (int m = 0; m < kP; ++m) {
    ne.py[m] += pv[m] * level;
    for (int n = m; n < kP; ++n) ne.pp[m * kP + n] += pv[m] * pv[n];
  }
}

void mirror_lower(Normal& ne) {
  for (int j = 0; j < kNHalo; ++j) for (int m = 0; m < j; ++m) ne.kk[j * kNHalo + m] = ne.kk[m * kNHalo + j];
  for (int j = 0; j < kP; ++j) for (int m = 0; m < j; ++m) ne.pp[j * kP + m] = ne.pp[m * kP + j];
}

// The normal equations over the gap pieces of the lines that have them (one in halo_line_step: the
// halos are smooth on the 8-px grid, and those lines still give ~10^5 pieces for 29 unknowns; all
// lines made this fit two thirds of the background's time on SOXS VIS), in blocks of lines summed
// in a fixed order: the same sums for any number of threads.
Normal normal_equations(const std::vector<double>& hk, const Grid& shape, const std::vector<std::vector<GapSample>>& pieces,
                        int64_t la, int threads) {
  constexpr int64_t kLines = 32;
  const int64_t lb = int64_t(pieces.size()), nblk = (lb + kLines - 1) / kLines;
  std::vector<Normal> part(static_cast<size_t>(nblk));
  detail::parallel_for(nblk, threads, [&](int64_t s, int64_t e) {
    double kv[kNHalo], pv[kP];
    for (int64_t blk = s; blk < e; ++blk)
      for (int64_t b = blk * kLines; b < std::min(lb, (blk + 1) * kLines); ++b)
        for (const auto& q : pieces[b]) {
          piece_levels(hk, shape, q, double(b), kv);
          const double u = 2.0 * q.a / double(std::max<int64_t>(la - 1, 1)) - 1.0, w = 2.0 * b / double(std::max<int64_t>(lb - 1, 1)) - 1.0;
          for (int i = 0, t = 0; i <= 3; ++i) for (int j = 0; j <= 2; ++j, ++t) pv[t] = std::pow(u, i) * std::pow(w, j);
          accumulate(part[blk], kv, pv, q.level);
        }
  }, 1);
  Normal ne;
  for (const auto& p : part) ne.add(p);
  mirror_lower(ne);
  return ne;
}

// Fits the non-negative halo mix to the gap pieces' levels and leaves only what it does not explain
// in the gap levels; returns the mix on the coarse grid.
Grid fit_halos(const Grid& src, const std::vector<std::vector<GapSample>>& pieces,
               std::vector<std::vector<std::pair<GapKey, GapSample>>>& per_line, const Geometry& g,
               int64_t la, int threads) {
  // one halo per task, the widest (slowest) first: parallel over lines within a halo scaled poorly
  // (a column pass per halo is a strided walk); each blur's arithmetic is the same on any thread
  std::vector<Grid> hs(kNHalo);
  detail::parallel_for(kNHalo, threads, [&](int64_t s, int64_t e) {
    for (int64_t t = s; t < e; ++t) {
      const int j = kNHalo - 1 - int(t);
      hs[j] = blurred(src, halo_sigma(j) / g.bin_a / kCell, halo_sigma(j) / g.bin_b / kCell, 1);
    }
  }, 1);
  std::vector<double> hk(src.v.size() * kNHalo);   // the halos, interleaved per cell
  detail::parallel_for(int64_t(src.v.size()), threads, [&](int64_t s, int64_t e) {
    for (int64_t c = s; c < e; ++c)
      for (int j = 0; j < kNHalo; ++j) hk[c * kNHalo + j] = hs[j].v[c];
  }, 4096);
  // the surface is projected out of the normal equations, only the halos are kept
  const Normal ne = normal_equations(hk, src, pieces, la, threads);
  std::vector<double> pp(ne.pp.begin(), ne.pp.end()), rhs(kP * (kNHalo + 1));
  for (int m = 0; m < kP; ++m) {
    for (int j = 0; j < kNHalo; ++j) rhs[m * (kNHalo + 1) + j] = ne.kp[j * kP + m];
    rhs[m * (kNHalo + 1) + kNHalo] = ne.py[m];
  }
  const std::vector<double> x = gauss_solve(pp, kP, rhs, kNHalo + 1);   // pp^-1 [pk | py]
  std::vector<double> ata(ne.kk.begin(), ne.kk.end()), atb(ne.ky.begin(), ne.ky.end());
  for (int j = 0; j < kNHalo; ++j)
    for (int m = 0; m < kP; ++m) {
      for (int n = 0; n < kNHalo; ++n) ata[j * kNHalo + n] -= ne.kp[j * kP + m] * x[m * (kNHalo + 1) + n];
      atb[j] -= ne.kp[j * kP + m] * x[m * (kNHalo + 1) + kNHalo];
    }
  const std::vector<double> alpha = nnls_small(ata, atb, kNHalo);
  Grid mix = src;
  for (size_t c = 0; c < mix.v.size(); ++c) {
    mix.v[c] = 0;
    for (int j = 0; j < kNHalo; ++j) mix.v[c] += alpha[j] * hk[c * kNHalo + j];
  }
  detail::parallel_for(int64_t(per_line.size()), threads, [&](int64_t s, int64_t e) {
    std::vector<double> buf;
    for (int64_t b = s; b < e; ++b)
      for (auto& q : per_line[b]) q.second.level -= gap_median(mix, q.second, double(b), buf);
  }, 16);
  return mix;
}

}  // namespace

BackgroundResult fit_background(const ImageView& img, const MaskView& mask, const Poly2D& lower,
                                const Poly2D& upper, const std::vector<OrderSpan>& orders,
                                const Geometry& g, const BackgroundParams& p, int threads) {
  detail::check_geometry(img, g, "fit_background");
  detail::check_poly(lower, "fit_background"); detail::check_poly(upper, "fit_background");
  if (p.margin < 0 || p.outer_width < 0 || !(p.smooth_sigma >= 0 && p.smooth_sigma <= 1e9) || p.end_margin < 0)
    throw std::invalid_argument("fit_background: margin, outer_width, end_margin must be >= 0, 0 <= smooth_sigma <= 1e9");
  if (p.spline_deg < 1 || p.spline_deg > 5)   // data/parameters.yaml's bspline_deg range
    throw std::invalid_argument("fit_background: spline_deg must be in [1, 5], got " + std::to_string(p.spline_deg));
  detail::check_order_list(orders, "fit_background");
  const int64_t la = g.len_a(img), lb = g.len_b(img), step = halo_line_step(g);
  // 1. gap levels per line, keyed by the neighbouring orders
  std::vector<std::vector<std::pair<GapKey, GapSample>>> per_line(lb);
  std::vector<std::vector<GapSample>> pieces(lb);
  detail::parallel_for(lb, threads, [&](int64_t s, int64_t e) {
    std::vector<float> vals;
    struct Iv { double lo, up; int order; };
    for (int64_t b = s; b < e; ++b) {
      std::vector<Iv> iv;
      for (const auto& o : orders) {
        int64_t b0, b1;
        detail::b_lines(o, g, lb, b0, b1);
        if (b < b0 - p.end_margin || b > b1 + p.end_margin) continue;
        double lo = detail::a_at(lower, o.order, b, g), up = detail::a_at(upper, o.order, b, g);
        if (!(std::isfinite(lo) && std::isfinite(up))) continue;   // NaN would break the sort below
        iv.push_back({std::min(lo, up) - p.margin, std::max(lo, up) + p.margin, o.order});
      }
      if (iv.empty()) continue;
      std::sort(iv.begin(), iv.end(), [](const Iv& x, const Iv& y) { return x.lo < y.lo; });
      auto sample = [&](double from, double to, GapKey key) {
        int64_t a0 = std::max<int64_t>(0, detail::clamp_index(std::ceil(from)));
        int64_t a1 = std::min<int64_t>(la - 1, detail::clamp_index(std::floor(to)));
        vals.clear();
        for (int64_t a = a0; a <= a1; ++a) {
          int64_t i = g.index(a, b, img.nx);
          if (detail::good(img.data, mask.data, i)) vals.push_back(img.data[i]);
        }
        // a gap with fewer clear pixels is lit by the wings of the orders beside it: its level
        // is theirs, not the scattered light's (a 2-px SOXS NIR gap put the model 20 % high in
        // the orders on either side)
        if (int64_t(vals.size()) < kMinGap) return;
        double lvl = detail::median_inplace(vals.data(), int64_t(vals.size()));
        per_line[b].push_back({key, GapSample{0.5 * (a0 + a1), lvl, a0, a1}});
        // ~8-px pieces for the halo fit: one median per wide gap cannot tell a halo's width
        if (b % step != step / 2) return;
        const int64_t npc = std::max<int64_t>(1, (a1 - a0 + 1) / kCell);
        for (int64_t c = 0; c < npc; ++c) {
          int64_t c0 = a0 + (a1 - a0 + 1) * c / npc, c1 = a0 + (a1 - a0 + 1) * (c + 1) / npc - 1;
          vals.clear();
          for (int64_t a = c0; a <= c1; ++a) {
            int64_t i = g.index(a, b, img.nx);
            if (detail::good(img.data, mask.data, i)) vals.push_back(img.data[i]);
          }
          if (vals.size() >= 2)
            pieces[b].push_back(GapSample{0.5 * (c0 + c1), detail::median_inplace(vals.data(), int64_t(vals.size())), c0, c1});
        }
      };
      sample(iv.front().lo - p.outer_width, iv.front().lo, {INT32_MIN, iv.front().order});
      for (size_t k = 0; k + 1 < iv.size(); ++k) sample(iv[k].up, iv[k + 1].lo, {iv[k].order, iv[k + 1].order});
      sample(iv.back().up, iv.back().up + p.outer_width, {iv.back().order, INT32_MAX});
    }
  }, 16);
  // 2. the halo mix; then smooth every gap's remaining levels along B
  Grid halos;
  if (p.halos) halos = fit_halos(order_light(img, mask, lower, upper, orders, g, p.margin, threads), pieces, per_line, g, la, threads);
  std::map<GapKey, std::vector<std::pair<int64_t, GapSample>>> series;
  BackgroundResult r;
  for (int64_t b = 0; b < lb; ++b)
    for (auto& kv : per_line[b]) { series[kv.first].push_back({b, kv.second}); ++r.n_samples; }
  std::vector<std::pair<GapKey, std::vector<std::pair<int64_t, GapSample>>>> sv(series.begin(), series.end());
  detail::parallel_for(static_cast<int64_t>(sv.size()), threads, [&](int64_t s, int64_t e) {
    for (int64_t q = s; q < e; ++q) {
      auto& ser = sv[q].second;
      if (p.smooth_sigma <= 0) continue;
      std::vector<double> sm(ser.size());
      const double sg = p.smooth_sigma;
      // lags beyond the frame never occur: the weight table stays frame-sized for any sigma
      const int64_t reach = std::min<int64_t>(lb, static_cast<int64_t>(std::ceil(3 * sg)));
      std::vector<double> wt(reach + 1);  // Gaussian weight per integer line lag (no exp() per pair)
      for (int64_t d = 0; d <= reach; ++d) wt[d] = std::exp(-0.5 * double(d * d) / (sg * sg));
      size_t lo = 0;
      for (size_t i = 0; i < ser.size(); ++i) {
        while (ser[lo].first < ser[i].first - reach) ++lo;
        double wsum = 0, acc = 0;
        for (size_t k = lo; k < ser.size() && ser[k].first <= ser[i].first + reach; ++k) {
          double w = wt[std::abs(ser[k].first - ser[i].first)];
          wsum += w; acc += w * ser[k].second.level;
        }
        sm[i] = acc / wsum;
      }
      for (size_t i = 0; i < ser.size(); ++i) ser[i].second.level = sm[i];
    }
  }, 1);
  for (auto& line : per_line) line.clear();
  for (auto& kv : sv) for (auto& e : kv.second) per_line[e.first].push_back({kv.first, e.second});
  // 3. interpolate across A on every line; lines without samples copy the nearest line
  r.model.assign(static_cast<size_t>(img.ny * img.nx), 0.0f);
  const int64_t stride = g.a_is_x ? 1 : img.nx;
  std::vector<uint8_t> done(lb, 0);
  detail::parallel_for(lb, threads, [&](int64_t s, int64_t e) {
    std::vector<double> x, y;
    for (int64_t b = s; b < e; ++b) {
      auto& pts = per_line[b];
      if (pts.empty()) continue;
      std::sort(pts.begin(), pts.end(), [](auto& u, auto& v) { return u.second.a < v.second.a; });
      x.clear(); y.clear();
      for (auto& q : pts) {
        if (!x.empty() && q.second.a <= x.back()) continue;
        x.push_back(q.second.a); y.push_back(q.second.level);
      }
      interpolate_line(x, y, p.spline_deg, la, &r.model[g.index(0, b, img.nx)], stride);
      done[b] = 1;
    }
  }, 16);
  int64_t last = -1;
  std::vector<int64_t> nearest(lb, -1);
  for (int64_t b = 0; b < lb; ++b) { if (done[b]) last = b; nearest[b] = last; }
  for (int64_t b = lb - 1, next = -1; b >= 0; --b) {
    if (done[b]) { next = b; continue; }
    int64_t src = nearest[b];
    if (next >= 0 && (src < 0 || next - b < b - src)) src = next;
    if (src < 0) continue;
    for (int64_t a = 0; a < la; ++a) r.model[g.index(a, b, img.nx)] = r.model[g.index(a, src, img.nx)];
  }
  if (p.halos) add_grid(halos, r.model.data(), la, lb, g, img.nx, threads);
  return r;
}

}  // namespace soxs
