// Input frames of the soxs_mflat plugin: classification by header and verification with the rules of
// the input contract (soxs_mflat_verify.cpp, tables generated from data/contract/inputs.yaml), loading
// and detrending (soxs_mflat_inputs.cpp).
#pragma once
#include <cpl.h>

#include <map>
#include <string>
#include <vector>

#include "cpl_io.hpp"
#include "soxs_mflat_generated.h"

namespace soxs_cpl {

struct InputError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// An input breaks rule `rule` of the contract: what() is "[<rule>] <message>", code the CPL error code
// the contract gives its outcome (esorex returns it as its exit status).
struct RuleError : InputError {
  std::string rule;
  cpl_error_code code;
  RuleError(const std::string& r, cpl_error_code c, const std::string& msg)
      : InputError("[" + r + "] " + msg), rule(r), code(c) {}
};
using Fields = std::vector<std::pair<std::string, std::string>>;
// Throw the RuleError of `rule` with its contract message filled from `fields` ({name} -> value).
[[noreturn]] void fail(const std::string& rule, const Fields& fields);

enum class Kind { FLAT, DFLAT, QFLAT, LAMPOFF, MASTER_BIAS, MASTER_DARK, ORDER_TAB, BPM, SPECTRAL_FORMAT_TAB, UNKNOWN };

struct In {
  cpl_frame* frame;
  std::string file, tag;
  Kind kind;
  Plist hdr;            // the frame's header (of HDU 1 in a tile-compressed file)
  double mjd;
  int hdu = 0;          // the image HDU: 0, or 1 in a tile-compressed (fpack) file
  std::string name;     // base name, for messages listing several files
  bool decompressed = false;                       // whole-file compressed: CFITSIO decompresses it
  std::vector<std::pair<size_t, size_t>> units;    // per HDU: data unit offset and padded size (DATAMD5)
  std::vector<bool> tiled;                         // per HDU: a tile-compressed image
  std::vector<std::string> xtension;               // per HDU: IMAGE (the primary too), BINTABLE, TABLE
};

struct Inputs {
  const soxs_gen::ArmDef* arm = nullptr;
  int binx = 1, biny = 1;
  std::vector<In> frames;
  std::map<Kind, std::vector<In*>> by;
  std::map<Kind, In*> order_tab;         // lamp kind -> order table
};

struct Lamp {                             // one lamp set, detrended
  std::vector<std::vector<float>> data, error;
  std::vector<uint8_t> mask;
  std::vector<In*> raws, cals;            // provenance order of the Python front end: bias, dark, order
  In* bpm = nullptr;                      // table(s), ..., then the bad-pixel map (listed last)
  int64_t ny = 0, nx = 0;
};

struct CentreTable {
  soxs::Poly2D centre;
  std::vector<soxs::OrderSpan> orders;
  bool a_is_x = true;
  Table coeffs, meta;
};

Inputs classify(cpl_frameset* frames);
// The MD5 of an input's FITS data units, padding included (a whole-file compressed one's decompressed
// stream), as the Python front end's products.file_datamd5: a calibration's PRO REC1 CALi DATAMD5.
std::string data_md5(const In& f);
std::string data_md5(const std::string& file, const std::vector<std::pair<size_t, size_t>>& units);   // every rule of the contract, before any image is read
// A header value converted with the contract's type and range ("bad-keyword" otherwise); dflt when absent
// and not required. detector_value: the first present of an instrument's keys for `what` (binx, conad, ...).
double number(const In& f, const std::string& key, const char* what, double dflt, bool required = false);
double detector_value(const In& f, const soxs_gen::ArmDef& arm, const char* what, double dflt);
void binning(const In& f, const soxs_gen::ArmDef& arm, int& bx, int& by);
double gain_of(const In& f, const soxs_gen::ArmDef& arm);
Lamp detrend_lamp(Inputs& in, Kind lamp, int threads);   // threads <= 0: all cores
std::string kind_name(Kind k);   // the contract's name of a kind: FLAT, DFLAT, QFLAT, ...
CentreTable read_centre_table(const In& f);
// An image HDU of an input as CPL loads it, CFITSIO's warnings on a tile-compressed one included (a corrupted
// tile decodes with a warning only): unreadable-fits otherwise, naming the file.
Image load_image(const In& f, int ext);
FImage load_float(const In& f, int ext);
soxs::Geometry geometry(const Inputs& in, const CentreTable& ct);

}  // namespace soxs_cpl
