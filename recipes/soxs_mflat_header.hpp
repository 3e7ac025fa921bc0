// Product headers of the soxs_mflat plugin: the keys a product inherits (products.yaml, inherit), and the
// completion of a staged product's header before esorex signs it (finish_header).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "soxs_mflat_inputs.hpp"
#include "soxs_mflat_qc.hpp"
#include "soxs_mflat_rawcards.hpp"

namespace soxs_cpl {

// A key a product inherits from the first raw frame (data/contract/products.yaml, inherit: cpl_dfs's rule).
bool inherited_key(const std::string& k);

// The long strings and undefined values that a product inherits from `ref`, the first raw frame (its image HDU,
// then the primary of a tile-compressed frame): read once per product set, for its three products.
RawCards inherited_cards(const In& ref);

// What cpl_dfs writes differently from the Python front end, put right in the staged product `file`: doubles
// of the inherited header (`ref`) and the QC values `qc` to 17 significant digits, the `inherited` long strings
// whole and undefined values undefined, provenance names of `frames` whole, and PRO REC1 CALi DATAMD5 of a
// calibration whose header has none (`md5_of`: the MD5 of its data units).
void finish_header(const std::string& file, const In& ref, const RawCards& inherited, const std::vector<QcVal>& qc,
                   const std::vector<const In*>& frames, const std::function<std::string(const In&)>& md5_of);

}  // namespace soxs_cpl
