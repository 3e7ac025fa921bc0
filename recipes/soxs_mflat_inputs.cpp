// Classification, verification, loading and detrending of the plugin's inputs (same arithmetic
// as the Python front end: soxs::prepare_frame and soxs::detrend_frame from the core).
#include "soxs_mflat_inputs.hpp"
#include "parallel.hpp"   // the core's parallel loop (cpp/src)

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <set>

namespace soxs_cpl {
namespace {

bool classify_tag(const std::string& tag, Kind& kind) {
  auto us = tag.rfind('_');
  if (us == std::string::npos) return false;
  std::string pre = tag.substr(0, us);
  static const std::map<std::string, Kind> table = {
      {"LAMP,FLAT", Kind::FLAT}, {"FLAT,LAMP", Kind::FLAT}, {"LAMP,DFLAT", Kind::DFLAT},
      {"LAMP,QFLAT", Kind::QFLAT}, {"LAMP,FLAT_OFF", Kind::LAMPOFF}, {"FLAT,LAMP_OFF", Kind::LAMPOFF},
      {"MASTER_BIAS", Kind::MASTER_BIAS}, {"MASTER_DARK", Kind::MASTER_DARK}, {"ORDER_TAB", Kind::ORDER_TAB},
      {"BP_MAP_RP", Kind::BPM}};
  auto it = table.find(pre);
  if (it == table.end()) return false;
  kind = it->second;
  return true;
}

bool is_flat(Kind k) { return k == Kind::FLAT || k == Kind::DFLAT || k == Kind::QFLAT; }

const soxs_gen::ArmDef* find_arm(const std::string& inst, const std::string& arm, const std::string& file) {
  for (int i = 0; i < soxs_gen::N_ARMS; ++i)
    if (inst == soxs_gen::ARMS[i].instrument && arm == soxs_gen::ARMS[i].arm) return &soxs_gen::ARMS[i];
  throw InputError(file + ": unsupported instrument/arm '" + inst + "'/'" + arm + "'");
}

const soxs_gen::DetKeys& det_keys(const soxs_gen::ArmDef& arm) {
  for (int i = 0; i < soxs_gen::N_DET_KEYS; ++i)
    if (std::string(arm.instrument) == soxs_gen::DET_KEYS[i].instrument) return soxs_gen::DET_KEYS[i];
  throw std::logic_error(std::string("no detector keywords for ") + arm.instrument);
}

void binning(const In& f, const soxs_gen::ArmDef& arm, int& bx, int& by) {
  bx = by = 1;
  if (arm.nir_like) return;
  bx = static_cast<int>(get_num(f.hdr.get(), det_keys(arm).binx, 1));
  by = static_cast<int>(get_num(f.hdr.get(), det_keys(arm).biny, 1));
}

// As soxs_mflat.keywords.gain_e_per_adu: CONAD (SOXS: max(CONAD, GAIN)), else the nominal gain.
double gain_of(const In& f, const soxs_gen::ArmDef& arm) {
  const cpl_propertylist* h = f.hdr.get();
  const auto& k = det_keys(arm);
  if (!has(h, k.conad)) return arm.gain;
  double conad = get_num(h, k.conad, arm.gain);
  return *k.gain ? std::max(conad, get_num(h, k.gain, 0.0)) : conad;
}

double ron_of(const In& f, const soxs_gen::ArmDef& arm) { return get_num(f.hdr.get(), det_keys(arm).ron, arm.ron); }

void require(const Inputs& in, Kind k, const std::string& what) {
  auto it = in.by.find(k);
  if (it == in.by.end() || it->second.empty()) throw InputError("missing input: " + what);
}

std::vector<float> prepared(const In& f, const Inputs& in) {
  Image raw(cpl_image_load(f.file.c_str(), CPL_TYPE_FLOAT, 0, 0));   // read once, no copy
  check("cannot load image extension 0 of " + f.file);
  const auto& a = *in.arm;
  const int64_t ny = (a.row1 - a.row0) / in.biny, nx = (a.col1 - a.col0) / in.binx;
  soxs::PrepareParams p{a.rot90, a.row0 / in.biny, a.row0 / in.biny + ny, a.col0 / in.binx, a.col0 / in.binx + nx,
                        static_cast<float>(gain_of(f, a))};
  std::vector<float> out(ny * nx);
  try {
    soxs::prepare_frame({cpl_image_get_data_float_const(raw.get()), cpl_image_get_size_y(raw.get()),
                         cpl_image_get_size_x(raw.get())}, p, out.data());
  } catch (const std::invalid_argument& e) {
    throw InputError(f.file + ": " + e.what());
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
  double tf = get_num(flat.hdr.get(), "EXPTIME", 0), td = get_num(cal.hdr.get(), "EXPTIME", 0);
  if (!(td > 0) || std::fabs(tf - td) <= 0.005) return 1.0;
  cpl_msg_warning("soxs_mflat", "%s: EXPTIME %.3f s differs from %s (%.3f s); scaling it by %.4f",
                  cal.file.c_str(), td, flat.file.c_str(), tf, tf / td);
  return tf / td;
}

struct Product { std::vector<float> flux, err; std::vector<uint8_t> qual; };

Product load_product(const In& f, int64_t ny, int64_t nx) {
  FImage flux = load_float(f.file, 0);
  if (flux.ny != ny || flux.nx != nx)
    throw InputError(f.file + ": shape (" + std::to_string(flux.ny) + ", " + std::to_string(flux.nx) +
                     ") differs from the prepared flats (" + std::to_string(ny) + ", " + std::to_string(nx) + ")");
  Product p{flux.data, std::vector<float>(ny * nx, 0.0f), std::vector<uint8_t>(ny * nx, 0)};
  int e = find_ext(f.file, "ERRS"), q = find_ext(f.file, "QUAL");
  // every extension is read as ny x nx values: one of another shape is refused, not over-read
  auto same_shape = [&](const FImage& x, const char* ext) {
    if (x.ny != ny || x.nx != nx)
      throw InputError("[shape] " + f.file + ": its " + ext + " extension has shape (" + std::to_string(x.ny) + ", " +
                       std::to_string(x.nx) + "), expected (" + std::to_string(ny) + ", " + std::to_string(nx) + ")");
  };
  if (e > 0) {
    FImage ee = load_float(f.file, e);
    same_shape(ee, "ERRS");
    p.err = std::move(ee.data);
  }
  if (q > 0) {
    FImage qq = load_float(f.file, q);
    same_shape(qq, "QUAL");
    for (size_t i = 0; i < qq.data.size(); ++i) p.qual[i] = qq.data[i] != 0;
  }
  return p;
}

}  // namespace

Inputs classify(cpl_frameset* frames) {
  Inputs in;
  cpl_size n = cpl_frameset_get_size(frames);
  if (n == 0) throw InputError("the SOF is empty");
  for (cpl_size i = 0; i < n; ++i) {
    cpl_frame* fr = cpl_frameset_get_position(frames, i);
    std::string file = cpl_frame_get_filename(fr), tag = cpl_frame_get_tag(fr) ? cpl_frame_get_tag(fr) : "";
    Kind k;
    if (!classify_tag(tag, k))
      throw InputError(file + ": unknown tag '" + tag + "' (expected LAMP,FLAT_<ARM>, FLAT,LAMP_NIR, LAMP,DFLAT_UVB, "
                       "LAMP,QFLAT_UVB, ..._OFF_<ARM>, MASTER_BIAS_<ARM>, MASTER_DARK_<ARM>, ORDER_TAB_<ARM>, "
                       "BP_MAP_RP_<ARM>)");
    cpl_frame_set_group(fr, is_flat(k) || k == Kind::LAMPOFF ? CPL_FRAME_GROUP_RAW : CPL_FRAME_GROUP_CALIB);
    Plist h = load_header(file);
    double mjd = get_num(h.get(), "MJD-OBS", 0);
    in.frames.push_back(In{fr, file, tag, k, std::move(h), mjd});
  }
  for (auto& f : in.frames) in.by[f.kind].push_back(&f);
  std::vector<In*> flats;
  for (Kind k : {Kind::FLAT, Kind::DFLAT, Kind::QFLAT})
    for (In* f : in.by[k]) flats.push_back(f);
  if (flats.empty()) throw InputError("no raw lamp flats in the SOF (tags LAMP,FLAT_<ARM>, FLAT,LAMP_NIR, LAMP,DFLAT_UVB, LAMP,QFLAT_UVB)");
  const In& f0 = *flats[0];
  in.arm = find_arm(get_str(f0.hdr.get(), "INSTRUME"), get_str(f0.hdr.get(), "ESO SEQ ARM"), f0.file);
  binning(f0, *in.arm, in.binx, in.biny);
  for (In* f : flats) {
    if (get_str(f->hdr.get(), "ESO SEQ ARM") != in.arm->arm || get_str(f->hdr.get(), "INSTRUME") != in.arm->instrument)
      throw InputError("input frames are a mix of arms/instruments: " + f->file + " is not " +
                       in.arm->instrument + " " + in.arm->arm);
    int bx, by;
    binning(*f, *in.arm, bx, by);
    if (bx != in.binx || by != in.biny) throw InputError("input frames are a mix of binnings: " + f->file);
  }
  for (Kind k : {Kind::FLAT, Kind::DFLAT, Kind::QFLAT}) {
    std::set<long> t;
    for (In* f : in.by[k]) t.insert(std::lround(100 * get_num(f->hdr.get(), "EXPTIME", -1)));
    if (t.size() > 1) throw InputError("input flats of one lamp are a mix of exposure times");
  }
  const std::string arm = in.arm->arm;
  if (arm == "UVB" && (in.by[Kind::DFLAT].empty() || in.by[Kind::QFLAT].empty()))
    throw InputError("X-shooter UVB needs both D2 (LAMP,DFLAT_UVB) and QTH (LAMP,QFLAT_UVB) flats");
  if (!in.arm->nir_like) require(in, Kind::MASTER_BIAS, "MASTER_BIAS_" + arm + " (UVB/VIS flats need a master bias)");
  if (in.arm->nir_like && in.by[Kind::MASTER_DARK].empty() && in.by[Kind::LAMPOFF].empty())
    throw InputError("missing input: NIR flats need a MASTER_DARK_" + arm + " or lamp-off frames (..._OFF_" + arm + ")");
  require(in, Kind::ORDER_TAB, "ORDER_TAB_" + arm + " (order-centre table)");
  for (Kind k : {Kind::FLAT, Kind::DFLAT, Kind::QFLAT}) {
    if (in.by[k].empty()) continue;
    std::string want = k == Kind::DFLAT ? "LAMP,DORDERDEF" : k == Kind::QFLAT ? "LAMP,QORDERDEF" : "";
    In* pick = in.by[Kind::ORDER_TAB][0];
    for (In* t : in.by[Kind::ORDER_TAB])
      if (!want.empty() && get_str(t->hdr.get(), "OBJECT") == want) { pick = t; break; }
    in.order_tab[k] = pick;
  }
  return in;
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
  if (bpm_in) reads.push_back([&] { bpm = load_float(bpm_in->file, 0); });
  if (bias_in) reads.push_back([&] { c.bias = load_product(*bias_in, L.ny, L.nx); });
  if (dark_in) reads.push_back([&] { c.dark = load_product(*dark_in, L.ny, L.nx); });
  for_each_frame(reads.size(), threads, [&](size_t k) { reads[k](); });
  L.mask.assign(npix, 0);
  if (bpm_in) {
    if (bpm.ny != L.ny || bpm.nx != L.nx) throw InputError(bpm_in->file + ": bad-pixel map shape differs from the flats");
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
  const double raw_max = soxs::sample_percentile({img.data(), L.ny, L.nx}, 3, 99.9) / gain;
  if (raw_max >= saturation)
    throw InputError(f.file + ": 0.1 % of the science pixels are at or above the saturation level (" +
                     fmt0(raw_max) + " >= " + fmt0(saturation) + " ADU)");
}

void check_not_empty(const In& f, const std::vector<float>& detrended, const Lamp& L) {
  const double p99 = soxs::sample_percentile({detrended.data(), L.ny, L.nx}, 3, 99);
  if (p99 < soxs_gen::EMPTY_E)
    throw InputError(f.file + ": no lamp light (99th percentile " + fmt0(p99, 1) + " e- after detrending, need >= " +
                     fmt0(soxs_gen::EMPTY_E) + ")");
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

CentreTable read_centre_table(const In& f) {
  CentreTable ct;
  ct.coeffs = load_table(f.file, 1);
  ct.meta = load_table(f.file, 2);
  const cpl_table* c = ct.coeffs.get();
  ct.a_is_x = cpl_table_has_column(c, "degy_cent") != 0;
  const std::string b = ct.a_is_x ? "y" : "x";
  ct.centre.deg_n = static_cast<int>(cell(c, "degorder_cent", 0, f.file));
  ct.centre.deg_b = static_cast<int>(cell(c, "deg" + b + "_cent", 0, f.file));
  for (int i = 0; i <= ct.centre.deg_n; ++i)
    for (int j = 0; j <= ct.centre.deg_b; ++j)
      ct.centre.c.push_back(cell(c, "cent_" + std::to_string(i) + std::to_string(j), 0, f.file));
  const cpl_table* m = ct.meta.get();
  for (cpl_size r = 0; r < cpl_table_get_nrow(m); ++r)
    ct.orders.push_back({static_cast<int>(cell(m, "order", r, f.file)), cell(m, b + "min", r, f.file),
                         cell(m, b + "max", r, f.file)});
  return ct;
}

soxs::Geometry geometry(const Inputs& in, const CentreTable& ct) {
  return {ct.a_is_x, ct.a_is_x ? in.binx : in.biny, ct.a_is_x ? in.biny : in.binx};
}

}  // namespace soxs_cpl
