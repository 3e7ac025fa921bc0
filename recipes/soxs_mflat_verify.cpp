// Classification and verification of the plugin's inputs: the rules, ids, messages and outcomes of the
// input contract (data/contract/inputs.yaml, generated into soxs_mflat_generated.h), in the order the
// Python front end (frames.py, verify.py) applies them, so that one bad input gives one rule in both.
#include <fitsio.h>
#include <zlib.h>

extern "C" int ffgbyt(fitsfile* fptr, LONGLONG nbytes, void* buffer, int* status);   // CFITSIO, fitsio2.h
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "soxs_mflat_inputs.hpp"
#include "soxs_mflat_md5.hpp"
#include "soxs_mflat_output.hpp"

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

// A file's bytes in one read (an istreambuf_iterator copies a byte at a time: ~0.2 s for 5 raw flats).
std::string file_bytes(const std::string& path, size_t size) {
  std::ifstream in(path, std::ios::binary);
  std::string out(size, '\0');
  in.read(&out[0], static_cast<std::streamsize>(size));
  out.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return out;
}

// The bytes of an input: the file itself, or the memory copy CFITSIO decompressed a whole-file compressed
// (.fits.gz, .fits.Z) input into, read through CFITSIO's byte interface.
struct Bytes {
  size_t size = 0;
  bool decompressed = false;
  std::ifstream in;
  fitsfile* fp = nullptr;
  ~Bytes() { int st = 0; if (fp) fits_close_file(fp, &st); }
  size_t read(size_t pos, size_t n, char* out) {
    if (pos >= size) return 0;
    n = std::min(n, size - pos);
    if (fp) {
      int st = 0;
      if (ffmbyt(fp, static_cast<LONGLONG>(pos), 0, &st) || ffgbyt(fp, static_cast<LONGLONG>(n), out, &st)) return 0;
      return n;
    }
    in.clear();
    in.seekg(static_cast<std::streamoff>(pos));
    in.read(out, static_cast<std::streamsize>(n));
    return static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0));
  }
};

[[noreturn]] void unreadable(const std::string& file, const std::string& detail) {
  fail("unreadable-fits", {{"file", file}, {"detail", detail}});
}

// A .gz file inflated once more with zlib, as frames.decompress reads it: a stream that ends early is
// truncated, and bytes other than NUL padding after the stream's end are refused (Python's messages).
void gzip_check(const std::string& file) {
  std::ifstream raw(file, std::ios::binary);
  unsigned char magic[2] = {0, 0};
  raw.read(reinterpret_cast<char*>(magic), 2);
  if (!(magic[0] == 0x1f && magic[1] == 0x8b)) return;
  raw.seekg(0);
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) unreadable(file, "not a readable FITS file (zlib failed to start)");
  std::vector<unsigned char> in(1 << 16), out(1 << 18);
  size_t produced = 0;
  int rc = Z_OK;
  bool trailing = false;
  while (rc != Z_STREAM_END) {
    raw.read(reinterpret_cast<char*>(in.data()), static_cast<std::streamsize>(in.size()));
    z.next_in = in.data();
    z.avail_in = static_cast<uInt>(raw.gcount());
    if (z.avail_in == 0) break;   // the file ended first
    do {
      z.next_out = out.data();
      z.avail_out = static_cast<uInt>(out.size());
      rc = inflate(&z, Z_NO_FLUSH);
      produced += out.size() - z.avail_out;
    } while (rc == Z_OK && z.avail_out == 0);
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) break;
  }
  if (rc == Z_STREAM_END) {   // what follows the stream: NUL padding only
    for (unsigned char* c = z.next_in; c < z.next_in + z.avail_in && !trailing; ++c) trailing = *c != 0;
    char c = 0;
    while (!trailing && raw.get(c)) trailing = c != 0;
  }
  const int final_rc = rc;
  const std::string zmsg = z.msg ? z.msg : "corrupt gzip data";
  inflateEnd(&z);
  if (final_rc == Z_STREAM_END && !trailing) return;
  if (final_rc == Z_STREAM_END)
    unreadable(file, "not a readable FITS file (bytes follow the end of its gzip stream, or the stream is not one "
                     "gzip member of " + std::to_string(produced) + " bytes)");
  if (final_rc == Z_OK || final_rc == Z_BUF_ERROR)
    unreadable(file, "FITS file is truncated (the compressed stream ends early: Compressed file ended before the "
                     "end-of-stream marker was reached)");
  unreadable(file, "not a readable FITS file (" + zmsg + ")");
}

