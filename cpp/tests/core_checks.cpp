// The core under AddressSanitizer + UBSan (cmake -DSOXS_SANITIZE=ON -DSOXS_BUILD_TESTS=ON; scripts/sanitize.sh):
// every kernel on a small synthetic echelle frame (sizes not multiples of 16, 1 to 20 frames), and
// the bad inputs of issue 14, each of which must be refused with std::invalid_argument. A read or
// write outside a buffer, or undefined behaviour (a cast of 1e300 to an integer), aborts the run.
#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "soxs/mflat.hpp"

namespace {

int failures = 0;
const int64_t NY = 301, NX = 219;   // B lines x A columns (a_is_x): 65919 px, not a multiple of 16
const std::vector<int> ORDERS = {1, 2, 3, 4};

void expect(bool ok, const std::string& what) {
  if (!ok) { std::printf("FAIL: %s\n", what.c_str()); ++failures; }
}

void expect_refused(const std::string& what, const std::function<void()>& call) {
  try {
    call();
    expect(false, what + ": accepted");
  } catch (const std::invalid_argument& e) {
    std::printf("refused  %-28s %s\n", what.c_str(), e.what());
  } catch (const std::exception& e) {
    expect(false, what + ": wrong exception: " + e.what());
  }
}

soxs::Poly2D centre_poly(double extra = 0, int cell = -1) {   // A = 30 + 45 n + 0.01 B (unbinned)
  soxs::Poly2D p;
  p.deg_n = 3; p.deg_b = 5;
  p.c.assign(24, 0.0);
  p.c[0] = 30; p.c[6] = 45; p.c[1] = 0.01;
  if (cell >= 0) p.c[cell] += extra;
  return p;
}

std::vector<soxs::OrderSpan> spans(const std::vector<int>& orders) {
  std::vector<soxs::OrderSpan> o;
  for (int n : orders) o.push_back({n, 0.0, double(NY - 1)});
  return o;
}

// Top-hat orders of half-width 12 px, smoothed edges, times a slow spectrum and a frame level.
std::vector<float> flat_frame(double level, unsigned seed) {
  std::vector<float> f(NY * NX);
  const soxs::Poly2D c = centre_poly();
  for (int64_t b = 0; b < NY; ++b)
    for (int64_t a = 0; a < NX; ++a) {
      double v = 50;
      for (int n : ORDERS) {
        const double d = std::fabs(a - c.eval(n, double(b)));
        v += 20000 * 0.5 * std::erfc((d - 12) / 1.5) * (1 + 0.2 * std::sin(b / 60.0));
      }
      seed = seed * 1103515245u + 12345u;   // a little deterministic noise
      f[b * NX + a] = float(level * v + ((seed >> 16) % 100) - 50.0);
    }
  return f;
}

soxs::MasterFlatParams params() {
  soxs::NamedParams m = {{"order_deg", 2}, {"disp_axis_deg", 2}, {"centre_order_window", 6},
                         {"slice_length_for_edge_detection", 40}, {"gaussian_blur_sigma", 20}, {"threads", 3}};
  return soxs::master_params_from(m);
}

void run_kernels() {
  std::vector<std::vector<float>> fr, er;
  for (int k = 0; k < 20; ++k) {
    fr.push_back(flat_frame(1 + 0.01 * (k % 5), 7u + k));
    er.push_back(std::vector<float>(NY * NX));
    for (int64_t i = 0; i < NY * NX; ++i) er[k][i] = std::sqrt(std::fmax(fr[k][i], 0.0f) + 9.0f);
  }
  fr[2][5] = NAN; fr[3][NY * NX - 1] = INFINITY;
  std::vector<uint8_t> bpm(NY * NX, 0);
  bpm[1234] = bpm[NY * NX - 3] = 1;
  for (int n : {1, 3, 16, 17, 20}) {   // vector path (<= 16 frames, padded tail) and scalar path
    std::vector<const float*> f, e;
    for (int k = 0; k < n; ++k) { f.push_back(fr[k].data()); e.push_back(er[k].data()); }
    for (int64_t npix : {int64_t(1), int64_t(15), int64_t(17), NY * NX}) {
      std::vector<float> mean(npix), err(npix);
      std::vector<uint8_t> q(npix), nu(npix);
      soxs::ClipParams cp;
      cp.error_floor = true;
      soxs::clip_and_stack(f, e, std::vector<const uint8_t*>(n, bpm.data()), {}, npix, cp, mean.data(), err.data(),
                           q.data(), nu.data(), 4);
      soxs::clip_and_stack(f, {}, {}, {}, npix, cp, mean.data(), nullptr, nullptr, nullptr, 2);
    }
  }
  std::vector<const float*> f, e;
  for (int k = 0; k < 5; ++k) { f.push_back(fr[k].data()); e.push_back(er[k].data()); }
  const soxs::Geometry g{true, 1, 1};
  soxs::MasterFlatResult r = soxs::master_flat(f, e, {bpm.data()}, NY, NX, centre_poly(), spans(ORDERS), g, params());
  expect(r.flux.size() == size_t(NY * NX) && r.edges.points.order.size() > 20, "master_flat result");
  // UVB: the same master as both lamps (stitching, crossover, edges re-fitted)
  soxs::LampMaster lm;
  lm.stacked = r.stacked.data(); lm.background = r.background.data(); lm.error = r.error.data();
  lm.quality = r.quality.data(); lm.lower = r.edges.lower.poly; lm.upper = r.edges.upper.poly;
  lm.n_used = r.edges.n_used_per_order; lm.n_slices = r.edges.points.n_slices_per_order;
  lm.order_median_flux = r.order_median_flux;
  soxs::UvbParams up;
  up.order_deg = 2; up.disp_deg = 2; up.edges = params().edges;
  soxs::UvbResult u = soxs::combine_uvb(lm, lm, NY, NX, centre_poly(), spans(ORDERS), g, up);
  expect(u.flux.size() == size_t(NY * NX), "combine_uvb result");
  // geometry that leaves the detector on most lines: no read outside the image, a clean error or a result
  try {
    soxs::master_flat(f, e, {bpm.data()}, NY, NX, centre_poly(1e-9, 5), spans(ORDERS), g, params());
  } catch (const std::runtime_error& ex) {
    std::printf("failed   %-28s %s\n", "centre leaving the detector", ex.what());
  }
  std::vector<float> prep(50 * 40);
  soxs::prepare_frame({fr[0].data(), NY, NX}, {1, 3, 53, 10, 50, 1.5f}, prep.data());
  expect(soxs::in_order_mask(NY, NX, r.edges.lower.poly, r.edges.upper.poly, spans(ORDERS), g).size() ==
         size_t(NY * NX), "in_order_mask");
}

void run_bad_inputs() {
  std::vector<float> img = flat_frame(1, 3);
  std::vector<const float*> f(3, img.data());
  const soxs::Geometry g{true, 1, 1};
  auto mf = [&](const soxs::Poly2D& c, const std::vector<soxs::OrderSpan>& o, soxs::MasterFlatParams p) {
    soxs::master_flat(f, {}, {}, NY, NX, c, o, g, p);
  };
  soxs::MasterFlatParams p = params();
  expect_refused("centre coefficient 1e17", [&] { mf(centre_poly(1e17, 0), spans(ORDERS), p); });
  expect_refused("cent_35 = 1e300", [&] { mf(centre_poly(1e300, 23), spans(ORDERS), p); });
  try {   // on the detector near B = 0 only: a clean processing error, no access outside the image
    mf(centre_poly(1000, 5), spans(ORDERS), p);
    expect(false, "cent_05 = 1000: accepted");
  } catch (const std::runtime_error& e) {
    std::printf("failed   %-28s %s\n", "cent_05 = 1000", e.what());
  }
  std::vector<int> many;
  for (int n = 1; n <= 400; ++n) many.push_back(n);
  expect_refused("400 orders", [&] { mf(centre_poly(), spans(many), p); });
  expect_refused("orders off the detector", [&] { mf(centre_poly(), spans({21, 22, 23, 24}), p); });
  expect_refused("order listed twice", [&] { mf(centre_poly(), spans({1, 2, 2, 3}), p); });
  auto bad = p; bad.order_deg = 2147483647;
  expect_refused("order_deg 2^31-1", [&] { mf(centre_poly(), spans(ORDERS), bad); });
  bad = p; bad.order_deg = 4;
  expect_refused("order_deg = number of orders", [&] { mf(centre_poly(), spans(ORDERS), bad); });
  bad = p; bad.edges.slice_length = 2000000000;
  expect_refused("slice length 2e9", [&] { mf(centre_poly(), spans(ORDERS), bad); });
  bad = p; bad.low_sens.half_a = bad.low_sens.half_b = 10000;
  expect_refused("low-sens half window 10000", [&] { mf(centre_poly(), spans(ORDERS), bad); });
  bad = p; bad.background.smooth_sigma = 1e300;
  expect_refused("blur sigma 1e300", [&] { mf(centre_poly(), spans(ORDERS), bad); });
  expect_refused("order_deg 3.5 by name", [&] { soxs::master_params_from({{"order_deg", 3.5}}); });
  expect_refused("fit degrees 65535", [&] { soxs::fit_global_poly({1, 2, 3}, {1, 2, 3}, {1, 2, 3}, 65535, 65535, 5, 2); });
  expect_refused("in_order_mask 2^40 px", [&] {
    soxs::in_order_mask(int64_t(1) << 40, int64_t(1) << 40, centre_poly(), centre_poly(), spans(ORDERS), g);
  });
  expect_refused("check_recipe_params", [&] { soxs::check_recipe_params({{"order_deg", 4}}, 4); });
  soxs::LampMaster lm;
  lm.stacked = lm.error = img.data();
  std::vector<uint8_t> q(NY * NX, 0);
  lm.quality = q.data(); lm.lower = lm.upper = centre_poly();
  lm.n_used = lm.n_slices = {1, 2, 3};
  lm.order_median_flux = {1, 2, 3};
  soxs::UvbParams up;
  up.order_deg = 2; up.disp_deg = 2; up.edges = p.edges;
  expect_refused("combine_uvb order lists", [&] { soxs::combine_uvb(lm, lm, NY, NX, centre_poly(), spans(ORDERS), g, up); });
}

}  // namespace

int main() {
  run_kernels();
  run_bad_inputs();
  std::printf("%s (%d failures)\n", failures ? "FAILED" : "all core checks passed", failures);
  return failures ? 1 : 0;
}
