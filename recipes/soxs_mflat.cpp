// esorex plugin "soxs_mflat": the same C++ core as the Python front end, with CPL I/O and DFS saving.
#include <cpl.h>
#include <fitsio.h>
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <stdexcept>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "soxs_mflat_inputs.hpp"
#include "soxs_mflat_header.hpp"
#include "soxs_mflat_output.hpp"
#include "soxs_mflat_qc.hpp"
#include "validate.hpp"   // the core's checks of an order table (cpp/src)

#include <sys/stat.h>

#ifndef SOXS_VERSION
#define SOXS_VERSION "0.0.0"
#endif
#ifndef SOXS_CONTACT   // both from pyproject.toml's [project] maintainers, via recipes/CMakeLists.txt
#define SOXS_AUTHOR "soxs-mflat maintainers"
#define SOXS_CONTACT "see pyproject.toml"
#endif

namespace {

using namespace soxs_cpl;
const char* RECIPE = "soxs_mflat";
const char* PIPE_ID = "soxs-mflat/" SOXS_VERSION;

// CPL's plugin version, major * 10000 + minor * 100 + micro, from the project version (pyproject.toml via CMake)
constexpr unsigned long version_number(const char* v) {
  unsigned long part[3] = {0, 0, 0};
  for (int i = 0; *v && i < 3; ++v) {
    if (*v == '.') ++i;
    else if (*v >= '0' && *v <= '9') part[i] = part[i] * 10 + static_cast<unsigned long>(*v - '0');
    else break;   // "1.2.0rc1": the numeric part
  }
  return part[0] * 10000 + part[1] * 100 + part[2];
}
static_assert(version_number("0.1.0") == 100 && version_number("1.12.3") == 11203, "CPL version encoding");

const char* DESCRIPTION =
    "Creates a normalised master flat for SOXS (VIS, NIR) and X-shooter (UVB, VIS, NIR) echelle frames,\n"
    "flags low-sensitivity pixels and detects and fits the order edges with a global polynomial in\n"
    "(position along the order, order number). Same numerical core as the soxs-mflat Python package.\n\n"
    "Input frames (SOF tags):\n"
    "  LAMP,FLAT_<ARM> / FLAT,LAMP_NIR  raw lamp flats (RAW); X-shooter UVB: LAMP,DFLAT_UVB and LAMP,QFLAT_UVB\n"
    "  MASTER_BIAS_<ARM>                master bias, UVB/VIS (CALIB)\n"
    "  MASTER_DARK_<ARM> or LAMP,FLAT_OFF_<ARM> / FLAT,LAMP_OFF_NIR   NIR dark or lamp-off frames\n"
    "                                   (soxspipe's organiser tags: LAMP,FLAT_NIR / FLAT,LAMP_NIR, told by DPR TECH)\n"
    "  ORDER_TAB_<ARM>                  order-centre table(s); UVB: OBJECT LAMP,DORDERDEF / LAMP,QORDERDEF\n"
    "  BP_MAP_RP_<ARM>                  static bad-pixel map (optional)\n"
    "Frames are classified by their headers; tags must agree. .fits.gz, .fits.Z and .fits.fz are read.\n"
    "Input errors are '[<rule>] <message>' with exit status 6, 9, 10, 13, 14 or 19 by the rule's outcome\n"
    "(the input contract, docs/recipe.md).\n\n"
    "Products (PRO CATG):\n" SOXS_GEN_PRODUCTS_TEXT   // data/contract/products.yaml
    "qc.json (QC values with units, ranges and flags; the run's instrument, arm, night, inputs) is written\n"
    "beside the products; the QC table and a warning per out-of-range value are logged.\n"
    "QC PDFs are written by the Python front end (soxs-mflat run) only.\n"
    "Parameters set to -1 take the instrument/arm default; values outside the ranges of\n"
    "data/parameters.yaml are refused (rule parameter-range) before any frame is read.";

Staging g_stage;   // one run at a time per process (esorex runs one recipe); soxs_mflat_output.hpp

// Bytes of the products: per set FLUX+ERRS float32 and QUAL uint8, a float32 background, tables.
double product_bytes(const Inputs& in, int sets, bool background) {
  const In& ref = *in.by.at(in.by.count(Kind::FLAT) && !in.by.at(Kind::FLAT).empty() ? Kind::FLAT : Kind::QFLAT)[0];
  const std::string z = ref.hdu == 1 ? "Z" : "";   // a tile-compressed image's size is in ZNAXISn
  double pix = get_num(ref.hdr.get(), (z + "NAXIS1").c_str(), 0) * get_num(ref.hdr.get(), (z + "NAXIS2").c_str(), 0);
  return 1.1 * sets * (pix * (9.0 + (background ? 4.0 : 0.0)) + 512.0 * 1024.0);
}

std::string kebab(std::string s) { std::replace(s.begin(), s.end(), '_', '-'); return s; }
std::string full_name(const char* n) { return std::string("soxs.mflat.") + kebab(n); }

int create(cpl_plugin* plugin) {
  auto* recipe = reinterpret_cast<cpl_recipe*>(plugin);
  recipe->parameters = cpl_parameterlist_new();
  for (int i = 0; i < soxs_gen::N_PARAMS; ++i) {
    const auto& d = soxs_gen::PARAMS[i];
    std::string name = full_name(d.name), desc = d.description;
    if (d.varies) desc += " (-1: instrument/arm default)";
    cpl_parameter* p = nullptr;
    if (d.type == 'b')
      p = cpl_parameter_new_value(name.c_str(), CPL_TYPE_BOOL, desc.c_str(), "soxs.mflat", d.def[0] != 0.0 ? 1 : 0);
    else   // integers too: esorex reads "3.5" for an INT parameter as 3; as a double it is refused below
      p = cpl_parameter_new_value(name.c_str(), CPL_TYPE_DOUBLE, desc.c_str(), "soxs.mflat", d.varies ? -1.0 : d.def[0]);
    cpl_parameter_set_alias(p, CPL_PARAMETER_MODE_CLI, kebab(d.name).c_str());
    cpl_parameter_disable(p, CPL_PARAMETER_MODE_ENV);
    cpl_parameterlist_append(recipe->parameters, p);
  }
  return 0;
}

std::string fmt_g(double v) {   // as the Python front end's :g
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// The ranges declared in data/parameters.yaml (generated RANGES), with the rule id and text of the
// Python front end (settings.range_error), before any frame is read.
void check_ranges(const soxs::NamedParams& m) {
  auto refuse = [](const std::string& what) { fail("parameter-range", {{"detail", "parameter " + what}}); };
  for (int i = 0; i < soxs_gen::N_PARAMS; ++i) {
    const auto& d = soxs_gen::PARAMS[i];
    const double v = m.at(d.name);
    if (d.type == 'i' && !(std::isfinite(v) && v == std::floor(v)))
      refuse(std::string(d.name) + " must be an integer, got " + fmt_g(v));
  }
  for (int i = 0; i < soxs_gen::N_RANGES; ++i) {
    const auto& r = soxs_gen::RANGES[i];
    const double v = m.at(r.name);
    auto beyond = [&](const char* sign, double lim) {
      refuse(std::string(r.name) + " must be " + sign + " " + fmt_g(lim) + ", got " + fmt_g(v));
    };
    if (r.has_min && !(v >= r.min)) beyond(">=", r.min);
    if (r.has_above && !(v > r.above)) beyond(">", r.above);
    if (r.has_max && !(v <= r.max)) beyond("<=", r.max);
    if (r.odd && std::fmod(std::fabs(v), 2.0) != 1.0) refuse(std::string(r.name) + " must be odd, got " + fmt_g(v));
  }
}

// Parameter values with exactly -1 (the documented sentinel; any other negative value is checked
// like any value) resolved to the instrument/arm default, also written back into the list so that
// the products' PRO REC1 PARAMi VALUE records what ran (as the Python front end does).
soxs::NamedParams resolve_params(cpl_parameterlist* list, int column) {
  soxs::NamedParams m;
  for (int i = 0; i < soxs_gen::N_PARAMS; ++i) {
    const auto& d = soxs_gen::PARAMS[i];
    cpl_parameter* p = cpl_parameterlist_find(list, full_name(d.name).c_str());
    double v = d.type == 'b' ? cpl_parameter_get_bool(p) : cpl_parameter_get_double(p);
    if (d.varies && v == -1.0) {
      v = d.def[column];
      if (d.type != 'b') cpl_parameter_set_double(p, v);
    }
    m[d.name] = v;
  }
  check_ranges(m);
  return m;
}

// The core's limits that need the order tables (order_deg below the number of orders, ...), with
// the rule id of the Python front end (settings.check_limits); before any frame is read.
// Then each table against the frames' geometry (rule order-table, as recipe.check_table_geometry): what the
// core checks of it on entry (orders listed once, finite ranges and centre polynomial, every centre on the
// detector), with the core's own checks and messages, before any frame is read (an order listed twice
// failed in the core, after the frames were read, naming no file).
void check_limits(const Inputs& in, const soxs::NamedParams& prm) {
  for (const auto& kv : in.order_tab) {
    CentreTable ct = read_centre_table(*kv.second);
    try {
      soxs::check_recipe_params(prm, ct.orders.size());
    } catch (const std::invalid_argument& e) {
      fail("parameter-limit", {{"detail", e.what()}});
    }
    const int64_t ny = (in.arm->row1 - in.arm->row0) / in.biny, nx = (in.arm->col1 - in.arm->col0) / in.binx;
    const soxs::Geometry g = geometry(in, ct);
    try {
      soxs::detail::check_image_size(ny, nx, "order table");
      if (g.bin_a < 1 || g.bin_b < 1 || g.bin_a > 64 || g.bin_b > 64)
        throw std::invalid_argument("order table: binning must be in [1, 64]");
      soxs::detail::check_order_list(ct.orders, "order table");
      soxs::detail::check_polynomial(ct.centre, "order table: order centre");
      soxs::detail::check_orders_on_detector(ct.centre, ct.orders, g, ny, nx, "order table");
    } catch (const std::invalid_argument& e) {
      const auto flats = in.by.count(kv.first) ? in.by.at(kv.first).size() : 0;
      fail("order-table", {{"file", kv.second->file}, {"detail", std::string(e.what()) + " (" + std::to_string(flats) +
                                                                  " " + kind_name(kv.first) + " frames of " +
                                                                  std::to_string(ny) + " x " + std::to_string(nx) + " px)"}});
    }
  }
}

// The products' file names of this run (qc.json included), as save_set and write_qc_json name them.
std::vector<std::string> planned_products(const Inputs& in, bool background);

// Rule product-is-input (as recipe.refuse_overwriting_inputs): no product may replace an input. esorex renames
// each product to its final name in the working directory and moves it to the output directory: an input at
// either path (the same file, links included: device and inode where the product's path exists, else the
// resolved path) is refused before any work.
void refuse_overwriting_inputs(const Inputs& in, bool background) {
  const std::string out = esorex_output_dir();
  auto resolved = [](const std::string& p) {
    char* r = realpath(p.c_str(), nullptr);
    std::string s = r ? r : "";
    std::free(r);
    if (!s.empty()) return s;
    const size_t slash = p.find_last_of('/');   // a product not there yet: its directory resolved
    const std::string dir = slash == std::string::npos ? "." : p.substr(0, slash), base = p.substr(slash + 1);
    r = realpath(dir.c_str(), nullptr);
    s = r ? std::string(r) + "/" + base : p;
    std::free(r);
    return s;
  };
  for (const std::string& name : planned_products(in, background))
    for (const std::string& path : {(out == "." ? "" : out + "/") + name, name}) {
      struct stat ps;
      const bool exists = ::stat(path.c_str(), &ps) == 0;
      const std::string rp = exists ? "" : resolved(path);
      for (const In& f : in.frames) {
        struct stat fs;
        const bool same = exists ? (::stat(f.file.c_str(), &fs) == 0 && fs.st_dev == ps.st_dev && fs.st_ino == ps.st_ino)
                                 : resolved(f.file) == rp;
        if (same) fail("product-is-input", {{"file", f.file}, {"product", path}});
      }
    }
}


// Elapsed wall time per step at debug level (esorex --msg-level=debug), for profiling runs.
struct Stopwatch {
  std::chrono::steady_clock::time_point t = std::chrono::steady_clock::now();
  void lap(const std::string& what) {
    auto now = std::chrono::steady_clock::now();
    cpl_msg_debug(RECIPE, "%s: %.3f s", what.c_str(), std::chrono::duration<double>(now - t).count());
    t = now;
  }
};

// DATAMD5 of the calibrations whose header has none, computed while the frames are read and processed.
std::map<const In*, std::shared_future<std::string>> g_md5;

void start_calib_md5(const Inputs& in) {
  g_md5.clear();
  for (const auto& f : in.frames)
    if (cpl_frame_get_group(f.frame) != CPL_FRAME_GROUP_RAW && f.kind != Kind::SPECTRAL_FORMAT_TAB && !has(f.hdr.get(), "DATAMD5"))
      g_md5[&f] = std::async(std::launch::async, [file = f.file, units = f.units] { return data_md5(file, units); })
                      .share();   // copies: the thread may outlive a failed run's inputs
}

std::string calib_md5(const In& f) {
  auto it = g_md5.find(&f);
  return it != g_md5.end() ? it->second.get() : data_md5(f);
}

cpl_frameset* used_frames(const Lamp& L) {
  cpl_frameset* used = cpl_frameset_new();
  for (auto* group : {&L.raws, &L.cals})
    for (In* f : *group) cpl_frameset_insert(used, cpl_frame_duplicate(f->frame));
  if (L.bpm) cpl_frameset_insert(used, cpl_frame_duplicate(L.bpm->frame));
  return used;
}

void add_qc(cpl_propertylist* a, const soxs::QCValues& q, const ExtraQc& extra) {
  for (const QcVal& v : qc_list(q, extra)) {
    const std::string key = "ESO QC " + v.name;
    if (v.integer) cpl_propertylist_append_long_long(a, key.c_str(), static_cast<long long>(v.value));
    else cpl_propertylist_append_double(a, key.c_str(), v.value);
    const std::string comment = qc_card_comment(v.name);
    if (!comment.empty()) cpl_propertylist_set_comment(a, key.c_str(), comment.c_str());
  }
}

struct Out {                      // what one product set needs
  const std::vector<float>* flux; const std::vector<float>* error; const std::vector<uint8_t>* quality;
  const std::vector<float>* background; const soxs::EdgeFit* edges; soxs::QCValues qc;
  ExtraQc extra_qc;
};

// A product of the contract (data/contract/products.yaml, generated into soxs_mflat_generated.h).
const soxs_gen::ProductDef& product(const std::string& label) {
  for (const auto& d : soxs_gen::PRODUCTS)
    if (label == d.label) return d;
  throw std::logic_error("no product " + label + " in the contract");
}

// Its file name: {arm} lower-case arm, {tag} "" or "_dlamp"/"_qlamp".
std::string product_file(const std::string& label, const std::string& lower_arm, const std::string& tag) {
  std::string f = product(label).file;
  for (auto [key, val] : {std::pair<std::string, std::string>{"{arm}", lower_arm}, {"{tag}", tag}})
    for (size_t at; (at = f.find(key)) != std::string::npos;) f.replace(at, key.size(), val);
  return f;
}

// A UVB per-lamp product's {tag}: "DLAMP" -> "_dlamp".
std::string lamp_suffix(const char* tag) {
  std::string s = "_" + std::string(tag);
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

// The ESO data-product keys of one HDU (EXTNAME, HDUCLASS..., SCIDATA/ERRDATA/QUALDATA, BUNIT, UTYPE).
void add_hdu_keys(cpl_propertylist* p, const char* hdu) {
  for (const auto& k : soxs_gen::HDU_KEYS) {
    if (std::string(k.hdu) != hdu) continue;
    if (std::string(k.key) == "COMMENT") {   // CPL writes one card of 72 characters: split as astropy splits it
      for (size_t i = 0, n = std::strlen(k.value); i < n; i += 72)
        cpl_propertylist_append_string(p, "COMMENT", std::string(k.value).substr(i, 72).c_str());
      continue;
    }
    cpl_propertylist_append_string(p, k.key, k.value);
    if (*k.comment) cpl_propertylist_set_comment(p, k.key, k.comment);
  }
}

void save_image_ext(const std::vector<float>& v, int64_t ny, int64_t nx, const char* file, const char* extname,
                    cpl_type type) {
  Image img(cpl_image_new(nx, ny, CPL_TYPE_FLOAT));
  std::copy(v.begin(), v.end(), cpl_image_get_data_float(img.get()));
  Plist h(cpl_propertylist_new());
  add_hdu_keys(h.get(), extname);
  cpl_image_save(img.get(), file, type, h.get(), CPL_IO_EXTEND);
  check(std::string("cannot write the ") + extname + " extension of " + file);
}

// A tile-compressed raw frame (fpack's layout) has an empty primary HDU: cpl_dfs, which inherits the keys of
// the first raw frame's primary header, finds none there (INSTRUME, DATE-OBS, ARCFILE, ESO DET/INS/SEQ, the PRO
// ANCESTOR were lost). The frame's header is its image HDU's: what cpl_dfs copies of a plain frame's
// (inherited_key: not its WCS, TM-START or ESO QC keys) goes into the product's header, and PRO ANCESTOR from
// its ARCFILE, as for a plain frame (and as the Python front end inherits from the image HDU).
void inherit_image_header(cpl_propertylist* app, const In& ref) {
  if (ref.hdu == 0) return;   // cpl_dfs copies the primary header itself
  const cpl_propertylist* h = ref.hdr.get();
  for (cpl_size i = 0; i < cpl_propertylist_get_size(h); ++i) {
    const cpl_property* p = cpl_propertylist_get_const(h, i);
    const std::string k = cpl_property_get_name(p);
    if (inherited_key(k) && !has(app, k.c_str())) cpl_propertylist_append_property(app, p);
  }
  const std::string arc = get_str(h, "ARCFILE");
  if (!arc.empty() && !has(app, "ESO PRO ANCESTOR")) cpl_propertylist_append_string(app, "ESO PRO ANCESTOR", arc.c_str());
}

// PRO keys of a product, and what the Python front end inherits that cpl_dfs does not copy (EXPTIME of the
// first flat); `hdu`: the contract's keys for the primary HDU (nullptr: none).
Plist pro_keys(const std::string& label, const std::string& arm, const char* hdu, const In& ref) {
  const auto& d = product(label);
  Plist app(cpl_propertylist_new());
  if (has(ref.hdr.get(), "EXPTIME")) cpl_propertylist_append_double(app.get(), "EXPTIME", get_num(ref.hdr.get(), "EXPTIME", 0));
  cpl_propertylist_append_string(app.get(), "ESO PRO CATG", (std::string(d.catg) + "_" + arm).c_str());
  cpl_propertylist_append_string(app.get(), "ESO PRO TYPE", d.type);
  cpl_propertylist_append_string(app.get(), "ESO PRO TECH", d.tech);
  if (hdu) add_hdu_keys(app.get(), hdu);
  inherit_image_header(app.get(), ref);
  return app;
}

void save_primary_image(cpl_frameset* frames, const cpl_parameterlist* parlist, cpl_frameset* used,
                        const std::vector<float>& v, int64_t ny, int64_t nx, const cpl_propertylist* app,
                        const std::string& file) {
  Image img(cpl_image_new(nx, ny, CPL_TYPE_FLOAT));
  std::copy(v.begin(), v.end(), cpl_image_get_data_float(img.get()));
  cpl_dfs_save_image(frames, nullptr, parlist, used, nullptr, img.get(), CPL_TYPE_FLOAT, RECIPE, app, nullptr,
                     PIPE_ID, file.c_str());
  check("cannot save " + file);
}

// Input centre columns + edge columns (alphabetical, soxspipe layout); meta + per-order edge statistics.
void save_order_table(cpl_frameset* frames, const cpl_parameterlist* parlist, cpl_frameset* used,
                      const CentreTable& ct, const Out& o, const std::string& arm, const std::string& file,
                      const In& ref) {
  Table coeffs(cpl_table_duplicate(ct.coeffs.get())), meta(cpl_table_duplicate(ct.meta.get()));
  const std::string b = ct.a_is_x ? "y" : "x";
  const soxs::Poly2D &lo = o.edges->lower.poly, &up = o.edges->upper.poly;
  std::vector<std::pair<std::string, double>> cols = {
      {"degorder_edgelow", lo.deg_n}, {"degorder_edgeup", up.deg_n}, {"deg" + b + "_edgelow", lo.deg_b},
      {"deg" + b + "_edgeup", up.deg_b}};
  for (auto* P : {&lo, &up})
    for (int i = 0; i <= P->deg_n; ++i)
      for (int j = 0; j <= P->deg_b; ++j)
        cols.push_back({std::string(P == &lo ? "edgelow_c" : "edgeup_c") + std::to_string(i) + std::to_string(j),
                        P->c[i * (P->deg_b + 1) + j]});
  std::sort(cols.begin(), cols.end());
  for (auto& kv : cols) {
    bool deg = kv.first.rfind("deg", 0) == 0;
    cpl_table_new_column(coeffs.get(), kv.first.c_str(), deg ? CPL_TYPE_LONG_LONG : CPL_TYPE_DOUBLE);
    if (deg) cpl_table_set_long_long(coeffs.get(), kv.first.c_str(), 0, static_cast<long long>(kv.second));
    else cpl_table_set_double(coeffs.get(), kv.first.c_str(), 0, kv.second);
  }
  const soxs::EdgeFit& E = *o.edges;
  for (const char* c : {"maxvalue", "minThreshold", "maxThreshold", "level_pct"}) cpl_table_new_column(meta.get(), c, CPL_TYPE_DOUBLE);
  for (const char* c : {"n_slices", "n_edges_used"}) cpl_table_new_column(meta.get(), c, CPL_TYPE_LONG_LONG);
  for (cpl_size r = 0; r < cpl_table_get_nrow(meta.get()); ++r) {   // per-order statistics from the core
    cpl_table_set_double(meta.get(), "maxvalue", r, E.peak_per_order[r]);
    cpl_table_set_double(meta.get(), "minThreshold", r, E.min_threshold[r]);
    cpl_table_set_double(meta.get(), "maxThreshold", r, E.max_threshold[r]);
    cpl_table_set_double(meta.get(), "level_pct", r, E.level_pct_per_order[r]);
    cpl_table_set_long_long(meta.get(), "n_slices", r, E.points.n_slices_per_order[r]);
    cpl_table_set_long_long(meta.get(), "n_edges_used", r, E.n_used_per_order[r]);
  }
  Plist app = pro_keys("ORDER LOC", arm, nullptr, ref);
  add_qc(app.get(), o.qc, o.extra_qc);
  Plist poly_h(cpl_propertylist_new()), meta_h(cpl_propertylist_new());
  cpl_propertylist_append_string(poly_h.get(), "EXTNAME", soxs_gen::ORDER_TABLE_EXTNAMES[0]);
  cpl_propertylist_append_string(meta_h.get(), "EXTNAME", soxs_gen::ORDER_TABLE_EXTNAMES[1]);
  cpl_dfs_save_table(frames, nullptr, parlist, used, nullptr, coeffs.get(), poly_h.get(), RECIPE, app.get(), nullptr,
                     PIPE_ID, file.c_str());
  check("cannot save " + file);
  cpl_table_save(meta.get(), nullptr, meta_h.get(), file.c_str(), CPL_IO_EXTEND);
  check("cannot append the meta table to " + file);
}

using Products = std::vector<std::pair<std::string, std::string>>;   // label -> file name, for qc.json

void save_set(cpl_frameset* frames, const cpl_parameterlist* parlist, const Inputs& in, const Lamp& L,
              const CentreTable& ct, const Out& o, const std::string& suffix, Products& products) {
  const std::string arm = in.arm->arm;
  std::string lower_arm = arm;
  std::transform(lower_arm.begin(), lower_arm.end(), lower_arm.begin(), ::tolower);
  Stopwatch sw;
  cpl_frameset* used = used_frames(L);
  const std::string mf = product_file("MFLAT", lower_arm, suffix), staged = g_stage.dir + mf;
  Plist app = pro_keys("MFLAT", arm, soxs_gen::MASTER_FLAT_HDUS[0], *L.raws[0]);
  add_qc(app.get(), o.qc, o.extra_qc);
  save_primary_image(frames, parlist, used, *o.flux, L.ny, L.nx, app.get(), staged);
  for (const char* ext : {soxs_gen::MASTER_FLAT_HDUS[1], soxs_gen::MASTER_FLAT_HDUS[2]}) {   // contract order
    bool qual = std::string(ext) == "QUAL";
    save_image_ext(qual ? std::vector<float>(o.quality->begin(), o.quality->end()) : *o.error, L.ny, L.nx,
                   staged.c_str(), ext, qual ? CPL_TYPE_UCHAR : CPL_TYPE_FLOAT);
  }
  std::vector<const In*> named(L.raws.begin(), L.raws.end());   // the frames the provenance cards name
  named.insert(named.end(), L.cals.begin(), L.cals.end());
  if (L.bpm) named.push_back(L.bpm);
  const std::vector<QcVal> qc = qc_list(o.qc, o.extra_qc);
  const RawCards inherited = inherited_cards(*L.raws[0]);   // one read of the raw's header for the three products
  finish_header(staged, *L.raws[0], inherited, qc, named, calib_md5);
  sw.lap("write " + mf);
  const std::string ot = product_file("ORDER LOC", lower_arm, suffix), bk = product_file("BKGROUND FITS", lower_arm, suffix);
  save_order_table(frames, parlist, used, ct, o, arm, g_stage.dir + ot, *L.raws[0]);
  finish_header(g_stage.dir + ot, *L.raws[0], inherited, qc, named, calib_md5);
  if (o.background) {
    save_primary_image(frames, parlist, used, *o.background, L.ny, L.nx,
                       pro_keys("BKGROUND FITS", arm, "BKGROUND", *L.raws[0]).get(), g_stage.dir + bk);
    finish_header(g_stage.dir + bk, *L.raws[0], inherited, {}, named, calib_md5);
  }
  std::string tag = suffix.empty() ? "" : " " + suffix.substr(1);   // "_dlamp" -> " DLAMP", as the Python labels
  std::transform(tag.begin(), tag.end(), tag.begin(), ::toupper);
  products.push_back({"MFLAT" + tag, mf});
  products.push_back({"ORDER LOC" + tag, ot});
  if (o.background) products.push_back({"BKGROUND FITS" + tag, bk});
  sw.lap("write order table and background");
  cpl_frameset_delete(used);
}

struct LampRun { Lamp L; CentreTable ct; soxs::MasterFlatResult r; };

LampRun run_lamp(Inputs& in, Kind lamp, const soxs::NamedParams& prm) {
  Stopwatch sw;
  LampRun lr{detrend_lamp(in, lamp, static_cast<int>(prm.at("threads"))), read_centre_table(*in.order_tab[lamp]), {}};
  sw.lap("load and detrend");
  std::vector<const float*> f, e;
  for (size_t k = 0; k < lr.L.data.size(); ++k) { f.push_back(lr.L.data[k].data()); e.push_back(lr.L.error[k].data()); }
  cpl_msg_info(RECIPE, "%s %s: %zu %s frames, C++ core (normalise, stack, edges, background, low sensitivity)",
               in.arm->instrument, in.arm->arm, f.size(), kind_name(lamp).c_str());
  lr.r = soxs::master_flat(f, e, soxs::MaskView{lr.L.mask.data()}, lr.L.ny, lr.L.nx, lr.ct.centre, lr.ct.orders,
                           geometry(in, lr.ct), soxs::master_params_from(prm));
  sw.lap("C++ core");
  return lr;
}

Out out_of(const soxs::MasterFlatResult& r) {
  return {&r.flux, &r.error, &r.quality, r.background.empty() ? nullptr : &r.background, &r.edges, r.qc, {}};
}

soxs::LampMaster lamp_master(const LampRun& lr) {
  soxs::LampMaster m;
  const auto& r = lr.r;
  m.stacked = r.stacked.data(); m.background = r.background.empty() ? nullptr : r.background.data();
  m.error = r.error.data(); m.quality = r.quality.data();
  m.lower = r.edges.lower.poly; m.upper = r.edges.upper.poly;
  m.n_used = r.edges.n_used_per_order; m.n_slices = r.edges.points.n_slices_per_order;
  m.order_median_flux = r.order_median_flux;
  double s = 0;
  for (double x : r.norm_second) s += x;
  m.level_e = r.norm_second.empty() ? 1.0 : s / double(r.norm_second.size());
  m.qc = r.qc;
  return m;
}

std::vector<std::string> planned_products(const Inputs& in, bool background) {
  std::string lower_arm = in.arm->arm;
  std::transform(lower_arm.begin(), lower_arm.end(), lower_arm.begin(), ::tolower);
  std::vector<std::string> out;
  const bool uvb = std::string(in.arm->arm) == "UVB";
  std::vector<std::string> suffixes;
  if (uvb) suffixes = {lamp_suffix(soxs_gen::UVB_LAMP_TAGS[0]), lamp_suffix(soxs_gen::UVB_LAMP_TAGS[1])};
  suffixes.push_back("");
  for (const std::string& sfx : suffixes) {
    out.push_back(product_file("MFLAT", lower_arm, sfx));
    out.push_back(product_file("ORDER LOC", lower_arm, sfx));
    if (background && !(uvb && sfx.empty())) out.push_back(product_file("BKGROUND FITS", lower_arm, sfx));
  }
  out.push_back(soxs_gen::QC_JSON_FILE);
  return out;
}

QcJsonRun json_run(const Inputs& in, const Lamp& L, Products products) {
  QcJsonRun r{&in, {L.raws.begin(), L.raws.end()}, {L.cals.begin(), L.cals.end()}, std::move(products)};
  if (L.bpm) r.cals.push_back(L.bpm);
  return r;
}

// What the run reads and with which parameters, as the CLI's -v / --log lines; at esorex --msg-level=debug.
void log_run(const cpl_frameset* frames, const soxs::NamedParams& prm) {
  for (cpl_size i = 0; i < cpl_frameset_get_size(frames); ++i) {
    const cpl_frame* f = cpl_frameset_get_position_const(frames, i);
    cpl_msg_debug(RECIPE, "input %-5s %-18s %s", cpl_frame_get_group(f) == CPL_FRAME_GROUP_RAW ? "raw" : "calib",
                  cpl_frame_get_tag(f), cpl_frame_get_filename(f));
  }
  for (int i = 0; i < soxs_gen::N_PARAMS; ++i) {
    const auto& d = soxs_gen::PARAMS[i];
    const double v = prm.at(d.name);
    if (d.type == 'b')
      cpl_msg_debug(RECIPE, "parameter %s = %s", d.name, v != 0 ? "true" : "false");
    else
      cpl_msg_debug(RECIPE, "parameter %s = %.10g", d.name, v);
  }
}

void run(cpl_frameset* frames, cpl_parameterlist* parlist) {
  Stopwatch sw;
  Inputs in = classify(frames);
  soxs::NamedParams prm = resolve_params(parlist, in.arm->column);
  log_run(frames, prm);
  check_limits(in, prm);
  refuse_overwriting_inputs(in, prm.at("subtract_background") != 0);
  start_calib_md5(in);
  sw.lap("classify and check the inputs");
  const bool uvb = std::string(in.arm->arm) == "UVB";
  g_stage.open(product_bytes(in, uvb ? 3 : 1, prm.at("subtract_background") != 0),
               planned_products(in, prm.at("subtract_background") != 0));
  Products products;
  if (!uvb) {
    LampRun lr = run_lamp(in, in.by[Kind::FLAT].empty() ? Kind::QFLAT : Kind::FLAT, prm);
    auto rows = qc_rows(qc_list(lr.r.qc, {}), in.arm->column);
    log_qc(rows, "");
    save_set(frames, parlist, in, lr.L, lr.ct, out_of(lr.r), "", products);
    write_qc_json(frames, json_run(in, lr.L, products), rows, {}, g_stage.dir);
    g_stage.commit(frames);
    return;
  }
  LampRun d = run_lamp(in, Kind::DFLAT, prm), q = run_lamp(in, Kind::QFLAT, prm);
  soxs::UvbResult u = soxs::combine_uvb(lamp_master(d), lamp_master(q), q.L.ny, q.L.nx, q.ct.centre, q.ct.orders,
                                        geometry(in, q.ct), soxs::uvb_params_from(prm));
  cpl_msg_info(RECIPE, "UVB crossover order %d, D2 scale %.6g", u.crossover, u.scale);
  // the ranges describe the stitched flat; the per-lamp tables are reported without (as the Python front end)
  std::vector<std::pair<std::string, std::vector<QcRow>>> per_lamp = {
      {"DLAMP", qc_rows(qc_list(d.r.qc, {}), -1)}, {"QLAMP", qc_rows(qc_list(q.r.qc, {}), -1)}};
  for (const auto& kv : per_lamp) log_qc(kv.second, kv.first);
  save_set(frames, parlist, in, d.L, d.ct, out_of(d.r), lamp_suffix(soxs_gen::UVB_LAMP_TAGS[0]), products);
  save_set(frames, parlist, in, q.L, q.ct, out_of(q.r), lamp_suffix(soxs_gen::UVB_LAMP_TAGS[1]), products);
  Lamp both;
  both.ny = q.L.ny; both.nx = q.L.nx;
  both.raws = d.L.raws; both.raws.insert(both.raws.end(), q.L.raws.begin(), q.L.raws.end());
  both.cals = q.L.cals; both.cals.push_back(in.order_tab[Kind::DFLAT]);
  both.bpm = q.L.bpm;
  Out o{&u.flux, &u.error, &u.quality, nullptr, &u.edges, u.qc,
        {{"CROSSOVER ORDER", double(u.crossover), true}, {"D2 SCALE", u.scale, false}}};
  auto rows = qc_rows(qc_list(u.qc, o.extra_qc), in.arm->column);
  log_qc(rows, "");
  save_set(frames, parlist, in, both, q.ct, o, "", products);
  write_qc_json(frames, json_run(in, both, products), rows, per_lamp, g_stage.dir);
  g_stage.commit(frames);
}

int exec(cpl_plugin* plugin) {
  auto* recipe = reinterpret_cast<cpl_recipe*>(plugin);
  // Frame-sized buffers (4-64 MB) freed by one step are reused by the next instead of being
  // returned to the system: fresh pages cost a fault per 4 kB (~10 % of the run on SOXS NIR).
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  // an error state left by esorex (its log file in a read-only working directory) is no input's: every
  // CPL error the plugin reports is its own
  cpl_error_reset();
  struct Md5Done { ~Md5Done() { g_md5.clear(); } } md5_done;   // its threads finished before exec returns
  try {
    run(recipe->frames, recipe->parameters);
  } catch (const OutputError& e) {
    g_stage.release(recipe->frames);
    g_stage.unlock();
    cpl_msg_error(RECIPE, "output error: %s", e.what());
    return static_cast<int>(cpl_error_set_message(RECIPE, e.code, "%s", e.what()));
  } catch (const RuleError& e) {   // a rule of the input contract: its outcome's CPL code (esorex's exit status)
    g_stage.release(recipe->frames);
    g_stage.unlock();
    cpl_msg_error(RECIPE, "input error: %s", e.what());
    return static_cast<int>(cpl_error_set_message(RECIPE, e.code, "%s", e.what()));
  } catch (const std::invalid_argument& e) {   // the core's checks of its input, which no rule names
    g_stage.release(recipe->frames);
    g_stage.unlock();
    cpl_msg_error(RECIPE, "input error: %s", e.what());
    return static_cast<int>(cpl_error_set_message(RECIPE, CPL_ERROR_ILLEGAL_INPUT, "%s", e.what()));
  } catch (const std::exception& e) {
    g_stage.release(recipe->frames);
    g_stage.unlock();
    cpl_msg_error(RECIPE, "processing failed: %s", e.what());
    return static_cast<int>(cpl_error_set_message(RECIPE, CPL_ERROR_ILLEGAL_OUTPUT, "%s", e.what()));
  }
  return 0;
}

int destroy(cpl_plugin* plugin) {
  g_stage.unlock();   // esorex has moved the products to --output-dir by now
  cpl_parameterlist_delete(reinterpret_cast<cpl_recipe*>(plugin)->parameters);
  return 0;
}

}  // namespace

extern "C" int cpl_plugin_get_info(cpl_pluginlist* list) {
  auto* recipe = static_cast<cpl_recipe*>(cpl_calloc(1, sizeof(cpl_recipe)));
  cpl_plugin_init(&recipe->interface, CPL_PLUGIN_API, version_number(SOXS_VERSION), CPL_PLUGIN_TYPE_RECIPE, RECIPE,
                  "Master flat and order edges for SOXS and X-shooter", DESCRIPTION, SOXS_AUTHOR, SOXS_CONTACT,
                  "GPL-3.0-or-later", create, exec, destroy);
  cpl_pluginlist_append(list, &recipe->interface);
  return 0;
}