// Open `file` as bytes; a whole-file compressed one is decompressed by CFITSIO (as for its pixels).
void open_bytes(const std::string& file, Bytes& b) {
  if (!compressed(file)) {
    b.in.open(file, std::ios::binary);
    struct stat st;
    if (!b.in || stat(file.c_str(), &st) != 0) unreadable(file, "not a readable FITS file (cannot open it)");
    b.size = static_cast<size_t>(st.st_size);
    return;
  }
  int status = 0;
  if (fits_open_file(&b.fp, file.c_str(), READONLY, &status)) {
    char msg[FLEN_STATUS] = "";
    fits_get_errstatus(status, msg);
    b.fp = nullptr;
    ffcmsg();
    unreadable(file, std::string("not a readable FITS file (") + msg + ")");
  }
  b.size = static_cast<size_t>(b.fp->Fptr->logfilesize);
  b.decompressed = true;
  // gzip: one stream that ends the file (as Python's gzip reads it: trailing NUL bytes aside); CFITSIO stops
  // at the end of the first stream, ignores what follows and reads a truncated stream without an error
  gzip_check(file);
}

// A header card's value text (comment removed, blanks trimmed); `key` without "HIERARCH "; false if absent.
struct Card { std::string key, value; bool has_value = false, closed = false; };   // closed: a string's end quote

Card parse_card(const char* c) {
  Card r;
  std::string s(c, 80);
  size_t vstart = std::string::npos;
  if (s.compare(0, 9, "HIERARCH ") == 0) {
    const size_t eq = s.find('=', 9);
    if (eq == std::string::npos) return r;
    r.key = s.substr(9, eq - 9);
    vstart = eq + 1;
  } else {
    r.key = s.substr(0, 8);
    if (s.compare(8, 2, "= ") == 0) vstart = 10;
  }
  r.key.erase(r.key.find_last_not_of(' ') + 1);
  r.key.erase(0, r.key.find_first_not_of(' '));
  if (vstart == std::string::npos) return r;
  r.has_value = true;
  std::string v = s.substr(vstart);
  size_t b = v.find_first_not_of(' ');
  if (b == std::string::npos) { r.value.clear(); return r; }
  if (v[b] == '\'') {   // a string: up to the closing quote ('' is a quote)
    size_t i = b + 1;
    for (; i < v.size(); ++i)
      if (v[i] == '\'') { if (i + 1 < v.size() && v[i + 1] == '\'') ++i; else break; }
    r.closed = i < v.size();   // a '' that ends the card is a quote inside the string, not its end
    r.value = v.substr(b, std::min(i + 1, v.size()) - b);
    return r;
  }
  const size_t slash = v.find('/', b);
  r.value = v.substr(b, slash == std::string::npos ? std::string::npos : slash - b);
  r.value.erase(r.value.find_last_not_of(' ') + 1);
  return r;
}

bool is_int_text(const std::string& v) {
  size_t i = (!v.empty() && (v[0] == '+' || v[0] == '-')) ? 1 : 0;
  if (i >= v.size()) return false;
  for (; i < v.size(); ++i) if (!std::isdigit(static_cast<unsigned char>(v[i]))) return false;
  return true;
}

bool is_number_text(const std::string& v) {   // FITS integer or real (E or D exponent)
  size_t i = (!v.empty() && (v[0] == '+' || v[0] == '-')) ? 1 : 0;
  bool digits = false;
  while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) ++i, digits = true;
  if (i < v.size() && v[i] == '.') {
    ++i;
    while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) ++i, digits = true;
  }
  if (!digits) return false;
  if (i < v.size() && std::strchr("EeDd", v[i])) {
    ++i;
    if (i < v.size() && (v[i] == '+' || v[i] == '-')) ++i;
    if (i >= v.size() || !std::isdigit(static_cast<unsigned char>(v[i]))) return false;
    while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) ++i;
  }
  return i == v.size();
}

