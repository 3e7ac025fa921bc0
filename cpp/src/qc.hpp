// QC values shared by the single-lamp master flat and the stitched UVB flat.
#pragma once
#include <vector>

#include "soxs/mflat.hpp"

namespace soxs::detail {
// X RES from the kept edge-fit residuals; N LOW SENS / COLDPIX from QUAL; INNER ORDER over good in-order pixels.
void fill_common_qc(QCValues& q, const std::vector<float>& flux, const std::vector<uint8_t>& quality,
                    const EdgeFit& edges, const std::vector<uint8_t>& inorder);
}  // namespace soxs::detail
