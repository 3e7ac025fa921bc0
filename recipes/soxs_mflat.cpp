// esorex plugin "soxs_mflat": the same C++ core as the Python front end, with CPL I/O and DFS saving.
#include <cpl.h>
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "soxs_mflat_inputs.hpp"
#include "soxs_mflat_qc.hpp"

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
    "Products (PRO CATG):\n"
    "  master_flat_<arm>.fits   MASTER_FLAT_<ARM>   FLUX, QUAL, ERRS\n"
    "  order_tab_<arm>.fits     ORDER_TAB_<ARM>     centre and edge polynomials (soxspipe format)\n"
    "  mflat_bkground_<arm>.fits MFLAT_BKGROUND_<ARM> scattered-light model\n"
    "  UVB also: *_uvb_dlamp.fits, *_uvb_qlamp.fits per-lamp products.\n"
    "qc.json (QC values with units, ranges and flags; the run's instrument, arm, night, inputs) is written\n"
    "beside the products; the QC table and a warning per out-of-range value are logged.\n"
    "QC PDFs are written by the Python front end (soxs-mflat run) only.\n"
    "Parameters set to -1 take the instrument/arm default.";

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
    else if (d.type == 'i')
      p = cpl_parameter_new_value(name.c_str(), CPL_TYPE_INT, desc.c_str(), "soxs.mflat",
                                  d.varies ? -1 : static_cast<int>(d.def[0]));
    else
      p = cpl_parameter_new_value(name.c_str(), CPL_TYPE_DOUBLE, desc.c_str(), "soxs.mflat", d.varies ? -1.0 : d.def[0]);
    cpl_parameter_set_alias(p, CPL_PARAMETER_MODE_CLI, kebab(d.name).c_str());
    cpl_parameter_disable(p, CPL_PARAMETER_MODE_ENV);
    cpl_parameterlist_append(recipe->parameters, p);
  }
  return 0;
}

// Parameter values with -1 resolved to the instrument/arm default, also written back into the list
// so that the products' PRO REC1 PARAMi VALUE records what ran (as the Python front end does).
soxs::NamedParams resolve_params(cpl_parameterlist* list, int column) {
  soxs::NamedParams m;
  for (int i = 0; i < soxs_gen::N_PARAMS; ++i) {
    const auto& d = soxs_gen::PARAMS[i];
    cpl_parameter* p = cpl_parameterlist_find(list, full_name(d.name).c_str());
    double v = d.type == 'b' ? cpl_parameter_get_bool(p) : d.type == 'i' ? cpl_parameter_get_int(p)
                                                                          : cpl_parameter_get_double(p);
    if (d.varies && v < 0) {
      v = d.def[column];
      if (d.type == 'i') cpl_parameter_set_int(p, static_cast<int>(v));
      else if (d.type != 'b') cpl_parameter_set_double(p, v);
    }
    m[d.name] = v;
  }
  return m;
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
  }
}

struct Out {                      // what one product set needs
  const std::vector<float>* flux; const std::vector<float>* error; const std::vector<uint8_t>* quality;
  const std::vector<float>* background; const soxs::EdgeFit* edges; soxs::QCValues qc;
  ExtraQc extra_qc;
};

void save_image_ext(const std::vector<float>& v, int64_t ny, int64_t nx, const char* file, const char* extname,
                    cpl_type type) {
  Image img(cpl_image_new(nx, ny, CPL_TYPE_FLOAT));
  std::copy(v.begin(), v.end(), cpl_image_get_data_float(img.get()));
  Plist h(cpl_propertylist_new());
  cpl_propertylist_append_string(h.get(), "EXTNAME", extname);
  if (std::string(extname) == "ERRS") cpl_propertylist_append_string(h.get(), "UTYPE", "StdDevUncertainty");
  cpl_image_save(img.get(), file, type, h.get(), CPL_IO_EXTEND);
  check(std::string("cannot write the ") + extname + " extension of " + file);
}

