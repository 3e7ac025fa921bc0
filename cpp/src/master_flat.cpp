// Kernel 7: the whole master-flat computation on in-memory, detrended frames.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "geometry.hpp"
#include "parallel.hpp"
#include "qc.hpp"
#include "stats.hpp"

namespace soxs {
namespace {

// soxspipe's exposure normalisation: sigma-clipped mean of the inner-order window (pixel list
// `win`), optionally of frame / first-pass master. Returns one level per frame.
std::vector<double> exposure_levels(const std::vector<const float*>& frames, const float* ref,
                                    const MaskView& bpm, const std::vector<int64_t>& win,
                                    const MasterFlatParams& p, std::vector<InnerStats>* stats) {
  std::vector<InnerStats> st(frames.size());
  detail::parallel_for(static_cast<int64_t>(frames.size()), p.threads, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k)
      st[k] = detail::inner_stats_at(frames[k], ref, bpm.data, win, p.norm_clip_sigma, p.norm_clip_iters,
                                     stats != nullptr);
  }, 1);
  std::vector<double> lv;
  for (size_t k = 0; k < st.size(); ++k) {
    if (!(st[k].mean > 0))
      throw std::runtime_error("frame " + std::to_string(k) + " has no positive flux inside the orders (mean " +
                               std::to_string(st[k].mean) + ")");
    lv.push_back(st[k].mean);
  }
  if (stats) *stats = st;
  return lv;
}

// The first-pass master is only read inside the windows (pass-2 levels): stack just those pixels,
// gathered into compact frames, and leave NaN elsewhere (same values where it is read).
std::vector<float> first_pass_master(const std::vector<const float*>& frames, const MaskView& bpm,
                                     const std::vector<int64_t>& win, const std::vector<double>& scales,
                                     int64_t npix, const MasterFlatParams& p) {
  const size_t n = frames.size(), m = win.size();
  std::vector<std::vector<float>> sub(n, std::vector<float>(m));
  std::vector<uint8_t> sub_mask(bpm.data ? m : 0);
  for (size_t k = 0; k < n; ++k)
    for (size_t j = 0; j < m; ++j) sub[k][j] = frames[k][win[j]];
  for (size_t j = 0; j < sub_mask.size(); ++j) sub_mask[j] = bpm.data[win[j]];
  std::vector<const float*> fp;
  for (auto& f : sub) fp.push_back(f.data());
  std::vector<const uint8_t*> masks(n, sub_mask.empty() ? nullptr : sub_mask.data());
  std::vector<float> stacked(m), full(npix, NAN);
  clip_and_stack(fp, {}, masks, scales, int64_t(m), p.stack, stacked.data(), nullptr, nullptr, nullptr, p.threads);
  for (size_t j = 0; j < m; ++j) full[win[j]] = stacked[j];
  return full;
}

double median_of(std::vector<double> v) { return detail::median_inplace(v.data(), int64_t(v.size())); }

