// The plugin's product headers, completed in the staged product before esorex signs it: what cpl_dfs writes
// differently from the Python front end (astropy), put right (soxs_mflat_header.hpp).
#include "soxs_mflat_header.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "cpl_io.hpp"
#include "soxs_mflat_generated.h"
#include "soxs_mflat_rawcards.hpp"

namespace soxs_cpl {

// A key a product inherits from the first raw frame (data/contract/products.yaml, inherit: cpl_dfs's rule).
bool inherited_key(const std::string& k) {
  for (const char* e : soxs_gen::INHERIT_KEYS)
    if (k == e) return true;
  if (k.rfind("ESO ", 0) != 0) return false;
  for (const char* e : soxs_gen::INHERIT_ESO_EXCEPT)
    if (k.rfind(e, 0) == 0) return false;
  return true;
}

namespace {

// A double as the Python front end's products carry it (astropy writes repr(value): the shortest text that reads
// back as the same double, at most 20 characters): CPL writes 15 significant digits (MJD-OBS 60960.468564814815
// became 60960.4685648148, QC values lost their last digits).
std::string py_float(double v) {
  char buf[64];
  int p = 1;
  for (; p < 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*e", p - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::snprintf(buf, sizeof buf, "%.*e", p - 1, v);
  const int exp = std::atoi(std::strchr(buf, 'e') + 1);
  std::string out;
  if (exp >= -4 && exp < 16) {   // Python's repr: positional, at least one decimal
    char f[400];
    std::snprintf(f, sizeof f, "%.*f", std::max(p - 1 - exp, 1), v);
    out = f;
  } else {                       // 1.5e-05 -> 1.5E-05 (astropy's card text)
    out = buf;
    const size_t e = out.find('e');
    std::string mant = out.substr(0, e), ex = out.substr(e + 1);
    const char sign = ex[0];
    ex = ex.substr(1);
    while (ex.size() > 2 && ex[0] == '0') ex.erase(0, 1);
    out = mant + "E" + sign + ex;
  }
  if (out.size() > 20) {         // astropy's limit of the value field
    const size_t e = out.find('E');
    out = e == std::string::npos ? out.substr(0, 20) : out.substr(0, 20 - (out.size() - e)) + out.substr(e);
  }
  return out;
}

// Rewrite `key`'s value in the current HDU's header as `text`, keeping its comment (astropy's card layout).
void rewrite_card(fitsfile* fp, const std::string& key, const std::string& text, int& status) {
  char value[FLEN_VALUE], comment[FLEN_COMMENT] = "";
  int st = 0;
  if (ffgkey(fp, key.c_str(), value, comment, &st)) return;   // not in this product
  const bool hierarch = key.size() > 8 || key.find(' ') != std::string::npos;
  // a HIERARCH card that does not fit loses the blank before "=" (as astropy writes it); one that still
  // does not fit keeps CPL's text: cutting it at 80 would change the value (1.2345678901234E-100 -> E-10)
  std::string card = hierarch ? "HIERARCH " + key + " = " + text : key + std::string(8 - std::min<size_t>(key.size(), 8), ' ') +
                                "= " + std::string(20 - std::min<size_t>(text.size(), 20), ' ') + text;
  if (hierarch && card.size() > 80) card = "HIERARCH " + key + "= " + text;
  if (card.size() > 80) return;
  if (*comment && card.size() + 3 < 80) card += std::string(" / ") + comment;
  card.resize(80, ' ');
  fits_update_card(fp, key.c_str(), card.c_str(), &status);
}

// The frame each ESO PRO REC1 <group>i NAME card names (i, frame), among `frames` of CPL group `group`: cpl_dfs
// writes the names in the frames' order and cuts one longer than a card, so the i-th card names the first
// frame not yet matched whose name starts with its value. A cut name is written whole (CONTINUE cards), as
// the Python front end writes it: two raws whose names differ after the cut had the same NAME.
std::vector<std::pair<int, const In*>> provenance(fitsfile* fp, const char* group, const std::vector<const In*>& frames,
                                                  cpl_frame_group kind, int& status) {
  std::vector<const In*> left;
  for (const In* f : frames)
    if (cpl_frame_get_group(f->frame) == kind) left.push_back(f);
  std::vector<std::pair<int, const In*>> out;
  for (int i = 1; status == 0 && !left.empty(); ++i) {
    const std::string key = std::string("ESO PRO REC1 ") + group + std::to_string(i) + " NAME";
    char name[FLEN_VALUE];
    int st = 0;
    if (ffgkys(fp, key.c_str(), name, nullptr, &st)) break;
    auto it = std::find_if(left.begin(), left.end(), [&](const In* f) { return f->name.rfind(name, 0) == 0; });
    if (it == left.end()) continue;
    if ((*it)->name.size() > std::strlen(name)) put_long_strings(fp, {{key, (*it)->name, ""}}, status);
    out.push_back({i, *it});
    left.erase(it);
  }
  return out;
}

// What cpl_dfs writes differently from the Python front end, put right in the staged product before esorex
// signs it: doubles of the inherited header and the QC values to 17 significant digits (the shortest exact
// text), long strings whole (CONTINUE cards), and PRO REC1 CALi DATAMD5 of a calibration whose header has
// none (cpl_dfs writes it only from the input's DATAMD5 key; the CLI computes the MD5 of its data units).
}  // namespace

RawCards inherited_cards(const In& ref) {
  RawCards out;
  for (int hdu = ref.hdu; hdu >= 0; --hdu) {   // the image HDU first: its key wins over the primary's
    RawCards one = raw_cards(ref.file, hdu);
    for (LongString& s : one.strings)
      if (inherited_key(s.key) &&
          std::none_of(out.strings.begin(), out.strings.end(), [&](const LongString& o) { return o.key == s.key; }))
        out.strings.push_back(std::move(s));
    for (Undefined& u : one.undefined)
      if (inherited_key(u.key)) out.undefined.push_back(std::move(u));
  }
  return out;
}

void finish_header(const std::string& file, const In& ref, const RawCards& inherited, const std::vector<QcVal>& qc,
                   const std::vector<const In*>& frames, const std::function<std::string(const In&)>& md5_of) {
  fitsfile* fp = nullptr;
  int status = 0;
  if (fits_open_diskfile(&fp, file.c_str(), READWRITE, &status)) {
    ffcmsg();
    throw std::runtime_error("cannot open the staged product " + file + " to complete its header");
  }
  put_long_strings(fp, inherited.strings, status);
  put_undefined(fp, inherited.undefined, status);   // which CPL made strings of their comments
  const cpl_propertylist* h = ref.hdr.get();
  for (cpl_size i = 0; i < cpl_propertylist_get_size(h); ++i) {
    const cpl_property* p = cpl_propertylist_get_const(h, i);
    const cpl_type t = cpl_property_get_type(p);
    if (t == CPL_TYPE_DOUBLE || t == CPL_TYPE_FLOAT) {
      const std::string k = cpl_property_get_name(p);
      if (inherited_key(k)) rewrite_card(fp, k, py_float(cpl_property_get_double(p)), status);
    }
  }
  char value[FLEN_VALUE];
  int st0 = 0;
  if (ref.hdu == 1 && has(h, "ARCFILE") && ffgkey(fp, "ARCFILE", value, nullptr, &st0)) {   // cpl_dfs drops it
    const char* c = cpl_propertylist_get_comment(h, "ARCFILE");
    fits_update_key_str(fp, "ARCFILE", get_str(h, "ARCFILE").c_str(), c ? c : "", &status);
  }
  for (const QcVal& v : qc)
    if (!v.integer) rewrite_card(fp, "ESO QC " + v.name, py_float(v.value), status);
  for (const auto& [i, calp] : provenance(fp, "CAL", frames, CPL_FRAME_GROUP_CALIB, status)) {
    const std::string base = "ESO PRO REC1 CAL" + std::to_string(i);
    const In& cal = *calp;
    char have[FLEN_VALUE];
    int st = 0;
    if (!ffgkys(fp, (base + " DATAMD5").c_str(), have, nullptr, &st)) continue;
    st = 0;
    if (ffgkys(fp, (base + " CATG").c_str(), have, nullptr, &st)) continue;
    int next = 0, nkeys = 0;
    fits_get_hdrpos(fp, &nkeys, &next, &status);   // the card after CALi CATG
    const std::string md5 = has(cal.hdr.get(), "DATAMD5") ? get_str(cal.hdr.get(), "DATAMD5") : md5_of(cal);
    char card[FLEN_CARD];
    std::snprintf(card, sizeof card, "HIERARCH %s DATAMD5 = '%s'", base.c_str(), md5.c_str());
    fits_insert_record(fp, next, card, &status);
  }
  provenance(fp, "RAW", frames, CPL_FRAME_GROUP_RAW, status);
  char msg[FLEN_STATUS] = "";
  if (status) fits_get_errstatus(status, msg);
  int ignored = 0;
  fits_close_file(fp, status ? &ignored : &status);
  ffcmsg();
  if (status) throw std::runtime_error("cannot complete the header of " + file + " (" + msg + ")");
}

}  // namespace soxs_cpl