// One header as the Python front end sees its structural keys: first occurrence of a key.
struct Header {
  std::map<std::string, std::string> v;   // key -> value text
  std::vector<std::pair<std::string, std::string>> invalid;   // cards whose value is not a FITS value
  std::string key_problem;   // the first keyword CPL cannot write, or given twice (soxs_mflat.headercards)
  std::pair<std::string, std::string> out_of_range;   // the first real a double cannot hold (CPL fails on it)
  std::string non_ascii;   // the first card with a byte that is not printable ASCII (headercards.non_ascii)
  std::map<std::string, std::string> seen;   // upper-case key -> its first value, as compared
  const std::string* get(const std::string& k) const { auto it = v.find(k); return it == v.end() ? nullptr : &it->second; }
  // the value as Python's repr of astropy's value shows it: 'text', True/False, numbers as written, None
  std::string repr(const std::string& k) const {
    const std::string* s = get(k);
    if (!s || s->empty()) return "None";
    if (*s == "T") return "True";
    if (*s == "F") return "False";
    if ((*s)[0] == '\'') {
      std::string t = s->substr(1, s->size() >= 2 ? s->size() - 2 : 0);
      for (size_t at = t.find("''"); at != std::string::npos; at = t.find("''", at + 1)) t.erase(at, 1);
      t.erase(t.find_last_not_of(' ') + 1);
      return "'" + t + "'";
    }
    return *s;
  }
  // an integer of any length, saturated at +-2^62 (Python's ints have no bound: a 20-digit NAXIS1 is a count)
  static long long saturated(const std::string& t) {
    const bool neg = t[0] == '-';
    long long v = 0;
    for (size_t i = (t[0] == '-' || t[0] == '+') ? 1 : 0; i < t.size(); ++i)
      v = std::min(BIG, v * 10 + (t[i] - '0'));
    return neg ? -v : v;
  }
  static constexpr long long BIG = 1LL << 62;
  bool count(const std::string& k, long long& out) const {   // a non-negative integer
    const std::string* s = get(k);
    if (!s || !is_int_text(*s) || (*s)[0] == '-') return false;
    out = saturated(*s);
    return true;
  }
  bool integer(const std::string& k, long long& out) const {
    const std::string* s = get(k);
    if (!s || !is_int_text(*s)) return false;
    out = saturated(*s);
    return true;
  }
  std::string str(const std::string& k) const {   // a string value, trimmed and upper case; "" otherwise
    const std::string r = repr(k);
    return r.size() >= 2 && r[0] == '\'' ? upper_trim(r.substr(1, r.size() - 2)) : "";
  }
};

// A real value that a double cannot hold (soxs_mflat.headercards.out_of_range): beyond DBL_MAX, or non-zero
// and below DBL_MIN before rounding; CFITSIO refuses the whole header ("Bad file format").
bool beyond_double(const std::string& v) {
  if (v.empty() || !is_number_text(v) || is_int_text(v)) return false;
  std::string t = v;
  std::replace(t.begin(), t.end(), 'D', 'E');
  std::replace(t.begin(), t.end(), 'd', 'e');
  errno = 0;   // ERANGE: below DBL_MIN before rounding (4.9E-324, 1.0D-400, 2.2250738585072012E-308), as CFITSIO
  const double x = std::strtod(t.c_str(), nullptr);   // reads it
  return errno == ERANGE || std::isinf(x);
}

// A card's value as written, for comparing: a string up to its closing quote without its trailing blanks.
std::string value_text(const Card& card) {
  const std::string& v = card.value;
  if (v.empty() || v[0] != '\'') return v;
  std::string inner = v.substr(1, card.closed ? v.size() - 2 : std::string::npos);
  inner.erase(inner.find_last_not_of(' ') + 1);
  return "'" + inner + "'";
}

// Two values of one keyword the same (soxs_mflat.headercards.same_value): as written, or as numbers
// (1.0, 1.00 and 1.0D0 are one value; a repeated card rewritten by another tool need not be refused).
bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  if (!is_number_text(a) || !is_number_text(b)) return false;
  auto num = [](std::string t) {
    std::replace(t.begin(), t.end(), 'D', 'E');
    std::replace(t.begin(), t.end(), 'd', 'e');
    return std::strtod(t.c_str(), nullptr);
  };
  return num(a) == num(b);
}

// Why a keyword cannot be trusted (soxs_mflat.headercards.keyword_problem, the same words), or "": a character
// CPL refuses to write into a product (the plugin failed after all the processing), or a second value.
std::string keyword_problem(const Card& card, const char* raw, std::map<std::string, std::string>& seen) {
  const bool hierarch = std::strncmp(raw, "HIERARCH ", 9) == 0;
  for (char ch : card.key) {
    const bool ok = std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || (hierarch && ch == ' ');
    if (!ok)
      return "the keyword '" + card.key + "' has a character that FITS keywords may not have ('" + std::string(1, ch) +
             "'; only letters, digits, '-', '_' and, after HIERARCH, blanks)";
  }
  std::string k = card.key;
  std::transform(k.begin(), k.end(), k.begin(), ::toupper);
  const std::string value = value_text(card);
  const auto [it, fresh] = seen.emplace(k, value);
  if (!fresh && !same_value(it->second, value))
    return "the keyword " + card.key + " is given twice with different values (" + it->second + " and " + value +
           "): the recipe cannot tell which one holds";
  return "";
}