// Smooth colour of every frame relative to the median frame, on the inner-order window: cell
// medians (64 x 64 px cells) of frame / median frame, fitted by a clipped (2, 2)-degree
// polynomial in normalised (a, b). Returns one polynomial per frame, divided by their mean so
// that correcting by it leaves the stack at the frames' mean colour. The window's pixels are taken
// in parallel pieces whose ratios are appended to their cells in the pieces' order (as one loop
// would), then the cells' medians and the frames' fits run in parallel: the same values on any
// number of threads.
std::vector<std::vector<double>> colour_ratios(const std::vector<const float*>& frames, const MaskView& bpm,
                                               const std::vector<int64_t>& win, const std::vector<double>& sc,
                                               int64_t ny, int64_t nx, const Geometry& g,
                                               std::vector<double>& ua, std::vector<double>& ub, int threads) {
  const size_t n = frames.size();
  const int64_t la = g.a_is_x ? nx : ny, lb = g.a_is_x ? ny : nx, cell = 64, nca = (la + cell - 1) / cell;
  const int64_t ncells = nca * ((lb + cell - 1) / cell), nwin = int64_t(win.size());
  const int64_t npieces = detail::chunk_count(nwin, 4096);
  std::vector<std::vector<int64_t>> keys(npieces);   // per piece: the cell of every kept pixel
  std::vector<std::vector<float>> ratios(npieces);   // and its n ratios
  detail::parallel_for(npieces, threads, [&](int64_t s, int64_t e) {
    std::vector<float> v(n), tmp(n);
    for (int64_t c = s; c < e; ++c)
      for (int64_t j = nwin * c / npieces; j < nwin * (c + 1) / npieces; ++j) {
        const int64_t i = win[j];
        if (bpm.data && bpm.data[i]) continue;
        for (size_t k = 0; k < n; ++k) tmp[k] = v[k] = float(frames[k][i] * sc[k]);
        const double ref = detail::median_inplace(tmp.data(), int64_t(n));
        if (!(ref > 0) || !std::isfinite(ref)) continue;
        const int64_t a = g.a_is_x ? i % nx : i / nx, b = g.a_is_x ? i / nx : i % nx;
        keys[c].push_back((b / cell) * nca + a / cell);
        for (size_t k = 0; k < n; ++k) ratios[c].push_back(float(v[k] / ref));
      }
  }, 1);
  std::vector<std::vector<std::vector<float>>> cells(ncells);   // cell -> per frame ratios
  for (int64_t c = 0; c < npieces; ++c)
    for (size_t h = 0; h < keys[c].size(); ++h) {
      auto& cl = cells[keys[c][h]];
      if (cl.empty()) cl.resize(n);
      for (size_t k = 0; k < n; ++k) cl[k].push_back(ratios[c][h * n + k]);
    }
  std::vector<int64_t> used;   // cells with enough pixels, in key order
  for (int64_t key = 0; key < ncells; ++key) if (!cells[key].empty() && cells[key][0].size() >= 100) used.push_back(key);
  std::vector<std::vector<double>> val(n, std::vector<double>(used.size()));
  detail::parallel_for(int64_t(used.size()), threads, [&](int64_t s, int64_t e) {
    for (int64_t u = s; u < e; ++u)
      for (size_t k = 0; k < n; ++k) {
        auto& c = cells[used[u]][k];
        val[k][u] = detail::median_inplace(c.data(), int64_t(c.size()));
      }
  }, 16);
  ua.clear(); ub.clear();
  for (int64_t key : used) {
    ua.push_back(2.0 * ((key % nca) * cell + 0.5 * cell) / double(la) - 1.0);
    ub.push_back(2.0 * ((key / nca) * cell + 0.5 * cell) / double(lb) - 1.0);
  }
  std::vector<std::vector<double>> out(n, std::vector<double>(ua.size(), 1.0));
  if (ua.size() < 20) return out;   // too few cells for a colour model
  detail::parallel_for(int64_t(n), threads, [&](int64_t s, int64_t e) {
    for (int64_t k = s; k < e; ++k) out[k] = fit_global_poly(ua, ub, val[k], 2, 2, 4.0, 3).poly.c;
  }, 1);
  return out;
}

// Divides every frame (and error map) by its colour relative to the mean colour, when some frame's
// colour departs from the others by more than `limit` somewhere on the orders: clipping assumes
// frames equal up to a scale, and a frame with another lamp colour would lose pixels in patches.
bool correct_colour(std::vector<const float*>& frames, std::vector<const float*>& errors, const MaskView& bpm,
                    const std::vector<int64_t>& win, const std::vector<double>& sc, int64_t ny, int64_t nx,
                    const Geometry& g, std::vector<std::vector<float>>& store, int threads) {
  const double limit = 0.005;
  double worst = 0;
  std::vector<double> cu, cw;
  auto polys = colour_ratios(frames, bpm, win, sc, ny, nx, g, cu, cw, threads);
  const size_t n = frames.size();
  const int64_t la = g.a_is_x ? nx : ny, lb = g.a_is_x ? ny : nx;
  auto eval = [&](const std::vector<double>& c, double u, double w) {
    double acc = 0, pu = 1;
    for (int i = 0; i < 3; ++i, pu *= u) { double pw = 1; for (int j = 0; j < 3; ++j, pw *= w) acc += c[i * 3 + j] * pu * pw; }
    return acc;
  };
  if (polys[0].size() != 9) return false;
  for (size_t c = 0; c < cu.size(); ++c) {   // how far the colours depart where they were measured
      double u = cu[c], w = cw[c], mean = 0;
      for (size_t k = 0; k < n; ++k) mean += eval(polys[k], u, w) / double(n);
      for (size_t k = 0; k < n; ++k) worst = std::max(worst, std::abs(eval(polys[k], u, w) / mean - 1));
    }
  if (worst <= limit) return false;
  store.assign(errors.empty() ? n : 2 * n, std::vector<float>(size_t(ny * nx)));
  detail::parallel_for(lb, threads, [&](int64_t s, int64_t e) {
    std::vector<double> f(n);
    for (int64_t b = s; b < e; ++b)
      for (int64_t a = 0; a < la; ++a) {
        const double u = 2.0 * (a + 0.5) / double(la) - 1.0, w = 2.0 * (b + 0.5) / double(lb) - 1.0;
        double mean = 0;
        for (size_t k = 0; k < n; ++k) { f[k] = eval(polys[k], u, w); mean += f[k] / double(n); }
        const int64_t i = g.index(a, b, nx);
        for (size_t k = 0; k < n; ++k) {
          const float q = float(mean / f[k]);
          store[k][i] = frames[k][i] * q;
          if (!errors.empty()) store[n + k][i] = errors[k][i] * q;
        }
      }
  }, 16);
  for (size_t k = 0; k < n; ++k) {
    frames[k] = store[k].data();
    if (!errors.empty()) errors[k] = store[n + k].data();
  }
  return true;
}

}  // namespace

