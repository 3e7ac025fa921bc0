// soxs-mflat numerical core: pure functions over in-memory float32 images.
// No I/O, no logging, no Python types. Errors: std::invalid_argument for bad
// input, std::runtime_error for processing failures (e.g. a fit with no points).
//
// Coordinates. Images are row-major (ny rows of nx pixels). "Axis A" is the
// cross-dispersion axis (the coordinate that is fitted), "axis B" runs along the
// orders. a_is_x = true means A = column index (X-shooter, SOXS VIS); false means
// A = row index (SOXS NIR). Polynomials are in UNBINNED pixel coordinates, with
// pixel centres at integers. Binned pixel i is unbinned coordinate bin*i: the convention of
// soxspipe's order tables (toolkit.unpack_order_table divides unbinned positions by the bin
// factor), which the tables this recipe reads and writes follow.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "soxs/param_defaults.hpp"

namespace soxs {

// ---------------------------------------------------------------- views
struct ImageView {            // read-only float image
  const float* data = nullptr;
  int64_t ny = 0, nx = 0;
};
struct MaskView {             // optional uint8 mask, non-zero = bad; data may be null
  const uint8_t* data = nullptr;
};

// Global polynomial A(n, B) = sum_{i<=deg_n} sum_{j<=deg_b} c[i*(deg_b+1)+j] n^i B^j
// (soxspipe's power-series layout: i-major, n = echelle order number).
struct Poly2D {
  int deg_n = 0, deg_b = 0;
  std::vector<double> c;
  double eval(double n, double b) const;
};

struct OrderSpan {            // one echelle order and its valid range along B (unbinned)
  int order = 0;
  double b_min = 0, b_max = 0;
};

struct Geometry {             // how polynomials map onto a (binned) frame
  bool a_is_x = true;
  int bin_a = 1, bin_b = 1;
  int64_t len_a(const ImageView& v) const { return a_is_x ? v.nx : v.ny; }
  int64_t len_b(const ImageView& v) const { return a_is_x ? v.ny : v.nx; }
  int64_t index(int64_t a, int64_t b, int64_t nx) const { return a_is_x ? b * nx + a : a * nx + b; }
  double to_unbinned_a(double a) const { return double(bin_a) * a; }
  double to_unbinned_b(double b) const { return double(bin_b) * b; }
  double to_binned_a(double a) const { return a / bin_a; }
  double to_binned_b(double b) const { return b / bin_b; }
};

// ---------------------------------------------------------------- 1. clip and stack
// Defaults of the parameter structs: the recipe's (data/parameters.yaml, SOXS VIS column; UvbParams: the
// X-shooter UVB column) through the generated param_defaults.hpp; the rest are the core's own constants.
namespace pd = param_defaults::soxs_vis;

struct ClipParams {
  double sigma_lower = pd::stacked_clipping_sigma;   // in MAD-sigma units (1.4826 * MAD)
  double sigma_upper = pd::stacked_clipping_sigma;
  int max_iters = pd::stacked_clipping_iterations;   // astropy sigma_clip semantics
  // With error maps: clip on the MAD sigma clamped to [1, 1.5] x the rms of the survivors' errors.
  // The MAD of <= 5 samples is often 2-3x too large (cosmic rays of ~15 % survive) or too small
  // (good samples are clipped and the noise grows).
  bool error_floor = false;
};
struct StackResult {
  std::vector<float> mean, error;   // mean of surviving samples; mean(sigma_i)/sqrt(n_used)
  std::vector<uint8_t> quality;     // 1 where no sample survived (mean = error = 0 there)
  std::vector<uint8_t> n_used;
};
// frames[k], errors[k] (may be empty or null entries), masks[k] (may be empty or null);
// scales[k] multiplies frame k and its error before clipping (empty = 1).
// Output buffers are caller-provided when out_* are non-null (npix each), else allocated.
void clip_and_stack(const std::vector<const float*>& frames,
                    const std::vector<const float*>& errors,
                    const std::vector<const uint8_t*>& masks,
                    const std::vector<double>& scales, int64_t npix,
                    const ClipParams& p, float* out_mean, float* out_error,
                    uint8_t* out_quality, uint8_t* out_nused, int threads = 0);

// ---------------------------------------------------------------- 2. inner-order statistics
struct InnerStats {
  double mean = 0, median = 0, p10 = 0, p50 = 0, p90 = 0;  // mean is sigma-clipped
  int64_t n = 0;
};
// Clipping of the exposure-level statistic (not a recipe parameter: only gross outliers go).
constexpr double NORM_CLIP_SIGMA = 25;
constexpr int NORM_CLIP_ITERS = 3;
// Pixels within `window` pixels (binned, centred) of each order centre, bad/NaN excluded.
// With `ref` non-null the statistic is taken on image/ref (second-pass normalisation).
InnerStats inner_order_stats(const ImageView& img, const float* ref, const MaskView& mask,
                             const Poly2D& centre, const std::vector<OrderSpan>& orders,
                             const Geometry& g, int window, double clip_sigma = NORM_CLIP_SIGMA,
                             int clip_iters = NORM_CLIP_ITERS, bool want_percentiles = true);

// ---------------------------------------------------------------- 3. edge detection
struct EdgeParams {
  int slice_length = pd::slice_length_for_edge_detection;   // binned pixels along A
  int slice_width = pd::slice_width_for_edge_detection;     // binned pixels along B
  // threshold band, % of (max - min) above min
  double min_pct = pd::min_percentage_threshold_for_edge_detection;
  double max_pct = pd::max_percentage_threshold_for_edge_detection;
  double step_unbinned = 25;                // sampling step along B (unbinned px)
  int median_filter = 3;                    // odd; light smoothing that keeps monotone slopes exact
  double min_width = 10;                    // minimum accepted order width (binned px)
  double min_snr = pd::edge_min_snr;        // reject slices whose peak is below min_snr * error
};
struct EdgePoints {           // one row per accepted slice; positions are UNBINNED
  std::vector<int> order;
  std::vector<double> b, lower, upper, level_pct, peak;
  std::vector<int> n_slices_per_order;      // attempted slices, same order as `orders`
};
EdgePoints detect_edges(const ImageView& img, const float* err, const MaskView& mask,
                        const Poly2D& centre, const std::vector<OrderSpan>& orders,
                        const Geometry& g, const EdgeParams& p, int threads = 0);

// ---------------------------------------------------------------- 4. global polynomial fit
struct FitResult {
  Poly2D poly;                     // raw power-series coefficients (soxspipe layout)
  std::vector<double> residuals;   // fit - measured, every input point
  std::vector<uint8_t> clipped;    // 1 = rejected by the residual clipping
  int iterations = 0;
  double rms = 0;                  // rms of kept residuals
};
// Fits in scaled variables with Householder QR; clipping on median/MAD-sigma of residuals.
FitResult fit_global_poly(const std::vector<double>& n, const std::vector<double>& b,
                          const std::vector<double>& a, int deg_n, int deg_b,
                          double clip_sigma, int max_iters);

// ---------------------------------------------------------------- 5. scattered light
struct BackgroundParams {
  int margin = pd::background_margin;           // binned pixels kept clear of each fitted edge
  int spline_deg = pd::bspline_deg;             // 1 = linear between gap levels, >= 2 = natural cubic spline
  double smooth_sigma = pd::gaussian_blur_sigma;   // Gaussian sigma along B (binned px) of the gap levels
  int outer_width = 30;        // px sampled beyond the outermost orders
  int end_margin = 25;         // lines beyond an order's B range still masked (its light fades there)
  bool halos = true;           // model the orders' own blurred light first (false: gap interpolation only)
};
struct BackgroundResult {
  std::vector<float> model;    // full frame
  int64_t n_samples = 0;       // gap levels used (lines x gaps)
};
BackgroundResult fit_background(const ImageView& img, const MaskView& mask,
                                const Poly2D& lower, const Poly2D& upper,
                                const std::vector<OrderSpan>& orders, const Geometry& g,
                                const BackgroundParams& p, int threads = 0);

// ---------------------------------------------------------------- 6. low sensitivity
struct LowSensParams {
  double clip_sigma = pd::low_sensitivity_clipping_sigma;   // flag where flat < model * (1 - clip_sigma * sigma_pix)
  int half_a = pd::low_sensitivity_half_window;             // separable median window half-sizes (A then B)
  int half_b = pd::low_sensitivity_half_window;
};
struct LowSensResult {
  std::vector<uint8_t> flags;  // 1 = low-sensitivity pixel
  int64_t n_flagged = 0;
  std::vector<double> sigma_rel;  // per order: pixel-to-pixel scatter used (relative)
};
LowSensResult flag_low_sensitivity(const ImageView& flat, const float* err, const MaskView& mask,
                                   const Poly2D& lower, const Poly2D& upper,
                                   const std::vector<OrderSpan>& orders, const Geometry& g,
                                   const LowSensParams& p, int threads = 0);

// In-order test: pixels with lower(n,B) <= A <= upper(n,B) for some order.
std::vector<uint8_t> in_order_mask(int64_t ny, int64_t nx, const Poly2D& lower,
                                   const Poly2D& upper, const std::vector<OrderSpan>& orders,
                                   const Geometry& g);

// ---------------------------------------------------------------- 7. master flat
struct MasterFlatParams {
  ClipParams stack;
  int centre_window = pd::centre_order_window;
  double norm_clip_sigma = NORM_CLIP_SIGMA; int norm_clip_iters = NORM_CLIP_ITERS;
  EdgeParams edges;
  int order_deg = pd::order_deg, disp_deg = pd::disp_axis_deg;
  double fit_clip_sigma = pd::poly_fitting_residual_clipping_sigma;
  int fit_clip_iters = pd::poly_clipping_iteration_limit;
  bool subtract_background = pd::subtract_background;
  BackgroundParams background;
  LowSensParams low_sens;
  int threads = pd::threads;
};
struct QCValues {
  double ordexp10 = 0, ordexp50 = 0, ordexp90 = 0;
  double x_res_min = 0, x_res_max = 0, x_res_sd = 0;
  int64_t n_low_sens = 0, coldpix_num = 0;
  double coldpix_frac = 0, inner_mean = 0, inner_sum = 0;
};
struct EdgeFit {
  EdgePoints points;
  FitResult lower, upper;
  std::vector<int> n_used_per_order;   // accepted slices per order (after clipping)
  // per order, as the order table's meta columns: medians over the order's detected slices of the
  // peak flux and of the threshold level (% of the band), NaN without any; the threshold band in flux
  std::vector<double> peak_per_order, level_pct_per_order, min_threshold, max_threshold;
};
struct MasterFlatResult {
  std::vector<float> flux, error, background;   // background empty when not subtracted
  std::vector<float> stacked;                   // the normalised stack before background subtraction
  std::vector<uint8_t> quality;                 // QUAL bits, see QualBits
  std::vector<double> norm_first, norm_second;  // per-frame exposure levels (electrons)
  EdgeFit edges;
  std::vector<double> order_median_flux;        // per order (same order as input), central window
  QCValues qc;
};
// QUAL_BEYOND_RANGE: order light on lines just beyond the order's B range (within the background's
// end_margin), between the extrapolated edges: the normalised flux is kept (not set to 1) and flagged.
enum QualBits : uint8_t { QUAL_BAD_STATIC = 1, QUAL_LOW_SENS = 2, QUAL_NO_DATA = 4, QUAL_BEYOND_RANGE = 8 };

MasterFlatResult master_flat(const std::vector<const float*>& frames,
                             const std::vector<const float*>& errors, const MaskView& bpm,
                             int64_t ny, int64_t nx, const Poly2D& centre,
                             const std::vector<OrderSpan>& orders, const Geometry& g,
                             const MasterFlatParams& p);

// Edge detection + both global fits on a frame (used by master_flat and after stitching).
EdgeFit detect_and_fit_edges(const ImageView& img, const float* err, const MaskView& mask,
                             const Poly2D& centre, const std::vector<OrderSpan>& orders,
                             const Geometry& g, const EdgeParams& ep, int order_deg,
                             int disp_deg, double clip_sigma, int clip_iters, int threads = 0);

// Median of the flat in a square window (binned px) centred on each order's mid-point.
std::vector<double> order_median_flux(const ImageView& img, const MaskView& mask,
                                      const Poly2D& centre, const std::vector<OrderSpan>& orders,
                                      const Geometry& g, int half_window);

// ---------------------------------------------------------------- preparation and detrending
struct PrepareParams {
  int rot90 = 0;                          // numpy np.rot90 k (counter-clockwise quarter turns)
  int64_t row0 = 0, row1 = 0, col0 = 0, col1 = 0;  // science window in the rotated (binned) frame
  float gain = 1.0f;                      // e-/ADU
};
// out (rows x cols of the window) = rot90(raw)[row0:row1, col0:col1] * gain, in float32.
void prepare_frame(const ImageView& raw, const PrepareParams& p, float* out);
// A FITS integer data unit as stored (BITPIX 8 unsigned, 16 or 32 signed; big-endian as in the file
// unless big_endian is false) whose physical value is raw + bzero (BSCALE 1, a whole BZERO): exact,
// as astropy's unsigned and offset types, so float(raw + bzero) is the value prepare_frame is given.
struct RawIntView {
  const void* data = nullptr;
  int64_t ny = 0, nx = 0;
  int bitpix = 16;
  bool big_endian = true;
  double bzero = 0.0;
};
// prepare_frame of float32(raw + bzero), without the float32 copy of the whole frame.
void prepare_frame_int(const RawIntView& raw, const PrepareParams& p, float* out);
// data -= cal * cal_scale (cal may be null); err = sqrt((max(data, 0) + ron^2) + (cal_err * cal_scale)^2),
// all in float32 so that every front end gets identical bits.
void detrend_frame(float* data, int64_t npix, const float* cal, const float* cal_err, double cal_scale, double ron,
                   float* err);
// numpy.percentile(img[::step, ::step], q) (linear interpolation): the saturation and empty-flat
// checks of both front ends look at such a sample (a 1/9 sample at step 3 is plenty).
double sample_percentile(const ImageView& img, int step, double q);
// Lamp-off frame for each flat (indices into off_mjd): the nearest in time, each used once while
// unused ones remain (their noise then averages down in the stack); first of equally near ones.
std::vector<int> pair_by_time(const std::vector<double>& flat_mjd, const std::vector<double>& off_mjd);

// ---------------------------------------------------------------- UVB stitching
// A-position (binned) of the stitch line on every B line: `offset` px beyond the edge of
// order `crossover` that faces order crossover-1 (works whichever way orders run along A).
// Also returns d_below: true when D pixels are those with A < line.
std::vector<double> stitch_line(const Poly2D& lower, const Poly2D& upper, int crossover,
                                int64_t len_b, const Geometry& g, double offset, bool* d_below);
// out = Q everywhere, D * scale on the D side of the line (flux and error), quality from the
// same source. Buffers are npix each; out_* may alias q_*.
void stitch_frames(const float* d_flux, const float* d_err, const uint8_t* d_qual,
                   const float* q_flux, const float* q_err, const uint8_t* q_qual,
                   int64_t ny, int64_t nx, const Geometry& g, const std::vector<double>& line,
                   bool d_below, double scale, float* out_flux, float* out_err,
                   uint8_t* out_qual);

// One lamp's master as the UVB combination needs it (views into the lamp's MasterFlatResult).
struct LampMaster {
  const float* stacked = nullptr;      // normalised stack before background subtraction
  const float* background = nullptr;   // may be null
  const float* error = nullptr;
  const uint8_t* quality = nullptr;
  Poly2D lower, upper;
  std::vector<int> n_used, n_slices;   // per order (same order as `orders`)
  std::vector<double> order_median_flux;
  double level_e = 1;                  // mean exposure level (e-) that the master was divided by
  QCValues qc;
};
inline EdgeParams uvb_edge_defaults() {
  namespace u = param_defaults::xsh_uvb;
  EdgeParams e;
  e.slice_length = u::slice_length_for_edge_detection; e.slice_width = u::slice_width_for_edge_detection;
  e.min_pct = u::min_percentage_threshold_for_edge_detection;
  e.max_pct = u::max_percentage_threshold_for_edge_detection;
  e.min_snr = u::edge_min_snr;
  return e;
}
struct UvbParams {
  double min_frac = 0.5;               // edges found in >= this fraction of an order's slices = usable
  double offset = 5;                   // stitch line, px beyond the crossover order's edge
  bool scale_d2_to_qth = param_defaults::xsh_uvb::scale_d2_to_qth;
  EdgeParams edges = uvb_edge_defaults();
  int order_deg = param_defaults::xsh_uvb::order_deg, disp_deg = param_defaults::xsh_uvb::disp_axis_deg;
  double fit_clip_sigma = param_defaults::xsh_uvb::poly_fitting_residual_clipping_sigma;
  int fit_clip_iters = param_defaults::xsh_uvb::poly_clipping_iteration_limit;
  int threads = param_defaults::xsh_uvb::threads;
};
struct UvbResult {
  int crossover = 0;
  double scale = 1;
  bool d_below = true;
  std::vector<double> line;
  std::vector<float> flux, error, stacked;   // final flux has inter-order pixels = 1
  std::vector<uint8_t> quality;
  EdgeFit edges;                             // re-detected on the stitched stack
  QCValues qc;                               // ORDEXP from the QTH set
};
// Lowest order taken from D2: usable in both lamps, split maximising the summed log electron flux.
int choose_crossover(const std::vector<int>& orders, const std::vector<int>& slices, const std::vector<int>& used_d,
                     const std::vector<int>& used_q, const std::vector<double>& elec_d,
                     const std::vector<double>& elec_q, double min_frac);
UvbResult combine_uvb(const LampMaster& d, const LampMaster& q, int64_t ny, int64_t nx, const Poly2D& centre_q,
                      const std::vector<OrderSpan>& orders, const Geometry& g, const UvbParams& p);

// Parameters by their recipe names (data/parameters.yaml; bools as 0/1), shared by every front end.
// Unknown names are ignored here: the front ends validate names against the parameter source.
using NamedParams = std::map<std::string, double>;
MasterFlatParams master_params_from(const NamedParams& named);
UvbParams uvb_params_from(const NamedParams& named);
// The limits that need the order table or tie parameters together (order_deg below the number of
// orders, centre_order_window below slice_length_for_edge_detection, min <= max edge threshold),
// for the front ends to call before reading any frame; std::invalid_argument naming the parameter.
void check_recipe_params(const NamedParams& named, size_t n_orders);
// The order table against the frames' geometry, for the front ends to call before reading any pixel
// (rule order-table): order numbers distinct and in range, finite ranges, a finite centre polynomial,
// and every order's centre on the (ny, nx) detector; what master_flat checks on entry, with the same
// messages (prefixed "order table"). std::invalid_argument on the first problem.
void check_order_table(const Poly2D& centre, const std::vector<OrderSpan>& orders, const Geometry& g, int64_t ny,
                       int64_t nx);
// The entry checks of every kernel, for the bindings of those that take flat buffers: an image of
// 1..65536 px per axis and at most 2^30 px; a polynomial of degrees 0..15 with finite coefficients.
void check_image_shape(int64_t ny, int64_t nx, const std::string& what);
void check_poly_coeffs(const Poly2D& P, const std::string& what);

}  // namespace soxs
