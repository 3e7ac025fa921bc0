// Validation at the core's entry points: nothing touches memory before sizes, shapes, geometry and
// parameters are known to be sane. Every failure is std::invalid_argument naming what was wrong.
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "contract_limits.hpp"   // generated from data/contract/inputs.yaml
#include "soxs/mflat.hpp"

namespace soxs::detail {

constexpr int MAX_POLY_DEG = 15;          // far above any echelle trace; keeps (deg+1)^2 coefficients small
constexpr int64_t MAX_SIDE = 1 << 16;     // pixels along one image axis
constexpr int64_t MAX_PIXELS = int64_t(1) << 30;
constexpr size_t MAX_ORDERS = soxs::contract::MAX_ORDERS;   // the contract's order_table.max_orders
constexpr int MAX_ORDER_NUMBER = 10000;
constexpr int MAX_CLIP_ITERS = 1000;
constexpr int MAX_LOWSENS_HALF = 50;      // the separable median costs (2h+1) per pixel and axis

// Image axes of (ny, nx) within MAX_SIDE and MAX_PIXELS (no overflow in ny * nx afterwards).
void check_image_size(int64_t ny, int64_t nx, const std::string& what);
// Degrees in [0, MAX_POLY_DEG], (deg_n+1)*(deg_b+1) coefficients, all finite.
void check_polynomial(const Poly2D& P, const std::string& what);
// 1..MAX_ORDERS orders, distinct order numbers within +-MAX_ORDER_NUMBER, finite b_min <= b_max.
void check_order_list(const std::vector<OrderSpan>& orders, const std::string& what);
// Every order has B lines on the detector, a finite centre on all of them, and its centre on the
// detector on at least one of them (a table for another detector or binning fails here).
void check_orders_on_detector(const Poly2D& centre, const std::vector<OrderSpan>& orders, const Geometry& g,
                              int64_t ny, int64_t nx, const std::string& what);
// The recipe parameters (named as in data/parameters.yaml) against hard limits of the core and
// the derived limits: order_deg below the number of orders, centre_order_window below the slice length.
void check_master_params(const MasterFlatParams& p, size_t n_orders, int64_t len_a, int64_t len_b);
void check_uvb_params(const UvbParams& p, size_t n_orders, int64_t len_a, int64_t len_b);

// Position (px) to index, clamped to +-2^40 so that casts of huge or non-finite values are defined;
// callers clip the result to the detector, so clamped values select nothing.
inline int64_t clamp_index(double x) {
  constexpr double LIM = 1099511627776.0;
  if (!(x > -LIM)) return -int64_t(LIM);
  if (!(x < LIM)) return int64_t(LIM);
  return static_cast<int64_t>(x);
}

}  // namespace soxs::detail