void detail::fill_common_qc(QCValues& q, const std::vector<float>& flux, const std::vector<uint8_t>& quality,
                            const EdgeFit& edges, const std::vector<uint8_t>& inorder) {
  std::vector<double> res;
  for (const FitResult* f : {&edges.lower, &edges.upper})
    for (size_t i = 0; i < f->residuals.size(); ++i) if (!f->clipped[i]) res.push_back(f->residuals[i]);
  if (!res.empty()) {
    double mean = 0, ss = 0;
    for (double x : res) mean += x;
    mean /= double(res.size());
    for (double x : res) ss += (x - mean) * (x - mean);
    q.x_res_min = *std::min_element(res.begin(), res.end());
    q.x_res_max = *std::max_element(res.begin(), res.end());
    q.x_res_sd = std::sqrt(ss / double(res.size()));
  }
  int64_t cold = 0, nin = 0, low = 0;
  double sum = 0;
  for (size_t i = 0; i < quality.size(); ++i) {
    cold += (quality[i] & ~QUAL_BEYOND_RANGE) != 0;   // flagged beyond the range: not a cold pixel
    low += (quality[i] & QUAL_LOW_SENS) != 0;
    if (inorder[i] && !quality[i]) { sum += flux[i]; ++nin; }
  }
  q.n_low_sens = low;
  q.coldpix_num = cold;
  q.coldpix_frac = quality.empty() ? 0 : double(cold) / double(quality.size());
  q.inner_sum = sum;
  q.inner_mean = nin ? sum / double(nin) : 0;
}

std::vector<double> order_median_flux(const ImageView& img, const MaskView& mask, const Poly2D& centre,
                                      const std::vector<OrderSpan>& orders, const Geometry& g, int half) {
  std::vector<double> out;
  const int64_t la = g.len_a(img), lb = g.len_b(img);
  for (const auto& o : orders) {
    int64_t b0, b1;
    detail::b_lines(o, g, lb, b0, b1);
    int64_t bm = (b0 + b1) / 2;
    std::vector<float> v;
    for (int64_t b = std::max<int64_t>(b0, bm - half); b <= std::min(b1, bm + half); ++b) {
      const double cd = std::round(detail::a_at(centre, o.order, b, g));
      if (!(std::fabs(cd) < double(la) + half + 1)) continue;   // off the detector (or not finite)
      const int64_t c = static_cast<int64_t>(cd);
      for (int64_t a = std::max<int64_t>(0, c - half); a <= std::min(la - 1, c + half); ++a) {
        int64_t i = g.index(a, b, img.nx);
        if (detail::good(img.data, mask.data, i)) v.push_back(img.data[i]);
      }
    }
    out.push_back(v.empty() ? NAN : detail::median_inplace(v.data(), int64_t(v.size())));
  }
  return out;
}

