// Classification, verification, loading and detrending of the plugin's inputs (same arithmetic
// as the Python front end: soxs::prepare_frame and soxs::detrend_frame from the core).
#include "soxs_mflat_inputs.hpp"
#include "parallel.hpp"   // the core's parallel loop (cpp/src)

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fitsio.h>

#include <functional>
#include <mutex>
#include <set>

namespace soxs_cpl {
namespace {

// "shape (ny, nx), expected (wy, wx) (...)": the Python front end's text (detrend._check_shape)
std::string shape_text(int64_t ny, int64_t nx, int64_t wy, int64_t wx) {
  return "shape (" + std::to_string(ny) + ", " + std::to_string(nx) + "), expected (" + std::to_string(wy) + ", " +
         std::to_string(wx) + ") (same binning and science region as the flats)";
}

bool is_image_hdu(const In& f, int ext) {
  const size_t e = static_cast<size_t>(ext);
  return e >= f.xtension.size() || f.xtension[e] == "IMAGE" || f.tiled[e];
}

// CFITSIO's message stack is one per process: tile-compressed reads, whose warnings are looked for there,
// one at a time.
std::mutex g_tiled_reads;

double ron_of(const In& f, const soxs_gen::ArmDef& arm) { return detector_value(f, arm, "ron", arm.ron); }

// Rule non-finite (as prepare.check_finite): no NaN or infinite pixel in `what` of a raw frame or calibration.
void check_finite(const In& f, const float* px, int64_t n, const std::string& what) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += !std::isfinite(px[i]);
  if (bad) fail("non-finite", {{"file", f.file}, {"what", what}, {"n", std::to_string(bad)}});
}

std::vector<float> prepared(const In& f, const Inputs& in) {
  Image raw = load_image(f, f.hdu);   // read once, no copy
  const float* px = cpl_image_get_data_float_const(raw.get());
  const int64_t n = cpl_image_get_size_x(raw.get()) * cpl_image_get_size_y(raw.get());
  check_finite(f, px, n, "the image");
  const auto& a = *in.arm;
  const int64_t ny = (a.row1 - a.row0) / in.biny, nx = (a.col1 - a.col0) / in.binx;
  soxs::PrepareParams p{a.rot90, a.row0 / in.biny, a.row0 / in.biny + ny, a.col0 / in.binx, a.col0 / in.binx + nx,
                        static_cast<float>(gain_of(f, a))};
  std::vector<float> out(ny * nx);
  try {
    soxs::prepare_frame({cpl_image_get_data_float_const(raw.get()), cpl_image_get_size_y(raw.get()),
                         cpl_image_get_size_x(raw.get())}, p, out.data());
  } catch (const std::invalid_argument& e) {
    fail("shape", {{"file", f.file}, {"detail", std::string("image too small for the ") + a.instrument + " " + a.arm +
                                                 " science region at binning " + std::to_string(in.binx) + "x" +
                                                 std::to_string(in.biny) + " (" + e.what() + ")"}});
  }
  return out;
}

// fn(k) for k in [0, n) on `threads` cores (0: all), one item per chunk, with the core's loop: CPL
// is built with OpenMP and CFITSIO is reentrant, so frames can be read concurrently.
template <class F>
void for_each_frame(size_t n, int threads, F&& fn) {
  soxs::detail::parallel_for(static_cast<int64_t>(n), threads, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) fn(static_cast<size_t>(k));
  }, 1);
}

std::string fmt0(double v, int decimals = 0) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Scale of a dark / lamp-off frame to the flat's exposure time (1 when they agree to 5 ms).
double exptime_ratio(const In& flat, const In& cal) {
  double tf = number(flat, "EXPTIME", "EXPTIME", 0), td = number(cal, "EXPTIME", "EXPTIME", 0);
  if (!(td > 0) || std::fabs(tf - td) <= soxs_gen::EXPTIME_TOL_S) return 1.0;
  cpl_msg_warning("soxs_mflat", "%s: EXPTIME %.3f s differs from %s (%.3f s); scaling it by %.4f",
                  cal.file.c_str(), td, flat.file.c_str(), tf, tf / td);
  return tf / td;
}

struct Product { std::vector<float> flux, err; std::vector<uint8_t> qual; };

