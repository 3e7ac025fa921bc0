// Input frames of the soxs_mflat plugin: classification by SOF tag, checks, loading and detrending.
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

enum class Kind { FLAT, DFLAT, QFLAT, LAMPOFF, MASTER_BIAS, MASTER_DARK, ORDER_TAB, BPM };

struct In {
  cpl_frame* frame;
  std::string file, tag;
  Kind kind;
  Plist hdr;
  double mjd;
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
Lamp detrend_lamp(Inputs& in, Kind lamp, int threads);   // threads <= 0: all cores
CentreTable read_centre_table(const In& f);
soxs::Geometry geometry(const Inputs& in, const CentreTable& ct);

}  // namespace soxs_cpl