MasterFlatResult master_flat(const std::vector<const float*>& frames, const std::vector<const float*>& errors,
                             const MaskView& bpm, int64_t ny, int64_t nx, const Poly2D& centre,
                             const std::vector<OrderSpan>& orders, const Geometry& g,
                             const MasterFlatParams& p) {
  if (frames.empty()) throw std::invalid_argument("master_flat: no frames given");
  if (frames.size() > 255) throw std::invalid_argument("master_flat: at most 255 frames, got " + std::to_string(frames.size()));
  if (!errors.empty() && errors.size() != frames.size())
    throw std::invalid_argument("master_flat: " + std::to_string(errors.size()) + " error maps for " +
                                std::to_string(frames.size()) + " frames");
  for (size_t k = 0; k < frames.size(); ++k)
    if (!frames[k] || (!errors.empty() && !errors[k]))
      throw std::invalid_argument("master_flat: frame or error map " + std::to_string(k) + " is missing");
  detail::check_geometry(ImageView{frames[0], ny, nx}, g, "master_flat");
  detail::check_order_list(orders, "master_flat");
  detail::check_poly(centre, "master_flat: order centre");
  detail::check_orders_on_detector(centre, orders, g, ny, nx, "master_flat");
  detail::check_master_params(p, orders.size(), g.a_is_x ? nx : ny, g.a_is_x ? ny : nx);
  const int64_t npix = ny * nx;
  std::vector<const uint8_t*> masks(frames.size(), bpm.data);
  MasterFlatResult r;
  // pass 1: each frame over its inner-order mean, stacked into a first-pass master
  const auto win = detail::centre_window_pixels(ny, nx, centre, orders, g, p.centre_window);
  std::vector<InnerStats> first;
  r.norm_first = exposure_levels(frames, nullptr, bpm, win, p, &first);
  std::vector<double> sc(frames.size());
  for (size_t k = 0; k < sc.size(); ++k) sc[k] = 1.0 / r.norm_first[k];
  // pass 2: level of frame / first-pass master, then the final stack
  r.norm_second = exposure_levels(frames, first_pass_master(frames, bpm, win, sc, npix, p).data(), bpm, win, p,
                                  nullptr);
  r.flux.resize(npix); r.error.resize(npix); r.quality.resize(npix);
  for (size_t k = 0; k < sc.size(); ++k) sc[k] = 1.0 / r.norm_second[k];
  ClipParams final_clip = p.stack;
  final_clip.error_floor = !errors.empty();
  std::vector<const float*> fr(frames), er(errors);
  std::vector<std::vector<float>> corrected;   // copies: the inputs are never modified
  correct_colour(fr, er, bpm, win, sc, ny, nx, g, corrected, p.threads);
  clip_and_stack(fr, er, masks, sc, npix, final_clip, r.flux.data(), r.error.data(), r.quality.data(),
                 nullptr, p.threads);
  for (int64_t i = 0; i < npix; ++i) {
    uint8_t q = r.quality[i] ? QUAL_NO_DATA : 0;
    if (bpm.data && bpm.data[i]) q |= QUAL_BAD_STATIC;
    r.quality[i] = q;
  }
  ImageView flat{r.flux.data(), ny, nx};
  MaskView qmask{r.quality.data()};
  r.edges = detect_and_fit_edges(flat, r.error.data(), qmask, centre, orders, g, p.edges, p.order_deg,
                                 p.disp_deg, p.fit_clip_sigma, p.fit_clip_iters, p.threads);
  r.stacked = r.flux;  // kept for the BKGROUND plot and for re-use (UVB stitching)
  if (p.subtract_background) {
    auto bg = fit_background(flat, qmask, r.edges.lower.poly, r.edges.upper.poly, orders, g, p.background, p.threads);
    r.background = std::move(bg.model);
    for (int64_t i = 0; i < npix; ++i) r.flux[i] -= r.background[i];
    // edges again, on the background-subtracted stack: scattered light from bright neighbours tilts
    // the profiles of dim orders and shifts their threshold crossings (the dim orders of a UVB lamp
    // master: up to 1 px, and through the global fit 0.3 px on the bright ones next to them)
    r.edges = detect_and_fit_edges(flat, r.error.data(), qmask, centre, orders, g, p.edges, p.order_deg,
                                   p.disp_deg, p.fit_clip_sigma, p.fit_clip_iters, p.threads);
  }
  auto ls = flag_low_sensitivity(flat, r.error.data(), qmask, r.edges.lower.poly, r.edges.upper.poly, orders, g,
                                 p.low_sens, p.threads);
  for (int64_t i = 0; i < npix; ++i) if (ls.flags[i]) r.quality[i] |= QUAL_LOW_SENS;
  auto inorder = detail::finish_flat(r.flux, r.error, r.quality, ny, nx, r.edges.lower.poly, r.edges.upper.poly,
                                     orders, g, p.background.end_margin);
  r.order_median_flux = order_median_flux(flat, qmask, centre, orders, g, 5);
  std::vector<double> p10, p50, p90;
  for (auto& s : first) { p10.push_back(s.p10); p50.push_back(s.p50); p90.push_back(s.p90); }
  r.qc.ordexp10 = median_of(p10); r.qc.ordexp50 = median_of(p50); r.qc.ordexp90 = median_of(p90);
  detail::fill_common_qc(r.qc, r.flux, r.quality, r.edges, inorder);
  return r;
}

}  // namespace soxs