// The header at `pos`: its cards up to END, and the position after its last block (false: no END card).
// Where a card holds a byte that is not printable ASCII: "card N (KEY) holds the byte 0xXX", else "".
std::string non_ascii_card(const char* c, int number) {
  for (int i = 0; i < 80; ++i) {
    const unsigned char x = static_cast<unsigned char>(c[i]);
    if (x >= 32 && x <= 126) continue;
    const std::string text(c, 80);
    const size_t eq = text.find('=', 9);
    std::string key = text.compare(0, 9, "HIERARCH ") == 0 && eq != std::string::npos ? text.substr(9, eq - 9)
                                                                                       : text.substr(0, 8);
    key.erase(0, key.find_first_not_of(' '));
    key.erase(key.find_last_not_of(' ') + 1);
    for (char& ch : key)
      if (static_cast<unsigned char>(ch) < 32 || static_cast<unsigned char>(ch) > 126) ch = '?';
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", x);
    return "card " + std::to_string(number) + " (" + key + ") holds the byte " + hex;
  }
  return "";
}

bool read_header_at(Bytes& b, size_t pos, Header& h, size_t& after) {
  std::vector<char> block(2880);
  for (int number = 1;;) {
    if (b.read(pos, 2880, block.data()) != 2880) return false;
    pos += 2880;
    for (size_t at = 0; at < 2880; at += 80, ++number) {
      const char* c = &block[at];
      if (std::strncmp(c, "END", 3) == 0 && std::string(c + 3, 77).find_first_not_of(' ') == std::string::npos) {
        after = pos;
        return true;
      }
      if (h.non_ascii.empty()) h.non_ascii = non_ascii_card(c, number);
      const Card card = parse_card(c);
      if (!card.has_value || card.key.empty()) continue;
      if (card.key == "COMMENT" || card.key == "HISTORY" || card.key == "CONTINUE") continue;
      const std::string& v = card.value;
      const bool ok = v.empty() || (v[0] == '\'' && card.closed) || v == "T" || v == "F" ||
                      v[0] == '(' || is_number_text(v);
      if (!ok) h.invalid.push_back({card.key, v});
      if (ok && h.out_of_range.first.empty() && beyond_double(v)) h.out_of_range = {card.key, v};
      if (h.key_problem.empty()) h.key_problem = keyword_problem(card, c, h.seen);
      h.v.emplace(card.key, v);
    }
  }
}

// The size of an HDU's data unit (FITS 4.0, section 4.4.1), without padding; saturated far beyond any file.
unsigned __int128 data_bytes(const Header& h) {
  long long n = 0, bitpix = 8, gcount = 1, pcount = 0, ax = 0;
  h.count("NAXIS", n);
  if (n == 0) return 0;
  h.integer("BITPIX", bitpix);
  h.count("GCOUNT", gcount);
  h.count("PCOUNT", pcount);
  const unsigned __int128 cap = static_cast<unsigned __int128>(1) << 120;
  unsigned __int128 count = 1;
  const bool groups = h.repr("GROUPS") == "True" && h.count("NAXIS1", ax) && ax == 0;
  for (long long i = groups ? 2 : 1; i <= n; ++i) {
    ax = 0;
    h.count("NAXIS" + std::to_string(i), ax);
    const unsigned __int128 a = static_cast<unsigned __int128>(ax);   // <= 2^62: saturate, never wrap
    count = (a != 0 && count > cap / a) ? cap : std::min(cap, count * a);
  }
  // every factor <= 2^62 and count <= 2^120: 8 * 2^62 * (2^62 + 2^120) would wrap 128 bits, so saturate
  const unsigned __int128 per_group = static_cast<unsigned __int128>(pcount) + count;   // <= 2^121
  const unsigned __int128 g = static_cast<unsigned __int128>(gcount) * static_cast<unsigned __int128>(std::llabs(bitpix) / 8);
  return (g != 0 && per_group > cap / g) ? cap : std::min(cap, per_group * g);
}

std::string u128(unsigned __int128 v) {
  std::string s;
  do { s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10))); v /= 10; } while (v);
  return s;
}

