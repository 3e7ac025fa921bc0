// QC of the soxs_mflat plugin: contract order, esorex log, qc.json (format: docs/recipe.md "qc.json").
#include "soxs_mflat_qc.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#ifndef SOXS_VERSION
#define SOXS_VERSION "0.0.0"
#endif

namespace soxs_cpl {

namespace {

const char* RECIPE = "soxs_mflat";

const soxs_gen::QcDef* def_of(const std::string& name) {
  for (int i = 0; i < soxs_gen::N_QC_DEFS; ++i)
    if (name == soxs_gen::QC_DEFS[i].name) return &soxs_gen::QC_DEFS[i];
  return nullptr;
}

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += c; }
    else if (static_cast<unsigned char>(c) < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += c;
  }
  return "\"" + o + "\"";
}

std::string num(double v, bool integer = false) {
  if (!std::isfinite(v)) return "null";   // JSON has no NaN
  char b[32];
  if (integer) std::snprintf(b, sizeof b, "%lld", static_cast<long long>(v));
  else std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

// soxspipe's night: the date of DATE-OBS minus night_start_offset_hrs ("null" if DATE-OBS is unreadable)
std::string night_of(const std::string& date_obs) {
  std::tm t{};
  double sec = 0;
  if (std::sscanf(date_obs.c_str(), "%d-%d-%dT%d:%d:%lf", &t.tm_year, &t.tm_mon, &t.tm_mday, &t.tm_hour, &t.tm_min,
                  &sec) < 3)
    return "null";
  t.tm_year -= 1900; t.tm_mon -= 1; t.tm_sec = static_cast<int>(sec);
  std::time_t s = timegm(&t) - static_cast<std::time_t>(soxs_gen::NIGHT_START_OFFSET_HRS * 3600);
  std::tm n{};
  gmtime_r(&s, &n);
  char b[16];
  std::strftime(b, sizeof b, "%Y-%m-%d", &n);
  return esc(b);
}

std::string rows_json(const std::vector<QcRow>& rows) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < rows.size(); ++i) {
    const QcRow& r = rows[i];
    o << (i ? ",\n  " : "\n  ") << "{\"name\": " << esc(r.v.name) << ", \"value\": " << num(r.v.value, r.v.integer)
      << ", \"unit\": " << esc(r.unit) << ", \"range\": "
      << (r.ranged ? "[" + num(r.lo) + ", " + num(r.hi) + "]" : std::string("null"))
      << ", \"flag\": " << esc(!r.ranged ? "none" : r.pass ? "pass" : "fail") << ", \"comment\": " << esc(r.comment)
      << "}";
  }
  o << "\n ]";
  return o.str();
}

std::string header_str(const In& f, const char* key) {
  const cpl_propertylist* h = f.hdr.get();
  if (!has(h, key) || cpl_propertylist_get_type(h, key) != CPL_TYPE_STRING) return "";
  return cpl_propertylist_get_string(h, key);
}

std::string base(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

}  // namespace

std::vector<QcVal> qc_list(const soxs::QCValues& q, const ExtraQc& extra) {
  std::vector<QcVal> v = {{"ORDEXP10", q.ordexp10, false}, {"ORDEXP50", q.ordexp50, false},
                          {"ORDEXP90", q.ordexp90, false}, {"X RES MIN", q.x_res_min, false},
                          {"X RES MAX", q.x_res_max, false}, {"X RES SD", q.x_res_sd, false},
                          {"N LOW SENS", double(q.n_low_sens), true}, {"COLDPIX NUM", double(q.coldpix_num), true},
                          {"COLDPIX FRAC", q.coldpix_frac, false}, {"INNER ORDER PIX MEAN", q.inner_mean, false},
                          {"INNER ORDER PIX SUM", q.inner_sum, false}};
  v.insert(v.end(), extra.begin(), extra.end());
  for (const auto& x : v)
    if (!def_of(x.name)) throw std::logic_error("QC " + x.name + " is not in data/contract/qc.yaml");
  return v;
}

std::string qc_card_comment(const std::string& name) {
  const soxs_gen::QcDef* d = def_of(name);
  const long room = 80 - static_cast<long>(std::string("HIERARCH ESO QC ").size() + name.size()) - 3 - 20 - 3;
  return d && room > 0 ? std::string(d->comment).substr(0, static_cast<size_t>(room)) : std::string();
}

std::vector<QcRow> qc_rows(const std::vector<QcVal>& v, int column) {
  std::vector<QcRow> rows;
  for (const auto& x : v) {
    const soxs_gen::QcDef* d = def_of(x.name);
    QcRow r{x, d->unit, d->comment, false, 0, 0, true};
    for (int i = 0; i < soxs_gen::N_QC_RANGES; ++i) {
      const auto& g = soxs_gen::QC_RANGES[i];
      if (g.column == column && x.name == g.name) {
        r.ranged = true; r.lo = g.lo; r.hi = g.hi;
        r.pass = g.lo <= x.value && x.value <= g.hi;   // inclusive, as the Python front end
      }
    }
    rows.push_back(r);
  }
  return rows;
}