Product load_product(const In& f, int64_t ny, int64_t nx) {
  const int fe = find_ext(f.file, "FLUX"), e = find_ext(f.file, "ERRS"), q = find_ext(f.file, "QUAL");
  for (auto [ext, name] : {std::pair<int, const char*>{fe, "FLUX"}, {e, "ERRS"}, {q, "QUAL"}})   // as the CLI
    if (ext > 0 && !is_image_hdu(f, ext))
      fail("unreadable-fits", {{"file", f.file}, {"detail", std::string("its ") + name + " extension is not an image"}});
  FImage flux = load_float(f, fe > 0 ? fe : f.hdu);
  Product p{flux.data, std::vector<float>(flux.data.size(), 0.0f), std::vector<uint8_t>(flux.data.size(), 0)};
  // every extension is read as the FLUX's values: one of another shape is refused, not over-read (the Python
  // front end's order and text: ERRS and QUAL against the FLUX, its FLUX and ERRS finite, then the FLUX
  // against the prepared flats)
  auto same_shape = [&](const FImage& x, int64_t wy, int64_t wx, const std::string& what) {
    if (x.ny != wy || x.nx != wx) fail("shape", {{"file", f.file}, {"detail", what + " has " + shape_text(x.ny, x.nx, wy, wx)}});
  };
  if (e > 0) {
    FImage ee = load_float(f, e);
    same_shape(ee, flux.ny, flux.nx, "its ERRS extension");
    p.err = std::move(ee.data);
  }
  if (q > 0) {
    FImage qq = load_float(f, q);
    same_shape(qq, flux.ny, flux.nx, "its QUAL extension");
    for (size_t i = 0; i < qq.data.size(); ++i) p.qual[i] = qq.data[i] != 0;
  }
  // subtracted from / added to every flat
  check_finite(f, p.flux.data(), flux.ny * flux.nx, "its FLUX extension");
  check_finite(f, p.err.data(), flux.ny * flux.nx, "its ERRS extension");
  same_shape(flux, ny, nx, f.kind == Kind::MASTER_DARK ? "dark / lamp-off frame" : "master bias");
  return p;
}

}  // namespace

Image load_image(const In& f, int ext) {
  const bool tiled = static_cast<size_t>(ext) < f.tiled.size() && f.tiled[static_cast<size_t>(ext)];
  std::unique_lock<std::mutex> lock(g_tiled_reads, std::defer_lock);
  if (tiled) {
    lock.lock();
    ffcmsg();
  }
  cpl_errorstate before = cpl_errorstate_get();
  Image img(cpl_image_load(f.file.c_str(), CPL_TYPE_FLOAT, 0, ext));
  std::string problem;
  if (!cpl_errorstate_is_equal(before) || !img) {
    problem = cpl_error_get_message();
    cpl_errorstate_set(before);
  }
  if (tiled) {   // a corrupted tile: "decompression warning: unused bytes at end of compressed buffer"
    char msg[FLEN_ERRMSG];
    while (ffgmsg(msg))
      if (problem.empty() && std::strstr(msg, "compress")) problem = msg;
    ffcmsg();
  }
  if (!problem.empty())
    fail("unreadable-fits", {{"file", f.file}, {"detail", "the image cannot be read (" + problem + ")"}});
  return img;
}

FImage load_float(const In& f, int ext) {
  Image img = load_image(f, ext);
  FImage out;
  out.nx = cpl_image_get_size_x(img.get());
  out.ny = cpl_image_get_size_y(img.get());
  const float* d = cpl_image_get_data_float_const(img.get());
  out.data.assign(d, d + out.nx * out.ny);
  return out;
}