// The mandatory keywords of a primary header or extension (FITS 4.0, section 4.4.1), with the checks, order
// and messages of the Python front end (frames._check_structure); then every card's value must be a FITS one
// (an unquoted NaN is none: CPL refuses the whole header).
void check_structure(const std::string& file, const Header& h, int index) {
  auto bad = [&](const std::string& detail) {
    unreadable(file, "not a readable FITS file (HDU " + std::to_string(index) + ": " + detail + ")");
  };
  if (index == 0 && h.repr("SIMPLE") != "True")
    bad("SIMPLE = " + h.repr("SIMPLE") + ": the file says it does not conform to FITS");
  std::string kind = "PRIMARY";
  if (index > 0) {
    kind = h.str("XTENSION");
    if (kind != "IMAGE" && kind != "TABLE" && kind != "BINTABLE")
      bad("XTENSION = " + h.repr("XTENSION") + " is not IMAGE, TABLE or BINTABLE");
  }
  long long bitpix = 0;
  if (!h.integer("BITPIX", bitpix) || !(bitpix == 8 || bitpix == 16 || bitpix == 32 || bitpix == 64 ||
                                        bitpix == -32 || bitpix == -64))
    bad("BITPIX = " + h.repr("BITPIX") + " is not one of 8, 16, 32, 64, -32, -64");
  long long n = 0, v = 0;
  const bool n_ok = !h.get("NAXIS") || h.count("NAXIS", n);
  std::vector<std::string> keys = {"NAXIS"};
  if (n_ok && h.get("NAXIS"))
    for (long long i = 1; i <= std::min(n, 999LL); ++i) keys.push_back("NAXIS" + std::to_string(i));
  keys.push_back("PCOUNT");
  keys.push_back("GCOUNT");
  for (size_t k = 0; k < keys.size(); ++k) {
    const bool axis = k > 0 && keys[k] != "PCOUNT" && keys[k] != "GCOUNT";
    const std::string* s = h.get(keys[k]);
    if ((s || axis) && !h.count(keys[k], v)) {
      if (!s) bad(keys[k] + " is missing");
      bad(keys[k] + " = " + h.repr(keys[k]) + " is " + (is_int_text(*s) ? "negative" : "not an integer"));
    }
  }
  if (!n_ok || n > 999) bad("NAXIS = " + h.repr("NAXIS") + " is not in 0..999");
  long long pc = 0, gc = 1, tf = 0;
  if (kind == "IMAGE" && ((h.get("PCOUNT") && (h.count("PCOUNT", pc), pc != 0)) ||
                          (h.get("GCOUNT") && (h.count("GCOUNT", gc), gc != 1))))
    bad("an image extension needs PCOUNT = 0 and GCOUNT = 1 (has " + h.repr("PCOUNT") + ", " + h.repr("GCOUNT") + ")");
  if ((kind == "TABLE" || kind == "BINTABLE") && !(bitpix == 8 && n == 2 && h.count("TFIELDS", tf) && tf <= 999))
    bad("a " + kind + " extension needs BITPIX = 8, NAXIS = 2 and TFIELDS (has " + std::to_string(bitpix) + ", " +
        std::to_string(n) + ", " + h.repr("TFIELDS") + ")");
  if (!h.non_ascii.empty()) bad(h.non_ascii + "; a FITS header holds printable ASCII only");
  if (!h.invalid.empty())
    bad(h.invalid[0].first + " = " + h.invalid[0].second + " is not a FITS value (a number, T/F or a quoted string)");
  if (!h.out_of_range.first.empty())
    bad(h.out_of_range.first + " = " + h.out_of_range.second + " is beyond what a double holds, "
        "2.2250738585072014e-308 to 1.7976931348623157e+308");
  if (!h.key_problem.empty())
    fail("header-keyword", {{"file", file}, {"hdu", std::to_string(index)}, {"detail", h.key_problem}});
}