int log_qc(const std::vector<QcRow>& rows, const std::string& what) {
  int failed = 0;
  cpl_msg_info(RECIPE, "QC%s%s:", what.empty() ? "" : " ", what.c_str());
  cpl_msg_info(RECIPE, "  %-22s %14s %-10s %-22s %s", "QC", "value", "unit", "range", "flag");
  cpl_msg_info(RECIPE, "  %s", std::string(76, '-').c_str());   // as the CLI's table
  for (const QcRow& r : rows) {
    char rng[64] = "";
    if (r.ranged) std::snprintf(rng, sizeof rng, "[%g, %g]", r.lo, r.hi);
    cpl_msg_info(RECIPE, "  %-22s %14.6g %-10s %-22s %s", r.v.name.c_str(), r.v.value, r.unit, rng,
                 !r.ranged ? "-" : r.pass ? "pass" : "fail");
  }
  for (const QcRow& r : rows)
    if (r.ranged && !r.pass) {
      ++failed;
      cpl_msg_warning(RECIPE, "QC %s%s = %.6g is outside its acceptable range [%g, %g]", r.v.name.c_str(),
                      what.empty() ? "" : (" (" + what + ")").c_str(), r.v.value, r.lo, r.hi);
    }
  return failed;
}

void write_qc_json(cpl_frameset* frames, const QcJsonRun& run, const std::vector<QcRow>& rows,
                   const std::vector<std::pair<std::string, std::vector<QcRow>>>& per_lamp, const std::string& dir) {
  int failed = 0, n_flats = 0;
  for (const auto* rs : {&rows}) for (const auto& r : *rs) failed += r.ranged && !r.pass;
  for (const auto& kv : per_lamp) for (const auto& r : kv.second) failed += r.ranged && !r.pass;
  const In* first = nullptr;   // the earliest flat gives DATE-OBS and the night
  for (const In* f : run.raws)
    if (f->kind == Kind::FLAT || f->kind == Kind::DFLAT || f->kind == Kind::QFLAT) {
      ++n_flats;
      if (!first || f->mjd < first->mjd) first = f;
    }
  const std::string date_obs = first ? header_str(*first, "DATE-OBS") : "";
  std::ostringstream o;
  o << "{\n \"format\": " << esc(soxs_gen::QC_JSON_FORMAT) << ",\n \"recipe\": \"soxs_mflat\",\n"
    << " \"front_end\": \"esorex\",\n \"pipeline\": " << esc(std::string("soxs-mflat/") + SOXS_VERSION) << ",\n"
    << " \"instrument\": " << esc(run.in->arm->instrument) << ",\n \"arm\": " << esc(run.in->arm->arm) << ",\n"
    << " \"date_obs\": " << (date_obs.empty() ? "null" : esc(date_obs)) << ",\n \"n_flats\": " << n_flats << ",\n"
    << " \"inputs\": [";
  bool comma = false;
  for (const auto& [group, list] : {std::make_pair("raw", &run.raws), std::make_pair("calib", &run.cals)})
    for (const In* f : *list) {
      o << (comma ? ",\n  " : "\n  ") << "{\"name\": " << esc(base(f->file)) << ", \"catg\": " << esc(f->tag)
        << ", \"group\": " << esc(group) << "}";
      comma = true;
    }
  o << "\n ],\n \"products\": {";
  for (size_t i = 0; i < run.products.size(); ++i)
    o << (i ? ",\n  " : "\n  ") << esc(run.products[i].first) << ": " << esc(run.products[i].second);
  o << "\n },\n \"night\": " << (date_obs.empty() ? "null" : night_of(date_obs)) << ",\n \"passed\": "
    << (failed ? "false" : "true") << ",\n \"n_failed\": " << failed << ",\n \"qc\": " << rows_json(rows);
  if (!per_lamp.empty()) {
    o << ",\n \"per_lamp\": {";
    for (size_t i = 0; i < per_lamp.size(); ++i)
      o << (i ? ",\n " : "\n ") << esc(per_lamp[i].first) << ": " << rows_json(per_lamp[i].second);
    o << "\n }";
  }
  o << "\n}\n";
  const std::string path = dir + soxs_gen::QC_JSON_FILE, tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << o.str();
    if (!f.flush()) throw std::runtime_error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  // a product frame, so that esorex moves it to --output-dir with the FITS products
  cpl_frame* fr = cpl_frame_new();
  cpl_frame_set_filename(fr, path.c_str());
  cpl_frame_set_tag(fr, "QC_JSON");
  cpl_frame_set_type(fr, CPL_FRAME_TYPE_ANY);
  cpl_frame_set_group(fr, CPL_FRAME_GROUP_PRODUCT);
  cpl_frame_set_level(fr, CPL_FRAME_LEVEL_FINAL);
  cpl_frameset_insert(frames, fr);
}

}  // namespace soxs_cpl
