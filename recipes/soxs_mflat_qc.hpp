// QC of the soxs_mflat plugin: the values in contract order (data/contract/qc.yaml, generated into
// soxs_mflat_generated.h), the QC table and range warnings in the esorex log, and qc.json.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "soxs_mflat_inputs.hpp"

namespace soxs_cpl {

struct QcVal { std::string name; double value; bool integer; };
using ExtraQc = std::vector<QcVal>;   // the stitched UVB flat's: CROSSOVER ORDER (an integer), D2 SCALE

struct QcRow { QcVal v; const char* unit; const char* comment; bool ranged; double lo, hi; bool pass; };

// The QC values of one product set, in contract order; throws if a name is not in the contract.
std::vector<QcVal> qc_list(const soxs::QCValues& q, const ExtraQc& extra);

// The comment of QC `name`'s card, cut as the Python front end cuts it (products.product_header): what fits
// beside "HIERARCH ESO QC <name> = " and a 20-character value.
std::string qc_card_comment(const std::string& name);

// Rows with units, comments and the default ranges of ARMS column `column` (-1: no ranges).
std::vector<QcRow> qc_rows(const std::vector<QcVal>& v, int column);

// The QC table at info level, one cpl_msg_warning per out-of-range value; returns how many failed.
int log_qc(const std::vector<QcRow>& rows, const std::string& what);

struct QcJsonRun {
  const Inputs* in;
  std::vector<const In*> raws, cals;
  std::vector<std::pair<std::string, std::string>> products;   // label -> file name
};

// qc.json in directory dir ("" or "<staging dir>/"), written to a temporary file and renamed, and added to
// the products.
void write_qc_json(cpl_frameset* frames, const QcJsonRun& run, const std::vector<QcRow>& rows,
                   const std::vector<std::pair<std::string, std::vector<QcRow>>>& per_lamp,
                   const std::string& dir = "");

}  // namespace soxs_cpl