// Every HDU structurally sound and its data unit complete (the padding may be missing), walked header by
// header over the file's bytes (a whole-file compressed one's decompressed stream), as the Python front end
// (frames._check_complete): a header promising more data than the file holds is truncated, bytes after a
// data unit that are not an XTENSION header (NAXISn or BITPIX not matching the data written) are refused.
// Records each HDU's data unit (offset, padded size) for DATAMD5 and whether it is a tile-compressed image.
void check_complete(In& f) {
  const std::string& file = f.file;
  Bytes b;
  open_bytes(file, b);
  f.decompressed = b.decompressed;
  f.units.clear();
  f.tiled.clear();
  f.xtension.clear();
  const std::string what = std::to_string(b.size) + (b.decompressed ? " bytes decompressed" : " bytes");
  size_t offset = 0;
  for (int index = 0; offset < b.size; ++index) {
    if (index > 0) {
      char x[8] = {0};
      if (b.read(offset, 8, x) != 8 || std::strncmp(x, "XTENSION", 8) != 0) {
        // padding after the last HDU (frames._padding_to_the_end): NULs of any length, blanks under one record
        std::vector<char> rest(1 << 20);
        bool blank = true;
        size_t n_blank = 0;
        for (size_t at = offset; blank && at < b.size;) {
          const size_t got = b.read(at, rest.size(), rest.data());
          if (got == 0) break;
          blank = std::all_of(rest.begin(), rest.begin() + got, [](char c) { return c == '\0' || c == ' '; });
          n_blank += static_cast<size_t>(std::count(rest.begin(), rest.begin() + got, ' '));
          at += got;
        }
        if (blank && n_blank < 2880) return;
        if (blank)
          unreadable(file, "not a readable FITS file (bytes " + std::to_string(offset) + " on, after HDU " +
                           std::to_string(index - 1) + ", are whole 2880-byte records of blanks: such special records "
                           "are not read (astropy takes them for a header); remove them)");
        unreadable(file, "not a readable FITS file (bytes " + std::to_string(offset) + " on, after HDU " +
                         std::to_string(index - 1) + ", are not a FITS header: its NAXISn or BITPIX may not match "
                         "the data written)");
      }
    }
    Header h;
    size_t after = 0;
    if (!read_header_at(b, offset, h, after))   // the words of frames._header_bytes
      unreadable(file, "not a readable FITS file (the header has no END card (the file ends first))");
    check_structure(file, h, index);
    const unsigned __int128 end = static_cast<unsigned __int128>(after) + data_bytes(h);
    if (end > b.size)
      unreadable(file, "FITS file is truncated (" + what + ", header promises " +
                       (end < (static_cast<unsigned __int128>(1) << 62) ? u128(end) : "more than 4611686018427387904") +
                       ")");   // beyond 2^62 bytes as frames._check_complete words it
    const size_t e = static_cast<size_t>(end), padded = e + (2880 - e % 2880) % 2880;
    f.units.push_back({after, padded - after});
    f.tiled.push_back(h.repr("ZIMAGE") == "True");
    f.xtension.push_back(index == 0 ? "IMAGE" : h.str("XTENSION"));
    offset = padded;
  }
}

}  // namespace

std::string data_md5(const In& f) { return data_md5(f.file, f.units); }

std::string data_md5(const std::string& file, const std::vector<std::pair<size_t, size_t>>& units) {
  Bytes b;
  open_bytes(file, b);
  Md5 md5;
  std::vector<char> buf(1 << 20);
  for (const auto& [pos, span] : units)
    for (size_t done = 0; done < span;) {
      const size_t n = b.read(pos + done, std::min(buf.size(), span - done), buf.data());
      if (n == 0) break;   // the last unit's padding may be missing (as astropy reads it)
      md5.update(buf.data(), n);
      done += n;
    }
  return md5.hex();
}

