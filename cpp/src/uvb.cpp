// X-shooter UVB: combine the D2 and QTH masters (crossover order, scale, stitch, edges re-fitted).
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "geometry.hpp"
#include "qc.hpp"
#include "soxs/mflat.hpp"
#include "validate.hpp"

namespace soxs {

int choose_crossover(const std::vector<int>& orders, const std::vector<int>& slices, const std::vector<int>& used_d,
                     const std::vector<int>& used_q, const std::vector<double>& elec_d,
                     const std::vector<double>& elec_q, double min_frac) {
  const size_t n = orders.size();
  if (slices.size() != n || used_d.size() != n || used_q.size() != n || elec_d.size() != n || elec_q.size() != n)
    throw std::invalid_argument("choose_crossover: per-order inputs differ in length");
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return orders[a] < orders[b]; });
  auto lg = [](double e) { return std::log(std::max(e, 1e-30)); };
  double best = -std::numeric_limits<double>::infinity();
  int pick = 0;
  bool any = false;
  for (size_t k = 0; k < n; ++k) {
    size_t i = idx[k];
    bool ok = used_d[i] >= min_frac * slices[i] && used_q[i] >= min_frac * slices[i] && elec_d[i] > 0 && elec_q[i] > 0;
    if (!ok) continue;
    double score = 0;
    for (size_t m = 0; m < n; ++m) score += m < k ? lg(elec_q[idx[m]]) : lg(elec_d[idx[m]]);
    if (!any || score > best) { best = score; pick = orders[i]; any = true; }
  }
  if (!any) throw std::runtime_error("no UVB order has usable flux and detected edges in both the D2 and the QTH master");
  return pick;
}

UvbResult combine_uvb(const LampMaster& d, const LampMaster& q, int64_t ny, int64_t nx, const Poly2D& centre_q,
                      const std::vector<OrderSpan>& orders, const Geometry& g, const UvbParams& p) {
  detail::check_image_size(ny, nx, "combine_uvb");
  detail::check_order_list(orders, "combine_uvb");
  detail::check_polynomial(centre_q, "combine_uvb: QTH order centre");
  detail::check_orders_on_detector(centre_q, orders, g, ny, nx, "combine_uvb");
  detail::check_uvb_params(p, orders.size(), g.a_is_x ? nx : ny, g.a_is_x ? ny : nx);
  for (const LampMaster* m : {&d, &q}) {
    const char* lamp = m == &d ? "combine_uvb: D2 master" : "combine_uvb: QTH master";
    if (!m->stacked || !m->error || !m->quality) throw std::invalid_argument(std::string(lamp) + ": missing image");
    if (m->n_used.size() != orders.size() || m->n_slices.size() != orders.size() ||
        m->order_median_flux.size() != orders.size())
      throw std::invalid_argument(std::string(lamp) + ": per-order lists differ in length from the " +
                                  std::to_string(orders.size()) + " orders");
    detail::check_polynomial(m->lower, std::string(lamp) + " lower edge");
    detail::check_polynomial(m->upper, std::string(lamp) + " upper edge");
  }
  const int64_t npix = ny * nx;
  std::vector<int> ord;
  for (auto& o : orders) ord.push_back(o.order);
  std::vector<double> ed, eq;
  for (size_t i = 0; i < orders.size(); ++i) {
    ed.push_back(d.order_median_flux.at(i) * d.level_e);
    eq.push_back(q.order_median_flux.at(i) * q.level_e);
  }
  UvbResult r;
  r.crossover = choose_crossover(ord, d.n_slices, d.n_used, q.n_used, ed, eq, p.min_frac);
  size_t k = std::find(ord.begin(), ord.end(), r.crossover) - ord.begin();
  r.scale = p.scale_d2_to_qth ? q.order_median_flux[k] / d.order_median_flux[k] : 1.0;
  if (!(r.scale > 0) || !std::isfinite(r.scale))
    throw std::runtime_error("UVB: D2 to QTH scale at order " + std::to_string(r.crossover) + " is not positive");
  const int64_t lb = g.a_is_x ? ny : nx;
  r.line = stitch_line(d.lower, d.upper, r.crossover, lb, g, p.offset, &r.d_below);
  // background-subtracted stitch (the product, and where edges are re-detected) and raw-stack stitch (plots)
  std::vector<float> dpre(d.stacked, d.stacked + npix), qpre(q.stacked, q.stacked + npix);
  if (d.background) for (int64_t i = 0; i < npix; ++i) dpre[i] -= d.background[i];
  if (q.background) for (int64_t i = 0; i < npix; ++i) qpre[i] -= q.background[i];
  r.flux.resize(npix); r.error.resize(npix); r.stacked.resize(npix); r.quality.resize(npix);
  std::vector<float> tmp_err(npix);
  std::vector<uint8_t> tmp_q(npix);
  stitch_frames(dpre.data(), d.error, d.quality, qpre.data(), q.error, q.quality, ny, nx, g, r.line, r.d_below,
                r.scale, r.flux.data(), r.error.data(), r.quality.data());
  stitch_frames(d.stacked, d.error, d.quality, q.stacked, q.error, q.quality, ny, nx, g, r.line, r.d_below, r.scale,
                r.stacked.data(), tmp_err.data(), tmp_q.data());
  // edges on the background-subtracted stitch: scattered light shifts the crossings of dim orders
  ImageView st{r.flux.data(), ny, nx};
  r.edges = detect_and_fit_edges(st, r.error.data(), MaskView{r.quality.data()}, centre_q, orders, g, p.edges,
                                 p.order_deg, p.disp_deg, p.fit_clip_sigma, p.fit_clip_iters, p.threads);
  auto inorder = detail::finish_flat(r.flux, r.error, r.quality, ny, nx, r.edges.lower.poly, r.edges.upper.poly,
                                     orders, g, BackgroundParams{}.end_margin);
  r.qc.ordexp10 = q.qc.ordexp10; r.qc.ordexp50 = q.qc.ordexp50; r.qc.ordexp90 = q.qc.ordexp90;
  detail::fill_common_qc(r.qc, r.flux, r.quality, r.edges, inorder);
  return r;
}

}  // namespace soxs