namespace {

struct Calibs { Product bias, dark; bool have_dark = false; };

// Bad-pixel map, master bias and master dark, read concurrently; the static mask and cals of L.
Calibs read_calibrations(Inputs& in, Lamp& L, int threads) {
  const auto& arm = *in.arm;
  const int64_t npix = L.ny * L.nx;
  In* bpm_in = in.by[Kind::BPM].empty() ? nullptr : in.by[Kind::BPM][0];
  In* bias_in = in.by[Kind::MASTER_BIAS].empty() ? nullptr : in.by[Kind::MASTER_BIAS][0];
  In* dark_in = in.by[Kind::MASTER_DARK].empty() || !arm.nir_like ? nullptr : in.by[Kind::MASTER_DARK][0];
  FImage bpm;
  Calibs c;
  c.have_dark = !in.by[Kind::MASTER_DARK].empty();
  std::vector<std::function<void()>> reads;
  if (bpm_in) reads.push_back([&] { bpm = load_float(*bpm_in, bpm_in->hdu); });
  if (bias_in) reads.push_back([&] { c.bias = load_product(*bias_in, L.ny, L.nx); });
  if (dark_in) reads.push_back([&] { c.dark = load_product(*dark_in, L.ny, L.nx); });
  for_each_frame(reads.size(), threads, [&](size_t k) { reads[k](); });
  L.mask.assign(npix, 0);
  if (bpm_in) {
    if (bpm.ny != L.ny || bpm.nx != L.nx)
      fail("shape", {{"file", bpm_in->file}, {"detail", "bad-pixel map has " + shape_text(bpm.ny, bpm.nx, L.ny, L.nx)}});
    for (int64_t i = 0; i < npix; ++i) L.mask[i] = (bpm.data[i] != 0.0f) || !std::isfinite(bpm.data[i]);
    L.bpm = bpm_in;
  }
  for (In* cal : {bias_in, dark_in}) if (cal) L.cals.push_back(cal);
  for (auto* p : {&c.bias, &c.dark})
    for (size_t i = 0; i < p->qual.size(); ++i) L.mask[i] |= p->qual[i];
  return c;
}

// NIR: the dark, or the lamp-off frame nearest in time (core's rule), per flat, with its exposure
// scale; decided before the parallel part so that warnings and the raw-frame list keep their order.
void pick_darks(Inputs& in, const std::vector<In*>& flats, bool have_dark, Lamp& L, std::vector<const In*>& cal,
                std::vector<double>& ratio) {
  const size_t n = flats.size();
  cal.assign(n, nullptr);
  ratio.assign(n, 1.0);
  if (!in.arm->nir_like) return;
  if (have_dark) {
    for (auto& c : cal) c = in.by[Kind::MASTER_DARK][0];
  } else {
    std::vector<double> tf, to;
    for (In* f : flats) tf.push_back(f->mjd);
    for (In* o : in.by[Kind::LAMPOFF]) to.push_back(o->mjd);
    std::vector<int> pick = soxs::pair_by_time(tf, to);
    for (size_t k = 0; k < n; ++k) cal[k] = in.by[Kind::LAMPOFF][pick[k]];
    for (In* o : in.by[Kind::LAMPOFF]) L.raws.push_back(o);   // all offered lamp-off frames, in SOF order
  }
  for (size_t k = 0; k < n; ++k) ratio[k] = exptime_ratio(*flats[k], *cal[k]);
}

// The Python front end's saturation and empty-flat rules, on the same sample (core's sample_percentile).
void check_saturation(const In& f, const std::vector<float>& img, const Lamp& L, double gain, double saturation) {
  const double raw_max =
      soxs::sample_percentile({img.data(), L.ny, L.nx}, soxs_gen::SAMPLE_STRIDE, soxs_gen::SATURATION_PERCENTILE) / gain;
  if (raw_max >= saturation) fail("saturated", {{"file", f.file}, {"level", fmt0(raw_max)}, {"limit", fmt0(saturation)}});
}

void check_not_empty(const In& f, const std::vector<float>& detrended, const Lamp& L) {
  const double p99 =
      soxs::sample_percentile({detrended.data(), L.ny, L.nx}, soxs_gen::SAMPLE_STRIDE, soxs_gen::EMPTY_PERCENTILE);
  if (p99 < soxs_gen::EMPTY_E)
    fail("empty-flat", {{"file", f.file}, {"p99", fmt0(p99, 1)}, {"limit", fmt0(soxs_gen::EMPTY_E)}});
}

}  // namespace

Lamp detrend_lamp(Inputs& in, Kind lamp, int threads) {
  Lamp L;
  std::vector<In*> flats = in.by[lamp];
  std::sort(flats.begin(), flats.end(), [](In* a, In* b) { return a->mjd < b->mjd; });
  L.raws = flats;
  const auto& arm = *in.arm;
  L.ny = (arm.row1 - arm.row0) / in.biny;
  L.nx = (arm.col1 - arm.col0) / in.binx;
  const int64_t npix = L.ny * L.nx;
  Calibs c = read_calibrations(in, L, threads);
  std::vector<const In*> cal;
  std::vector<double> ratio;
  pick_darks(in, flats, c.have_dark, L, cal, ratio);
  L.data.resize(flats.size());
  L.error.resize(flats.size());
  for_each_frame(flats.size(), threads, [&](size_t k) {
    const In& f = *flats[k];
    std::vector<float> img = prepared(f, in), err(npix);
    check_saturation(f, img, L, gain_of(f, arm), arm.saturation);
    const double ron = ron_of(f, arm);
    if (cal[k] && !c.have_dark) {   // lamp-off frame: prepared and given its own error map
      std::vector<float> d = prepared(*cal[k], in), de(npix);
      soxs::detrend_frame(d.data(), npix, nullptr, nullptr, 1.0, ron_of(*cal[k], arm), de.data());
      soxs::detrend_frame(img.data(), npix, d.data(), de.data(), ratio[k], ron, err.data());
    } else {
      const Product& p = cal[k] ? c.dark : c.bias;
      soxs::detrend_frame(img.data(), npix, p.flux.data(), p.err.data(), ratio[k], ron, err.data());
    }
    check_not_empty(f, img, L);
    L.data[k] = std::move(img);
    L.error[k] = std::move(err);
  });
  L.cals.push_back(in.order_tab[lamp]);
  return L;
}

