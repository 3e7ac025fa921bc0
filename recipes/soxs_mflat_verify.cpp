// Classification and verification of the plugin's inputs: the rules, ids, messages and outcomes of the
// input contract (data/contract/inputs.yaml, generated into soxs_mflat_generated.h), in the order the
// Python front end (frames.py, verify.py) applies them, so that one bad input gives one rule in both.
#include <fitsio.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "soxs_mflat_inputs.hpp"

namespace soxs_cpl {

void fail(const std::string& rule, const Fields& fields) {
  for (int i = 0; i < soxs_gen::N_RULES; ++i) {
    if (rule != soxs_gen::RULES[i].id) continue;
    std::string msg = soxs_gen::RULES[i].message;
    for (const auto& kv : fields) {
      const std::string pat = "{" + kv.first + "}";
      for (size_t at = msg.find(pat); at != std::string::npos; at = msg.find(pat, at + kv.second.size()))
        msg.replace(at, pat.size(), kv.second);
    }
    throw RuleError(rule, static_cast<cpl_error_code>(soxs_gen::RULES[i].cpl_error), msg);
  }
  throw std::logic_error("no rule '" + rule + "' in the input contract");
}

namespace {

std::string fmt_g(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string upper_trim(std::string s) {
  const auto b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
  s = b == std::string::npos ? "" : s.substr(b, e - b + 1);
  std::transform(s.begin(), s.end(), s.begin(), ::toupper);
  return s;
}

std::string no_spaces(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  return s;
}

// A value as text (as soxs_mflat.keywords.text): strings upper case, numbers printed; "" when absent.
std::string text(const cpl_propertylist* h, const std::string& key) {
  if (key.empty() || !has(h, key.c_str())) return "";
  switch (cpl_propertylist_get_type(h, key.c_str())) {
    case CPL_TYPE_STRING: return upper_trim(cpl_propertylist_get_string(h, key.c_str()));
    case CPL_TYPE_BOOL: return cpl_propertylist_get_bool(h, key.c_str()) ? "TRUE" : "FALSE";
    case CPL_TYPE_FLOAT: case CPL_TYPE_DOUBLE: return fmt_g(get_num(h, key.c_str(), 0));
    default: return std::to_string(static_cast<long long>(get_num(h, key.c_str(), 0)));
  }
}

const soxs_gen::ValueDef& value_def(const char* what) {
  for (int i = 0; i < soxs_gen::N_VALUES; ++i)
    if (std::string(what) == soxs_gen::VALUES[i].name) return soxs_gen::VALUES[i];
  throw std::logic_error(std::string("no value '") + what + "' in the input contract");
}

Kind kind_named(const std::string& n) {
  static const std::map<std::string, Kind> m = {
      {"FLAT", Kind::FLAT}, {"DFLAT", Kind::DFLAT}, {"QFLAT", Kind::QFLAT}, {"LAMPOFF", Kind::LAMPOFF},
      {"MASTER_BIAS", Kind::MASTER_BIAS}, {"MASTER_DARK", Kind::MASTER_DARK}, {"ORDER_TAB", Kind::ORDER_TAB},
      {"BP_MAP_RP", Kind::BPM}, {"SPECTRAL_FORMAT_TAB", Kind::SPECTRAL_FORMAT_TAB}};
  auto it = m.find(n);
  if (it == m.end()) throw std::logic_error("kind '" + n + "' of the input contract is unknown to the plugin");
  return it->second;
}

bool is_raw(Kind k) {
  for (int i = 0; i < soxs_gen::N_KINDS; ++i)
    if (kind_named(soxs_gen::KINDS[i].name) == k) return soxs_gen::KINDS[i].raw;
  return false;
}

bool is_flat(Kind k) { return k == Kind::FLAT || k == Kind::DFLAT || k == Kind::QFLAT; }

Kind classify_header(const cpl_propertylist* h) {
  const std::string catg = text(h, "ESO PRO CATG");
  for (int i = 0; i < soxs_gen::N_PRODUCT_PREFIXES; ++i) {
    const std::string p = soxs_gen::PRODUCT_PREFIXES[i];
    if (catg == p || catg.rfind(p + "_", 0) == 0) return kind_named(p);
  }
  const std::string type = no_spaces(text(h, "ESO DPR TYPE")), tech = no_spaces(text(h, "ESO DPR TECH"));
  for (int i = 0; i < soxs_gen::N_RAW_CLASSES; ++i)
    if (type == soxs_gen::RAW_CLASSES[i].type && tech == soxs_gen::RAW_CLASSES[i].tech)
      return kind_named(soxs_gen::RAW_CLASSES[i].kind);
  return Kind::UNKNOWN;
}

std::vector<std::string> accepted_tags(const In& f) {
  const Fields fields = {{"type", no_spaces(text(f.hdr.get(), "ESO DPR TYPE"))},
                         {"catg", text(f.hdr.get(), "ESO PRO CATG")}, {"arm", text(f.hdr.get(), "ESO SEQ ARM")}};
  std::vector<std::string> out;
  for (int i = 0; i < soxs_gen::N_TAG_PATTERNS; ++i) {
    if (f.kind == Kind::UNKNOWN || kind_named(soxs_gen::TAG_PATTERNS[i].kind) != f.kind) continue;
    std::string t = soxs_gen::TAG_PATTERNS[i].pattern;
    for (const auto& kv : fields) {
      const std::string pat = "{" + kv.first + "}";
      for (size_t at = t.find(pat); at != std::string::npos; at = t.find(pat)) t.replace(at, pat.size(), kv.second);
    }
    out.push_back(t);
  }
  return out;
}

bool compressed(const std::string& file) {   // gzip, unix compress, bzip2: by the magic bytes
  std::ifstream in(file, std::ios::binary);
  char m[2] = {0, 0};
  in.read(m, 2);
  const auto a = static_cast<unsigned char>(m[0]), b = static_cast<unsigned char>(m[1]);
  return (a == 0x1f && (b == 0x8b || b == 0x9d)) || (a == 'B' && b == 'Z');
}

// A card's integer value from raw 80-character FITS cards ("" key: absent -> dflt).
long long card_int(const std::string& block, const std::string& key, long long dflt) {
  for (size_t at = 0; at + 80 <= block.size(); at += 80) {
    std::string k = block.substr(at, 8);
    k.erase(k.find_last_not_of(' ') + 1);
    if (k == key && block.compare(at + 8, 2, "= ") == 0) return std::atoll(block.substr(at + 10, 70).c_str());
  }
  return dflt;
}

// A file's bytes in one read (an istreambuf_iterator copies a byte at a time: ~0.2 s for 5 raw flats).
std::string file_bytes(const std::string& path, size_t size) {
  std::ifstream in(path, std::ios::binary);
  std::string out(size, '\0');
  in.read(&out[0], static_cast<std::streamsize>(size));
  out.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return out;
}

// As the Python front end: every HDU's data unit must be complete (the padding may be missing).
// Only the header blocks are read; the data units are skipped by their size (reading whole files, 80 MB for
// a SOXS VIS set, through an istreambuf_iterator took 0.3 s).
void check_complete(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  struct stat st;
  const size_t fsize = (in && stat(file.c_str(), &st) == 0) ? static_cast<size_t>(st.st_size) : 0;
  std::string block(2880, ' ');
  size_t pos = 0;
  while (pos < fsize) {
    std::string hdr;
    bool end = false;
    while (!end && pos + 2880 <= fsize) {
      in.seekg(static_cast<std::streamoff>(pos));
      if (!in.read(&block[0], 2880)) return;   // unreadable after all: CPL reports it
      pos += 2880;
      hdr += block;
      for (size_t at = 0; at < 2880 && !end; at += 80) end = block.compare(at, 8, "END     ") == 0;
    }
    if (!end) return;   // not FITS at all: CPL reports it
    // the data unit's size from the structural cards; a negative one (GCOUNT = -1 looped here for ever) is
    // refused, and a product beyond the file's size stops there (no overflow)
    auto card = [&](const std::string& k, long long dflt) {
      const long long v = card_int(hdr, k, dflt);
      if (v < 0) fail("unreadable-fits", {{"file", file}, {"detail", "not a readable FITS file (" + k + " = " +
                                                             std::to_string(v) + " is negative)"}});
      return v;
    };
    const long long limit = static_cast<long long>(fsize);
    auto times = [&](long long a, long long b) { return (b != 0 && a > limit / b) ? limit + 1 : a * b; };
    long long n = card("NAXIS", 0), size = n > 0 ? 1 : 0;
    for (long long i = 1; i <= n && i <= 999; ++i) size = times(size, card("NAXIS" + std::to_string(i), 0));
    const long long pcount = card("PCOUNT", 0), bitpix = card_int(hdr, "BITPIX", 8);
    if (bitpix < -64 || bitpix > 64) return;   // not a FITS BITPIX: CPL reports the file
    size = times(times(std::llabs(bitpix) / 8, card("GCOUNT", 1)),
                 pcount > limit ? limit + 1 : pcount + size);
    if (pos + static_cast<size_t>(size) > fsize)
      fail("unreadable-fits", {{"file", file}, {"detail", "FITS file is truncated (" + std::to_string(fsize) +
                                                 " bytes, header promises " + std::to_string(pos + size) + ")"}});
    pos += (size + 2879) / 2880 * 2880;
  }
}

// A whole-file compressed frame (.fits.gz, .fits.Z): CFITSIO decompresses it into memory (as far as the
// stream goes); every HDU's header and data unit must lie within what came out, as the Python front end
// requires of the decompressed stream. Else unreadable-fits here, not a failed image load later.
void check_complete_compressed(const std::string& file) {
  fitsfile* fp = nullptr;
  int status = 0;
  auto fits_error = [&](const std::string& what) {
    char msg[FLEN_STATUS] = "";
    fits_get_errstatus(status, msg);
    int ignored = 0;
    if (fp) fits_close_file(fp, &ignored);
    fail("unreadable-fits", {{"file", file}, {"detail", what + " (" + msg + ")"}});
  };
  if (fits_open_file(&fp, file.c_str(), READONLY, &status)) fits_error("not a readable FITS file");
  const LONGLONG size = fp->Fptr->logfilesize;
  int n = 0;
  if (fits_get_num_hdus(fp, &n, &status)) fits_error("FITS file is truncated");
  for (int i = 1; i <= n; ++i) {
    LONGLONG head = 0, data = 0, end = 0, naxis = 0, pcount = 0, gcount = 1, bitpix = 8, pixels = 1;
    if (fits_movabs_hdu(fp, i, nullptr, &status) || fits_get_hduaddrll(fp, &head, &data, &end, &status))
      fits_error("FITS file is truncated");
    int st = 0;
    auto key = [&](const std::string& k, LONGLONG dflt) {
      LONGLONG v = dflt;
      st = 0;
      if (fits_read_key_lnglng(fp, k.c_str(), &v, nullptr, &st)) v = dflt;
      return v;
    };
    bitpix = key("BITPIX", 8), naxis = key("NAXIS", 0), pcount = key("PCOUNT", 0), gcount = key("GCOUNT", 1);
    for (LONGLONG k = 1; k <= naxis; ++k) pixels *= key("NAXIS" + std::to_string(k), 0);
    const LONGLONG need = data + (naxis > 0 ? std::llabs(bitpix) / 8 * gcount * (pcount + pixels) : 0);
    if (need > size) {
      fits_close_file(fp, &status);
      fail("unreadable-fits", {{"file", file}, {"detail", "FITS file is truncated (" + std::to_string(size) +
                                                 " bytes decompressed, header promises " + std::to_string(need) + ")"}});
    }
  }
  fits_close_file(fp, &status);
}

Plist try_header(const std::string& file, int ext) {
  Plist p(cpl_propertylist_load(file.c_str(), ext));
  if (cpl_error_get_code() != CPL_ERROR_NONE) {
    std::string msg = cpl_error_get_message();
    cpl_error_reset();
    fail("unreadable-fits", {{"file", file}, {"detail", "not a readable FITS file (" + msg + ")"}});
  }
  return p;
}

// BSCALE and BZERO, when present, are finite numbers (as soxs_mflat.frames._check_scaling): with a string
// there the recipe went on and wrote products.
void check_scaling(const cpl_propertylist* h, const std::string& file) {
  for (const char* k : {"BSCALE", "BZERO"}) {
    if (!has(h, k)) continue;
    const cpl_type t = cpl_propertylist_get_type(h, k);
    const bool number = t == CPL_TYPE_INT || t == CPL_TYPE_LONG || t == CPL_TYPE_LONG_LONG || t == CPL_TYPE_FLOAT ||
                        t == CPL_TYPE_DOUBLE;
    if (number && std::isfinite(get_num(h, k, 0))) continue;
    const std::string v = t == CPL_TYPE_STRING ? "'" + std::string(cpl_propertylist_get_string(h, k)) + "'" : text(h, k);
    fail("unreadable-fits", {{"file", file}, {"detail", "not a readable FITS file (" + std::string(k) + " = " + v +
                                               " is not a finite number: the pixel values cannot be scaled)"}});
  }
}

// The header and image HDU of a frame: the primary, or HDU 1 of a tile-compressed file whose primary
// is empty (fpack's layout), with the primary's cards it lacks.
void read_frame_header(In& f) {
  struct stat st;
  if (stat(f.file.c_str(), &st) != 0) fail("missing-file", {{"file", f.file}, {"hint", ""}});
  if (compressed(f.file)) check_complete_compressed(f.file);
  else check_complete(f.file);
  Plist h0 = try_header(f.file, 0);
  f.hdu = 0;
  if (get_num(h0.get(), "NAXIS", 0) == 0 && cpl_fits_count_extensions(f.file.c_str()) >= 1) {
    Plist h1 = try_header(f.file, 1);
    if (has(h1.get(), "ZIMAGE") && cpl_propertylist_get_type(h1.get(), "ZIMAGE") == CPL_TYPE_BOOL &&
        cpl_propertylist_get_bool(h1.get(), "ZIMAGE")) {
      for (cpl_size i = 0; i < cpl_propertylist_get_size(h0.get()); ++i) {
        const cpl_property* p = cpl_propertylist_get_const(h0.get(), i);
        if (!has(h1.get(), cpl_property_get_name(p))) cpl_propertylist_append_property(h1.get(), p);
      }
      f.hdu = 1;
      h0 = std::move(h1);
    }
  }
  cpl_error_reset();
  check_scaling(h0.get(), f.file);
  f.hdr = std::move(h0);
}

std::string names(const std::vector<In*>& v) {
  std::string s;
  for (const In* f : v) s += (s.empty() ? "" : ", ") + f->name;
  return s;
}

// The rule fails when the frames give more than one key; detail "key: names; key: names".
void unique(const std::vector<In*>& frames, const std::function<std::string(const In&)>& key, const std::string& rule,
            Fields extra = {}) {
  std::vector<std::pair<std::string, std::vector<In*>>> groups;
  for (In* f : frames) {
    const std::string k = key(*f);
    auto it = std::find_if(groups.begin(), groups.end(), [&](auto& g) { return g.first == k; });
    if (it == groups.end()) groups.push_back({k, {f}});
    else it->second.push_back(f);
  }
  if (groups.size() <= 1) return;
  std::string detail;
  for (auto& g : groups) detail += (detail.empty() ? "" : "; ") + g.first + ": " + names(g.second);
  extra.push_back({"detail", detail});
  fail(rule, extra);
}

std::vector<In*> of_kinds(Inputs& in, std::initializer_list<Kind> kinds) {
  std::vector<In*> out;
  for (auto& f : in.frames)
    if (std::find(kinds.begin(), kinds.end(), f.kind) != kinds.end()) out.push_back(&f);
  return out;
}

std::string all_names(Inputs& in) {
  std::vector<In*> v;
  for (auto& f : in.frames) v.push_back(&f);
  return names(v);
}

}  // namespace

std::string kind_name(Kind k) {
  for (int i = 0; i < soxs_gen::N_KINDS; ++i)
    if (kind_named(soxs_gen::KINDS[i].name) == k) return soxs_gen::KINDS[i].name;
  return "UNKNOWN";
}

double number(const In& f, const std::string& key, const char* what, double dflt, bool required) {
  const cpl_propertylist* h = f.hdr.get();
  auto bad = [&](const std::string& value, const std::string& problem) {
    fail("bad-keyword", {{"file", f.file}, {"key", key}, {"value", value}, {"problem", problem}});
  };
  if (!has(h, key.c_str())) {
    if (required) bad("(missing)", "is required");
    return dflt;
  }
  const cpl_type t = cpl_propertylist_get_type(h, key.c_str());
  if (t == CPL_TYPE_STRING) bad("'" + std::string(cpl_propertylist_get_string(h, key.c_str())) + "'", "is not a number");
  if (t == CPL_TYPE_BOOL) bad(cpl_propertylist_get_bool(h, key.c_str()) ? "True" : "False", "is not a number");
  if (t != CPL_TYPE_INT && t != CPL_TYPE_LONG && t != CPL_TYPE_LONG_LONG && t != CPL_TYPE_FLOAT && t != CPL_TYPE_DOUBLE)
    bad("?", "is not a number");
  const double v = get_num(h, key.c_str(), 0);
  const auto& d = value_def(what);
  if (!std::isfinite(v)) bad(fmt_g(v), "is not finite");
  if (d.is_int && v != std::trunc(v)) bad(fmt_g(v), "is not an integer");
  if (v < d.min || v > d.max || (d.positive && v <= 0))
    bad(fmt_g(v), "is outside the accepted range (" + (d.positive ? "> 0 and <= " + fmt_g(d.max)
                                                                   : "in [" + fmt_g(d.min) + ", " + fmt_g(d.max) + "]") + ")");
  return v;
}

double detector_value(const In& f, const soxs_gen::ArmDef& arm, const char* what, double dflt) {
  for (int i = 0; i < soxs_gen::N_DET_KEYS; ++i) {
    const auto& k = soxs_gen::DET_KEYS[i];
    if (std::string(k.instrument) != arm.instrument || std::string(k.what) != what) continue;
    for (const char* key : k.keys)
      if (*key && has(f.hdr.get(), key)) return number(f, key, what, dflt);
  }
  return dflt;
}

static bool has_detector_key(const soxs_gen::ArmDef& arm, const char* what) {
  for (int i = 0; i < soxs_gen::N_DET_KEYS; ++i)
    if (std::string(soxs_gen::DET_KEYS[i].instrument) == arm.instrument && std::string(soxs_gen::DET_KEYS[i].what) == what)
      return *soxs_gen::DET_KEYS[i].keys[0] != 0;
  return false;
}

// Binning with its own guard: every division by it (science region, geometry) is safe whatever the
// contract's ranges say; a value that is not a whole number >= 1 (and within the contract's maximum) is
// bad-keyword, never a SIGFPE.
void binning(const In& f, const soxs_gen::ArmDef& arm, int& bx, int& by) {
  bx = by = 1;
  if (arm.nir_like) return;
  for (auto [out, what] : {std::pair<int*, const char*>{&bx, "binx"}, {&by, "biny"}}) {
    const double v = detector_value(f, arm, what, 1), hi = std::min(value_def(what).max, 1024.0);
    if (!(v >= 1 && v <= hi && v == std::floor(v))) {
      std::string key = what;
      for (int i = 0; i < soxs_gen::N_DET_KEYS; ++i)
        if (std::string(soxs_gen::DET_KEYS[i].instrument) == arm.instrument && key == soxs_gen::DET_KEYS[i].what)
          key = soxs_gen::DET_KEYS[i].keys[0];
      fail("bad-keyword", {{"file", f.file}, {"key", key}, {"value", fmt_g(v)},
                           {"problem", "is not a binning (a whole number in [1, " + fmt_g(hi) + "])"}});
    }
    *out = static_cast<int>(v);
  }
}

// As soxs_mflat.keywords.gain_e_per_adu: CONAD (SOXS: max(CONAD, GAIN)), else the nominal gain.
double gain_of(const In& f, const soxs_gen::ArmDef& arm) {
  const double conad = detector_value(f, arm, "conad", NAN);
  if (std::isnan(conad)) return arm.gain;
  return has_detector_key(arm, "gain") ? std::max(conad, detector_value(f, arm, "gain", 0.0)) : conad;
}

namespace {

const soxs_gen::ArmDef* find_arm(const In& f) {
  const std::string inst = text(f.hdr.get(), "INSTRUME"), arm = text(f.hdr.get(), "ESO SEQ ARM");
  std::string supported;
  for (int i = 0; i < soxs_gen::N_ARMS; ++i) {
    if (inst == soxs_gen::ARMS[i].instrument && arm == soxs_gen::ARMS[i].arm) return &soxs_gen::ARMS[i];
    supported += (supported.empty() ? "" : ", ") + std::string(soxs_gen::ARMS[i].instrument) + "/" + soxs_gen::ARMS[i].arm;
  }
  fail("unknown-arm", {{"file", f.file}, {"instrument", inst}, {"arm", arm}, {"supported", supported}});
}

const soxs_gen::ArmFlats& arm_flats(const soxs_gen::ArmDef& arm) {
  for (int i = 0; i < soxs_gen::N_ARM_FLATS; ++i)
    if (std::string(soxs_gen::ARM_FLATS[i].instrument) == arm.instrument && std::string(soxs_gen::ARM_FLATS[i].arm) == arm.arm)
      return soxs_gen::ARM_FLATS[i];
  throw std::logic_error(std::string("no flat kinds for ") + arm.instrument + " " + arm.arm);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

void refuse_duplicates(Inputs& in);

// Frames read one by one: header, kind, SOF tag, group; then duplicates (as frames.load_frames).
void read_frames(Inputs& in, cpl_frameset* frames) {
  const cpl_size n = cpl_frameset_get_size(frames);
  if (n == 0) fail("no-input", {{"where", "the SOF"}});
  if (n > soxs_gen::MAX_FRAMES)
    fail("too-many-frames", {{"where", "the SOF"}, {"n", std::to_string(n)}, {"max", std::to_string(soxs_gen::MAX_FRAMES)}});
  in.frames.reserve(n);
  for (cpl_size i = 0; i < n; ++i) {
    cpl_frame* fr = cpl_frameset_get_position(frames, i);
    In f{fr, cpl_frame_get_filename(fr), cpl_frame_get_tag(fr) ? cpl_frame_get_tag(fr) : "", Kind::UNKNOWN, nullptr, 0};
    f.name = f.file.substr(f.file.find_last_of('/') + 1);
    read_frame_header(f);
    f.kind = classify_header(f.hdr.get());
    const auto tags = accepted_tags(f);
    if (!tags.empty() && std::find(tags.begin(), tags.end(), upper_trim(f.tag)) == tags.end()) {
      std::string acc;
      for (auto& t : tags) acc += (acc.empty() ? "" : ", ") + t;
      fail("tag-mismatch", {{"file", f.file}, {"tag", f.tag}, {"expected", tags[0]}, {"accepted", acc}});
    }
    cpl_frame_set_group(fr, is_raw(f.kind) ? CPL_FRAME_GROUP_RAW : CPL_FRAME_GROUP_CALIB);
    in.frames.push_back(std::move(f));
  }
  refuse_duplicates(in);
}

// The same file twice (resolved path) or two byte-identical files, as frames._refuse_duplicates: hashed
// whole only when their sizes and their first 64 kB (the headers) agree, which flats of one set never do.
void refuse_duplicates(Inputs& in) {
  constexpr size_t kHead = 1 << 16;
  std::map<off_t, int> sizes;
  for (const auto& f : in.frames) {
    struct stat st;
    if (stat(f.file.c_str(), &st) == 0) ++sizes[st.st_size];
  }
  std::map<std::string, int> heads;
  std::map<const In*, std::string> head_of;
  for (const auto& f : in.frames) {
    struct stat st;
    if (stat(f.file.c_str(), &st) != 0 || sizes[st.st_size] < 2) continue;
    const std::string h = file_bytes(f.file, std::min<size_t>(kHead, static_cast<size_t>(st.st_size)));
    head_of[&f] = std::to_string(std::hash<std::string>{}(h)) + ":" + std::to_string(st.st_size);
    ++heads[head_of[&f]];
  }
  std::map<std::string, const In*> paths, bytes;
  for (const auto& f : in.frames) {
    char* real = realpath(f.file.c_str(), nullptr);
    const std::string rp = real ? real : f.file;
    std::free(real);
    struct stat st;
    std::string digest;
    if (head_of.count(&f) && heads[head_of[&f]] > 1 && stat(f.file.c_str(), &st) == 0) {
      const std::string content = file_bytes(f.file, static_cast<size_t>(st.st_size));
      digest = std::to_string(std::hash<std::string>{}(content)) + ":" + std::to_string(content.size());
    }
    for (auto* m : {&paths, &bytes}) {
      const std::string& k = m == &paths ? rp : digest;
      if (k.empty()) continue;
      if (m->count(k))
        fail("duplicate-input", {{"file", f.file}, {"how", m == &paths ? "the same file" : "identical bytes"},
                                 {"other", (*m)[k]->file}});
      (*m)[k] = &f;
    }
  }
}

// Numeric keys typed and in range (EXPTIME required on raw frames), MJD-OBS kept.
void check_values(Inputs& in) {
  const auto required = split(soxs_gen::EXPTIME_REQUIRED);
  for (auto& f : in.frames) {
    const bool req = std::find(required.begin(), required.end(), kind_name(f.kind)) != required.end();
    number(f, "EXPTIME", "EXPTIME", 0, req);
    f.mjd = number(f, "MJD-OBS", "MJD-OBS", 0);
  }
}

std::string shape_key(const In& f) {   // NAXIS2 x NAXIS1 of the image (ZNAXISn in a tile-compressed HDU)
  const std::string z = f.hdu == 1 ? "Z" : "";
  const double n = get_num(f.hdr.get(), (z + "NAXIS").c_str(), 0);
  if (n != 2)
    fail("shape", {{"file", f.file}, {"detail", "the image has " + fmt_g(n) + " axes; a 2-D image is needed"}});
  return "(" + fmt_g(get_num(f.hdr.get(), (z + "NAXIS2").c_str(), 0)) + ", " +
         fmt_g(get_num(f.hdr.get(), (z + "NAXIS1").c_str(), 0)) + ")";
}

void detector_rules(Inputs& in, const soxs_gen::ArmDef& arm) {
  auto det = of_kinds(in, {Kind::FLAT, Kind::DFLAT, Kind::QFLAT, Kind::MASTER_BIAS, Kind::MASTER_DARK, Kind::LAMPOFF});
  auto with_bpm = det;
  for (In* f : of_kinds(in, {Kind::BPM})) with_bpm.push_back(f);
  // frame order as the Python front end lists them: detector frames in SOF order, then bad-pixel maps
  std::stable_sort(with_bpm.begin(), with_bpm.end(), [](In* a, In* b) { return (a->kind == Kind::BPM) < (b->kind == Kind::BPM); });
  unique(with_bpm, [&](const In& f) { int bx, by; binning(f, arm, bx, by); return "(" + std::to_string(bx) + ", " +
                                       std::to_string(by) + ")"; }, "mixed-binning");
  std::string readout_key;
  for (int i = 0; i < soxs_gen::N_DET_KEYS; ++i)
    if (std::string(soxs_gen::DET_KEYS[i].instrument) == arm.instrument && std::string(soxs_gen::DET_KEYS[i].what) == "readout")
      readout_key = soxs_gen::DET_KEYS[i].keys[0];
  unique(det, [&](const In& f) { return text(f.hdr.get(), readout_key); }, "mixed-readout");
  const double scale = std::pow(10.0, soxs_gen::GAIN_DECIMALS);
  unique(det, [&](const In& f) { return fmt_g(std::round(gain_of(f, arm) * scale) / scale); }, "mixed-gain");
  unique(det, [&](const In& f) { double r = detector_value(f, arm, "ron", NAN); return std::isnan(r) ? "None" : fmt_g(r); },
         "mixed-ron");
}

void flat_rules(Inputs& in, const soxs_gen::ArmDef& arm) {
  auto flats = of_kinds(in, {Kind::FLAT, Kind::DFLAT, Kind::QFLAT});
  auto raws = flats;
  for (In* f : of_kinds(in, {Kind::LAMPOFF})) raws.push_back(f);
  unique(raws, shape_key, "mixed-shape");
  const auto& af = arm_flats(arm);
  unique(flats, [&](const In& f) { return text(f.hdr.get(), af.slit_key); }, "mixed-slit");
  const auto want = split(af.flats);
  std::vector<std::string> have;
  for (In* f : flats) {
    const std::string k = kind_name(f->kind);
    if (std::find(want.begin(), want.end(), k) == want.end()) {
      std::string w;
      for (auto& x : want) w += (w.empty() ? "" : " and ") + x;
      fail("flat-type", {{"file", f->file}, {"instrument", arm.instrument}, {"arm", arm.arm}, {"want", w}, {"have", k}});
    }
    if (std::find(have.begin(), have.end(), k) == have.end()) have.push_back(k);
  }
  if (have.size() != want.size()) {
    std::sort(have.begin(), have.end());
    std::string h;
    for (auto& x : have) h += (h.empty() ? "" : ", ") + x;
    fail("uvb-lamps", {{"have", h}, {"files", names(flats)}});
  }
  for (const auto& k : have) {
    std::vector<In*> fl;
    for (In* f : flats) if (kind_name(f->kind) == k) fl.push_back(f);
    double lo = 1e308, hi = -1e308;
    for (In* f : fl) { double t = number(*f, "EXPTIME", "EXPTIME", 0); lo = std::min(lo, t); hi = std::max(hi, t); }
    if (hi - lo > soxs_gen::EXPTIME_TOL_S)
      unique(fl, [](const In& f) { return fmt_g(std::round(number(f, "EXPTIME", "EXPTIME", 0) * 1000) / 1000); },
             "mixed-exptime", {{"kind", k}});
  }
}

void calibration_rules(Inputs& in, const soxs_gen::ArmDef& arm) {
  const std::string a = arm.arm;
  if (!arm.nir_like && in.by[Kind::MASTER_BIAS].empty())
    fail("missing-bias", {{"instrument", arm.instrument}, {"arm", a}, {"files", all_names(in)}});
  if (arm.nir_like && in.by[Kind::MASTER_DARK].empty() && in.by[Kind::LAMPOFF].empty())
    fail("missing-dark", {{"arm", a}, {"files", all_names(in)}});
  const auto& tabs = in.by[Kind::ORDER_TAB];
  if (tabs.empty()) fail("missing-order-table", {{"arm", a}, {"files", all_names(in)}});
  std::vector<Kind> lamps;
  for (In* f : of_kinds(in, {Kind::FLAT, Kind::DFLAT, Kind::QFLAT}))
    if (std::find(lamps.begin(), lamps.end(), f->kind) == lamps.end()) lamps.push_back(f->kind);
  for (Kind k : lamps) {
    std::string want;
    for (int i = 0; i < soxs_gen::N_ORDER_OBJECTS && lamps.size() > 1; ++i)
      if (kind_name(k) == soxs_gen::ORDER_OBJECTS[i].kind) want = soxs_gen::ORDER_OBJECTS[i].object;
    In* pick = nullptr;
    for (In* t : tabs)
      if (!pick && (want.empty() || text(t->hdr.get(), "OBJECT") == want)) pick = t;
    if (!pick) fail("uvb-order-tables", {{"lamp", kind_name(k)}, {"files", names(tabs)}});
    in.order_tab[k] = pick;
  }
}

}  // namespace

Inputs classify(cpl_frameset* frames) {
  Inputs in;
  read_frames(in, frames);
  std::vector<In*> unknown = of_kinds(in, {Kind::UNKNOWN});
  if (!unknown.empty()) fail("unknown-frame", {{"files", names(unknown)}});
  check_values(in);
  std::vector<In*> used;
  for (auto& f : in.frames) if (f.kind != Kind::SPECTRAL_FORMAT_TAB) used.push_back(&f);
  unique(used, [](const In& f) { return text(f.hdr.get(), "INSTRUME"); }, "mixed-instruments");
  unique(used, [](const In& f) { return text(f.hdr.get(), "ESO SEQ ARM"); }, "mixed-arms");
  in.arm = find_arm(in.frames[0]);
  for (auto& f : in.frames) in.by[f.kind].push_back(&f);
  auto flats = of_kinds(in, {Kind::FLAT, Kind::DFLAT, Kind::QFLAT});
  if (flats.empty()) fail("no-flats", {{"files", all_names(in)}});
  detector_rules(in, *in.arm);
  flat_rules(in, *in.arm);
  calibration_rules(in, *in.arm);
  binning(*flats[0], *in.arm, in.binx, in.biny);
  for (Kind k : {Kind::FLAT, Kind::DFLAT, Kind::QFLAT})
    if (!in.by[k].empty() && in.by[k].size() < static_cast<size_t>(soxs_gen::MIN_FLATS_WARN))
      cpl_msg_warning("soxs_mflat", "only %zu %s frame(s) (%s); at least %d are needed for clipping", in.by[k].size(),
                      kind_name(k).c_str(), names(in.by[k]).c_str(), soxs_gen::MIN_FLATS_WARN);
  return in;
}

}  // namespace soxs_cpl