// PRO keys, and what the Python front end inherits that cpl_dfs does not copy (EXPTIME of the first flat).
Plist pro_keys(const std::string& catg, const char* tech, bool flux_ext, const In& ref) {
  Plist app(cpl_propertylist_new());
  if (has(ref.hdr.get(), "EXPTIME")) cpl_propertylist_append_double(app.get(), "EXPTIME", get_num(ref.hdr.get(), "EXPTIME", 0));
  cpl_propertylist_append_string(app.get(), "ESO PRO CATG", catg.c_str());
  cpl_propertylist_append_string(app.get(), "ESO PRO TYPE", "REDUCED");
  cpl_propertylist_append_string(app.get(), "ESO PRO TECH", tech);
  if (flux_ext) cpl_propertylist_append_string(app.get(), "EXTNAME", "FLUX");
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
                      const CentreTable& ct, const Out& o, const std::string& catg, const std::string& file,
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
  Plist app = pro_keys(catg, "ECHELLE,SLIT", false, ref);
  add_qc(app.get(), o.qc, o.extra_qc);
  cpl_dfs_save_table(frames, nullptr, parlist, used, nullptr, coeffs.get(), nullptr, RECIPE, app.get(), nullptr,
                     PIPE_ID, file.c_str());
  check("cannot save " + file);
  cpl_table_save(meta.get(), nullptr, nullptr, file.c_str(), CPL_IO_EXTEND);
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
  std::string mf = "master_flat_" + lower_arm + suffix + ".fits";
  Plist app = pro_keys("MASTER_FLAT_" + arm, "IMAGE", true, *L.raws[0]);
  cpl_propertylist_append_string(app.get(), "BUNIT", "");
  add_qc(app.get(), o.qc, o.extra_qc);
  save_primary_image(frames, parlist, used, *o.flux, L.ny, L.nx, app.get(), mf);
  save_image_ext(std::vector<float>(o.quality->begin(), o.quality->end()), L.ny, L.nx, mf.c_str(), "QUAL", CPL_TYPE_UCHAR);
  save_image_ext(*o.error, L.ny, L.nx, mf.c_str(), "ERRS", CPL_TYPE_FLOAT);
  sw.lap("write " + mf);
  const std::string ot = "order_tab_" + lower_arm + suffix + ".fits", bk = "mflat_bkground_" + lower_arm + suffix + ".fits";
  save_order_table(frames, parlist, used, ct, o, "ORDER_TAB_" + arm, ot, *L.raws[0]);
  if (o.background)
    save_primary_image(frames, parlist, used, *o.background, L.ny, L.nx,
                       pro_keys("MFLAT_BKGROUND_" + arm, "IMAGE", true, *L.raws[0]).get(), bk);
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
  cpl_msg_info(RECIPE, "%s %s: %zu flats, C++ core (normalise, stack, edges, background, low sensitivity)",
               in.arm->instrument, in.arm->arm, f.size());
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

QcJsonRun json_run(const Inputs& in, const Lamp& L, Products products) {
  QcJsonRun r{&in, {L.raws.begin(), L.raws.end()}, {L.cals.begin(), L.cals.end()}, std::move(products)};
  if (L.bpm) r.cals.push_back(L.bpm);
  return r;
}

void run(cpl_frameset* frames, cpl_parameterlist* parlist) {
  Stopwatch sw;
  Inputs in = classify(frames);
  soxs::NamedParams prm = resolve_params(parlist, in.arm->column);
  sw.lap("classify and check the inputs");
  Products products;
  if (std::string(in.arm->arm) != "UVB") {
    LampRun lr = run_lamp(in, in.by[Kind::FLAT].empty() ? Kind::QFLAT : Kind::FLAT, prm);
    auto rows = qc_rows(qc_list(lr.r.qc, {}), in.arm->column);
    log_qc(rows, "");
    save_set(frames, parlist, in, lr.L, lr.ct, out_of(lr.r), "", products);
    write_qc_json(frames, json_run(in, lr.L, products), rows, {});
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
  save_set(frames, parlist, in, d.L, d.ct, out_of(d.r), "_dlamp", products);
  save_set(frames, parlist, in, q.L, q.ct, out_of(q.r), "_qlamp", products);
  Lamp both;
  both.ny = q.L.ny; both.nx = q.L.nx;
  both.raws = d.L.raws; both.raws.insert(both.raws.end(), q.L.raws.begin(), q.L.raws.end());
  both.cals = q.L.cals; both.cals.push_back(in.order_tab[Kind::DFLAT]);
  both.bpm = q.L.bpm;
  Out o{&u.flux, &u.error, &u.quality, nullptr, &u.edges, u.qc,
        {{"CROSSOVER ORDER", u.crossover}, {"D2 SCALE", u.scale}}};
  auto rows = qc_rows(qc_list(u.qc, o.extra_qc), in.arm->column);
  log_qc(rows, "");
  save_set(frames, parlist, in, both, q.ct, o, "", products);
  write_qc_json(frames, json_run(in, both, products), rows, per_lamp);
}

int exec(cpl_plugin* plugin) {
  auto* recipe = reinterpret_cast<cpl_recipe*>(plugin);
  // Frame-sized buffers (4-64 MB) freed by one step are reused by the next instead of being
  // returned to the system: fresh pages cost a fault per 4 kB (~10 % of the run on SOXS NIR).
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  try {
    run(recipe->frames, recipe->parameters);
  } catch (const RuleError& e) {   // a rule of the input contract: its outcome's CPL code (esorex's exit status)
    cpl_msg_error(RECIPE, "input error: %s", e.what());
    return static_cast<int>(cpl_error_set_message(RECIPE, e.code, "%s", e.what()));
  } catch (const InputError& e) {
    cpl_msg_error(RECIPE, "input error: %s", e.what());
    return static_cast<int>(cpl_error_set_message(RECIPE, CPL_ERROR_DATA_NOT_FOUND, "%s", e.what()));
  } catch (const std::exception& e) {
    cpl_msg_error(RECIPE, "processing failed: %s", e.what());
    return static_cast<int>(cpl_error_set_message(RECIPE, CPL_ERROR_ILLEGAL_OUTPUT, "%s", e.what()));
  }
  return 0;
}

int destroy(cpl_plugin* plugin) {
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