namespace {

// The order table's checks of the Python front end (ordertable.read_centre_table), same order and text,
// rule order-table: nothing of a bad table reaches the core, and a table is refused when it is read.
[[noreturn]] void bad_table(const In& f, const std::string& detail) {
  fail("order-table", {{"file", f.file}, {"detail", detail}});
}

double table_cell(const In& f, const cpl_table* t, const std::string& col, cpl_size row) {
  if (!cpl_table_has_column(t, col.c_str())) bad_table(f, "order table lacks column '" + col + "'");
  const cpl_type type = cpl_table_get_column_type(t, col.c_str());
  if (type == CPL_TYPE_STRING || (type & CPL_TYPE_POINTER))
    bad_table(f, "bad order table: column " + col + " is not numeric");
  int null = 0;
  const double v = cpl_table_get(t, col.c_str(), row, &null);
  if (cpl_error_get_code() != CPL_ERROR_NONE) {
    cpl_error_reset();
    bad_table(f, "bad order table: cannot read column " + col);
  }
  return null ? NAN : v;
}

int whole(const In& f, double v, const std::string& what) {
  if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 2147483647.0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", v);
    bad_table(f, "bad order table: " + what + " " + buf + " is not a whole number");
  }
  return static_cast<int>(v);
}

int degree(const In& f, const cpl_table* t, const std::string& col) {
  const int d = whole(f, table_cell(f, t, col, 0), col);
  if (d < 0 || d > soxs_gen::MAX_TABLE_DEGREE)
    bad_table(f, "bad order table: " + col + " = " + std::to_string(d) + " is outside [0, " +
                 std::to_string(soxs_gen::MAX_TABLE_DEGREE) + "]");
  return d;
}

Table table_ext(const In& f, int ext) {
  Table t(cpl_table_load(f.file.c_str(), ext, 0));
  if (cpl_error_get_code() != CPL_ERROR_NONE || !t) {
    const std::string msg = cpl_error_get_message();
    cpl_error_reset();
    bad_table(f, "not an order table (need coefficient and meta table extensions: " + msg + ")");
  }
  return t;
}

}  // namespace

CentreTable read_centre_table(const In& f) {
  CentreTable ct;
  ct.coeffs = table_ext(f, 1);
  ct.meta = table_ext(f, 2);
  const cpl_table *c = ct.coeffs.get(), *m = ct.meta.get();
  const cpl_size rows = cpl_table_get_nrow(c), n = cpl_table_get_nrow(m);
  if (rows != 1 || n == 0)
    bad_table(f, "bad order table: need one coefficient row and at least one order (has " + std::to_string(rows) +
                 " coefficient rows, " + std::to_string(n) + " orders)");
  if (n > soxs_gen::MAX_ORDERS)
    bad_table(f, "bad order table: the meta table lists " + std::to_string(n) + " orders; at most " +
                 std::to_string(soxs_gen::MAX_ORDERS) + " are accepted");
  ct.a_is_x = cpl_table_has_column(c, "degy_cent") != 0;
  const std::string b = ct.a_is_x ? "y" : "x";
  ct.centre.deg_n = degree(f, c, "degorder_cent");
  ct.centre.deg_b = degree(f, c, "deg" + b + "_cent");
  for (int i = 0; i <= ct.centre.deg_n; ++i)
    for (int j = 0; j <= ct.centre.deg_b; ++j)
      ct.centre.c.push_back(table_cell(f, c, "cent_" + std::to_string(i) + std::to_string(j), 0));
  std::vector<int> orders;
  for (cpl_size r = 0; r < n; ++r) orders.push_back(whole(f, table_cell(f, m, "order", r), "order"));
  std::vector<double> lo, hi;
  for (const auto& [v, col] : std::vector<std::pair<std::vector<double>*, std::string>>{{&lo, b + "min"}, {&hi, b + "max"}}) {
    for (cpl_size r = 0; r < n; ++r) v->push_back(table_cell(f, m, col, r));
    for (double x : *v)
      if (!std::isfinite(x)) bad_table(f, "bad order table: " + col + " is not finite");
  }
  for (double x : ct.centre.c)
    if (!std::isfinite(x)) bad_table(f, "bad order table: a centre coefficient is not finite");
  for (cpl_size r = 0; r < n; ++r) {
    if (lo[r] >= hi[r]) bad_table(f, "bad order table: an order has " + b + "min >= " + b + "max");
    ct.orders.push_back({orders[r], lo[r], hi[r]});
  }
  return ct;
}

soxs::Geometry geometry(const Inputs& in, const CentreTable& ct) {
  return {ct.a_is_x, ct.a_is_x ? in.binx : in.biny, ct.a_is_x ? in.biny : in.binx};
}

}  // namespace soxs_cpl
