// Kernel 4: global polynomial A(n, B) with residual clipping, solved by Householder QR
// in scaled variables and converted back to soxspipe's raw power-series coefficients.
#include <cmath>
#include <stdexcept>
#include <string>

#include "soxs/mflat.hpp"
#include "stats.hpp"
#include "validate.hpp"

namespace soxs {

double Poly2D::eval(double n, double b) const {
  double acc = 0, npow = 1;
  for (int i = 0; i <= deg_n; ++i) {
    double row = 0;
    for (int j = deg_b; j >= 0; --j) row = row * b + c[i * (deg_b + 1) + j];
    acc += npow * row;
    npow *= n;
  }
  return acc;
}

namespace {

// Least squares min |X c - y| via Householder QR; X is m x p row-major (overwritten).
std::vector<double> qr_solve(std::vector<double>& X, std::vector<double> y, int64_t m, int p) {
  for (int k = 0; k < p; ++k) {
    double norm = 0;
    for (int64_t i = k; i < m; ++i) norm += X[i * p + k] * X[i * p + k];
    norm = std::sqrt(norm);
    if (norm == 0) throw std::runtime_error("polynomial fit: design matrix is rank deficient");
    double alpha = X[k * p + k] > 0 ? -norm : norm;
    X[k * p + k] -= alpha;           // v = x - alpha e1 stored in column k
    double vnorm2 = 0;
    for (int64_t i = k; i < m; ++i) vnorm2 += X[i * p + k] * X[i * p + k];
    for (int j = k + 1; j < p; ++j) {
      double d = 0;
      for (int64_t i = k; i < m; ++i) d += X[i * p + k] * X[i * p + j];
      double f = 2 * d / vnorm2;
      for (int64_t i = k; i < m; ++i) X[i * p + j] -= f * X[i * p + k];
    }
    double d = 0;
    for (int64_t i = k; i < m; ++i) d += X[i * p + k] * y[i];
    double f = 2 * d / vnorm2;
    for (int64_t i = k; i < m; ++i) y[i] -= f * X[i * p + k];
    X[k * p + k] = alpha;            // R diagonal
  }
  std::vector<double> c(p);
  for (int k = p - 1; k >= 0; --k) {
    double s = y[k];
    for (int j = k + 1; j < p; ++j) s -= X[k * p + j] * c[j];
    if (std::fabs(X[k * p + k]) < 1e-12 * std::fabs(X[0])) throw std::runtime_error("polynomial fit: ill-conditioned");
    c[k] = s / X[k * p + k];
  }
  return c;
}

// Coefficients of (x - x0)^k / s^k expanded in powers of x: out[i] for x^i.
std::vector<std::vector<double>> scaled_power_table(int deg, double x0, double s) {
  std::vector<std::vector<double>> t(deg + 1, std::vector<double>(deg + 1, 0.0));
  t[0][0] = 1;
  for (int k = 1; k <= deg; ++k)
    for (int i = 0; i <= k; ++i)  // multiply previous by (x - x0)/s
      t[k][i] = ((i ? t[k - 1][i - 1] : 0.0) - x0 * t[k - 1][i]) / s;
  return t;
}

Poly2D to_raw(const std::vector<double>& cs, int dn, int db, double n0, double ns, double b0, double bs) {
  auto tn = scaled_power_table(dn, n0, ns), tb = scaled_power_table(db, b0, bs);
  Poly2D P; P.deg_n = dn; P.deg_b = db; P.c.assign((dn + 1) * (db + 1), 0.0);
  for (int k = 0; k <= dn; ++k)
    for (int l = 0; l <= db; ++l) {
      double c = cs[k * (db + 1) + l];
      for (int i = 0; i <= k; ++i)
        for (int j = 0; j <= l; ++j) P.c[i * (db + 1) + j] += c * tn[k][i] * tb[l][j];
    }
  return P;
}

}  // namespace

FitResult fit_global_poly(const std::vector<double>& n, const std::vector<double>& b,
                          const std::vector<double>& a, int deg_n, int deg_b,
                          double clip_sigma, int max_iters) {
  const int64_t m = static_cast<int64_t>(a.size());
  if (n.size() != a.size() || b.size() != a.size())
    throw std::invalid_argument("fit_global_poly: n, b and a must have the same length");
  if (deg_n < 0 || deg_b < 0 || deg_n > detail::MAX_POLY_DEG || deg_b > detail::MAX_POLY_DEG)
    throw std::invalid_argument("fit_global_poly: degrees (" + std::to_string(deg_n) + ", " + std::to_string(deg_b) +
                                ") must be in [0, " + std::to_string(detail::MAX_POLY_DEG) + "]");
  if (!(clip_sigma > 0) || max_iters < 0 || max_iters > detail::MAX_CLIP_ITERS)
    throw std::invalid_argument("fit_global_poly: need clip_sigma > 0 and 0 <= max_iters <= " +
                                std::to_string(detail::MAX_CLIP_ITERS));
  for (int64_t i = 0; i < m; ++i)
    if (!(std::isfinite(n[i]) && std::isfinite(b[i]) && std::isfinite(a[i])))
      throw std::invalid_argument("fit_global_poly: point " + std::to_string(i) + " is not finite");
  const int p = (deg_n + 1) * (deg_b + 1);
  auto range = [](const std::vector<double>& v, double& c, double& s) {
    double lo = INFINITY, hi = -INFINITY;
    for (double x : v) { lo = std::min(lo, x); hi = std::max(hi, x); }
    c = 0.5 * (lo + hi); s = std::max(0.5 * (hi - lo), 1.0);
  };
  double n0 = 0, ns = 1, b0 = 0, bs = 1;
  if (m) { range(n, n0, ns); range(b, b0, bs); }
  FitResult r;
  r.clipped.assign(m, 0);
  r.residuals.assign(m, 0.0);
  std::vector<double> cs;
  auto basis = [&](int64_t i, double* row) {
    double u = (n[i] - n0) / ns, v = (b[i] - b0) / bs, up = 1;
    for (int k = 0; k <= deg_n; ++k, up *= u) {
      double vp = 1;
      for (int l = 0; l <= deg_b; ++l, vp *= v) row[k * (deg_b + 1) + l] = up * vp;
    }
  };
  std::vector<double> row(p);
  for (int it = 0;; ++it) {
    int64_t kept = 0;
    for (int64_t i = 0; i < m; ++i) kept += !r.clipped[i];
    if (kept < p)
      throw std::runtime_error("polynomial fit: " + std::to_string(kept) + " points for " + std::to_string(p) + " coefficients");
    std::vector<double> X(kept * p), y(kept);
    for (int64_t i = 0, q = 0; i < m; ++i)
      if (!r.clipped[i]) { basis(i, &X[q * p]); y[q++] = a[i]; }
    cs = qr_solve(X, y, kept, p);
    std::vector<double> kept_res;
    for (int64_t i = 0; i < m; ++i) {
      basis(i, row.data());
      double f = 0;
      for (int k = 0; k < p; ++k) f += row[k] * cs[k];
      r.residuals[i] = f - a[i];
      if (!r.clipped[i]) kept_res.push_back(r.residuals[i]);
    }
    r.iterations = it + 1;
    if (it >= max_iters) break;
    std::vector<double> tmp(kept_res);
    double med = detail::median_inplace(tmp.data(), int64_t(tmp.size()));
    for (size_t q = 0; q < kept_res.size(); ++q) tmp[q] = std::fabs(kept_res[q] - med);
    double sd = detail::MAD_TO_SIGMA * detail::median_inplace(tmp.data(), int64_t(tmp.size()));
    if (!(sd > 0)) break;
    int64_t newly = 0;
    for (int64_t i = 0; i < m; ++i)
      if (!r.clipped[i] && std::fabs(r.residuals[i] - med) > clip_sigma * sd) { r.clipped[i] = 1; ++newly; }
    if (!newly) break;
  }
  double ss = 0; int64_t cnt = 0;
  for (int64_t i = 0; i < m; ++i) if (!r.clipped[i]) { ss += r.residuals[i] * r.residuals[i]; ++cnt; }
  r.rms = cnt ? std::sqrt(ss / cnt) : 0;
  r.poly = to_raw(cs, deg_n, deg_b, n0, ns, b0, bs);
  return r;
}

}  // namespace soxs