namespace {

Plist try_header(const std::string& file, int ext) {
  cpl_error_reset();   // an error left by someone else (esorex's log file) is not this file's
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
  if (has(h, "BSCALE") && get_num(h, "BSCALE", 1) == 0)   // a constant image
    fail("unreadable-fits", {{"file", file}, {"detail", "not a readable FITS file (BSCALE = 0: every pixel would read "
                                                        "as BZERO)"}});
}

// The header and image HDU of a frame: the primary, or HDU 1 of a tile-compressed file whose primary
// is empty (fpack's layout), with the primary's cards it lacks.
void read_frame_header(In& f) {
  struct stat st;
  if (stat(f.file.c_str(), &st) != 0) fail("missing-file", {{"file", f.file}, {"hint", ""}});
  check_complete(f);
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

std::string supported_arms() {
  std::string supported;
  for (int i = 0; i < soxs_gen::N_ARMS; ++i)
    supported += (supported.empty() ? "" : ", ") + std::string(soxs_gen::ARMS[i].instrument) + "/" + soxs_gen::ARMS[i].arm;
  return supported;
}

const soxs_gen::ArmDef* find_arm(const In& f) {
  const std::string inst = text(f.hdr.get(), "INSTRUME"), arm = text(f.hdr.get(), "ESO SEQ ARM");
  for (int i = 0; i < soxs_gen::N_ARMS; ++i)
    if (inst == soxs_gen::ARMS[i].instrument && arm == soxs_gen::ARMS[i].arm) return &soxs_gen::ARMS[i];
  fail("unknown-arm", {{"file", f.file}, {"instrument", inst}, {"arm", arm}, {"supported", supported_arms()}});
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
void refuse_same_exposure(Inputs& in);

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
    // a SOF with CRLF line ends: esorex keeps the \r in the last column (the Python front end's splitlines not)
    const size_t keep = f.tag.find_last_not_of(" \t\r");
    if (keep + 1 != f.tag.size()) {
      f.tag.erase(keep == std::string::npos ? 0 : keep + 1);
      cpl_frame_set_tag(fr, f.tag.c_str());
    }
    f.name = f.file.substr(f.file.find_last_of('/') + 1);
    if (!std::all_of(f.name.begin(), f.name.end(), [](char c) { return c >= 0x20 && c <= 0x7e; }))
      fail("file-name", {{"file", f.file}});   // the products record it in PRO REC1 ... NAME (frames.load_frames)
    read_frame_header(f);
    f.kind = classify_header(f.hdr.get());
    if (is_raw(f.kind) && text(f.hdr.get(), "ESO SEQ ARM").empty())   // its tags name the arm (frames.load_frames)
      fail("unknown-arm", {{"file", f.file}, {"instrument", text(f.hdr.get(), "INSTRUME")}, {"arm", "(no ESO SEQ ARM)"},
                           {"supported", supported_arms()}});
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
  refuse_same_exposure(in);
}

// One exposure in two files (a raw frame and a compressed copy of it): the same ARCFILE when both raw frames
// have one, else the same DATE-OBS, within one instrument and arm (rule duplicate-input, as frames.same_exposure).
void refuse_same_exposure(Inputs& in) {
  std::vector<const In*> raws;
  for (const auto& f : in.frames)
    if (is_raw(f.kind)) raws.push_back(&f);
  auto value = [](const In* f, const char* k) {
    std::string v = get_str(f->hdr.get(), k);
    const auto b = v.find_first_not_of(" \t"), e = v.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
  };
  auto where = [](const In* f) { return text(f->hdr.get(), "INSTRUME") + "/" + text(f->hdr.get(), "ESO SEQ ARM"); };
  for (size_t i = 0; i < raws.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      if (where(raws[i]) != where(raws[j])) continue;   // the arms of one instrument expose at once
      const std::string a = value(raws[i], "ARCFILE"), b = value(raws[j], "ARCFILE");
      const char* key = !a.empty() && !b.empty() ? "ARCFILE" : "DATE-OBS";
      const std::string v = value(raws[i], key);
      if (!v.empty() && v == value(raws[j], key))
        fail("duplicate-input", {{"file", raws[i]->file}, {"how", std::string("the same exposure (") + key + " " + v + ")"},
                                 {"other", raws[j]->file}});
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
  if (arm.nir_like) {   // a 0-s dark or lamp-off frame cannot be scaled to the flats (verify._scalable_darks)
    double t_flat = 0;
    for (In* f : of_kinds(in, {Kind::FLAT, Kind::DFLAT, Kind::QFLAT})) t_flat = std::max(t_flat, number(*f, "EXPTIME", "EXPTIME", 0));
    std::vector<In*> darks = in.by[Kind::MASTER_DARK].empty() ? of_kinds(in, {Kind::LAMPOFF})
                                                              : std::vector<In*>{in.by[Kind::MASTER_DARK][0]};
    for (In* d : darks)
      if (has(d->hdr.get(), "EXPTIME")) {
        const double t = number(*d, "EXPTIME", "EXPTIME", 0);
        if (t <= 0 && 0 < t_flat - soxs_gen::EXPTIME_TOL_S)
          fail("bad-keyword", {{"file", d->file}, {"key", "EXPTIME"}, {"value", fmt_g(t)},
                               {"problem", "cannot be scaled to the flats' " + fmt_g(t_flat) +
                                           " s (a dark or lamp-off frame of 0 s is a bias)"}});
      }
  }
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

// the contract's sof.groups (inputs.yaml; not generated into the header: tests/test_inputs_esorex.py
// compares the message with the contract's list)
const char* const SOF_GROUPS[] = {"RAW", "CALIB", "PRODUCT"};

// Python's repr() of a str, for the sof-format message (frames.parse_sof: got {line!r}).
std::string py_repr(const std::string& s) {
  const char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string o(1, q);
  for (unsigned char c : s) {
    if (c == '\\' || c == static_cast<unsigned char>(q)) { o += '\\'; o += static_cast<char>(c); }
    else if (c == '\t') o += "\\t";
    else if (c == '\n') o += "\\n";
    else if (c == '\r') o += "\\r";
    else if (c < 0x20 || c == 0x7f) { char b[8]; std::snprintf(b, sizeof b, "\\x%02x", c); o += b; }
    else o += static_cast<char>(c);
  }
  return o + q;
}

// Strict UTF-8 as Python decodes it: no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(const std::string& s) {
  auto at = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = at(i);
    if (c < 0x80) { ++i; continue; }
    int n = 0;
    unsigned char lo = 0x80, hi = 0xbf;   // the allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) { n = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return false;
    if (i + n >= s.size()) return false;   // the sequence runs past the end
    if (at(i + 1) < lo || at(i + 1) > hi) return false;
    for (int k = 2; k <= n; ++k)
      if ((at(i + k) >> 6) != 0x2) return false;
    i += n + 1;
  }
  return true;
}

// The SOF as the Python front end parses it (frames.parse_sof): "PATH TAG" or "PATH TAG GROUP", '#'
// comments and blank lines skipped, CRLF or CR line ends; else sof-format naming the SOF and the line
// (esorex gave a path without a tag an empty tag, and the plugin a self-contradictory tag-mismatch).
void check_sof(const std::string& sof) {
  std::ifstream in(sof, std::ios::binary);
  if (!in) return;   // esorex has read it: nothing to add
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!valid_utf8(text)) fail("sof-format", {{"file", sof}, {"line", "1"}, {"detail", "not a text SOF (a binary file?)"}});
  std::vector<std::string> lines;
  std::string cur;
  for (size_t i = 0; i < text.size(); ++i) {   // lines end at \n, as esorex reads them (a \r before it is trimmed)
    if (text[i] == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur += text[i];
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  std::string groups;
  for (const char* g : SOF_GROUPS) groups += (groups.empty() ? "" : ", ") + std::string(g);
  for (size_t n = 0; n < lines.size(); ++n) {
    std::string line = lines[n];
    const auto b = line.find_first_not_of(" \t\r\f\v"), e = line.find_last_not_of(" \t\r\f\v");
    line = b == std::string::npos ? "" : line.substr(b, e - b + 1);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> parts;   // tokens between blanks and tabs (frames.parse_sof)
    for (size_t at = 0; at < line.size();) {
      const size_t from = line.find_first_not_of(" \t", at);
      if (from == std::string::npos) break;
      const size_t to = line.find_first_of(" \t", from);
      parts.push_back(line.substr(from, to == std::string::npos ? std::string::npos : to - from));
      at = to == std::string::npos ? line.size() : to;
    }
    const std::string at = std::to_string(n + 1);
    // a path holding whitespace ('a/sp ace.fits TAG' splits into three tokens), as frames._path_with_whitespace
    bool tail_group = false;
    if (parts.size() > 2)
      for (const char* g : SOF_GROUPS) tail_group |= upper_trim(parts.back()) == g;
    const size_t n_tail = tail_group ? 2 : 1;
    for (size_t k = parts.size() - std::min(parts.size(), n_tail); k > 1; --k) {
      std::string candidate = parts[0];
      for (size_t i = 1; i < k; ++i) candidate += " " + parts[i];
      std::string expanded = candidate;
      if (expanded.rfind("~/", 0) == 0 && std::getenv("HOME")) expanded = std::getenv("HOME") + expanded.substr(1);
      struct stat st;
      if (::stat(expanded.c_str(), &st) == 0)
        fail("sof-format", {{"file", sof}, {"line", at}, {"detail", "the path " + py_repr(candidate) + " holds whitespace, "
                            "which a SOF cannot (esorex splits its lines at whitespace): rename it or list a link to it"}});
    }
    if (parts.size() != 2 && parts.size() != 3)
      fail("sof-format", {{"file", sof}, {"line", at}, {"detail", "expected 'PATH TAG [GROUP]', got " + py_repr(line)}});
    if (parts.size() == 3) {
      const std::string g = upper_trim(parts[2]);
      bool known = false;
      for (const char* x : SOF_GROUPS) known |= g == x;
      if (!known)
        fail("sof-format", {{"file", sof}, {"line", at}, {"detail", "unknown frame group " + py_repr(parts[2]) +
                                                                    " (expected one of " + groups + ")"}});
    }
  }
}

}  // namespace

Inputs classify(cpl_frameset* frames) {
  Inputs in;
  for (const std::string& sof : esorex_sof_files()) check_sof(sof);
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
