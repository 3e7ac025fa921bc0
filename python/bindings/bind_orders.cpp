// Bindings of the order-geometry kernels: edges, background, low sensitivity, stitching.
#include "convert.hpp"

namespace {

soxs::EdgeParams edge_params(const py::dict& d) {
  soxs::EdgeParams p;
  if (d.contains("slice_length")) p.slice_length = d["slice_length"].cast<int>();
  if (d.contains("slice_width")) p.slice_width = d["slice_width"].cast<int>();
  if (d.contains("min_pct")) p.min_pct = d["min_pct"].cast<double>();
  if (d.contains("max_pct")) p.max_pct = d["max_pct"].cast<double>();
  if (d.contains("step_unbinned")) p.step_unbinned = d["step_unbinned"].cast<double>();
  if (d.contains("median_filter")) p.median_filter = d["median_filter"].cast<int>();
  if (d.contains("min_width")) p.min_width = d["min_width"].cast<double>();
  if (d.contains("min_snr")) p.min_snr = d["min_snr"].cast<double>();
  return p;
}

py::dict points_dict(soxs::EdgePoints&& e) {
  py::dict d;
  d["order"] = to_array(std::move(e.order)); d["b"] = to_array(std::move(e.b));
  d["lower"] = to_array(std::move(e.lower)); d["upper"] = to_array(std::move(e.upper));
  d["level_pct"] = to_array(std::move(e.level_pct)); d["peak"] = to_array(std::move(e.peak));
  d["n_slices_per_order"] = to_array(std::move(e.n_slices_per_order));
  return d;
}

}  // namespace

void bind_orders(py::module_& m) {
  const soxs::BackgroundParams bg{};      // the defaults are the core's (soxs/mflat.hpp)
  const soxs::LowSensParams ls{};
  const soxs::UvbParams uvb{};
  m.def("detect_edges", [](const FArr& img, const std::optional<FArr>& err, const std::optional<U8Arr>& mask,
                           const DArr& centre, const std::vector<int>& orders, const std::vector<double>& bmin,
                           const std::vector<double>& bmax, bool a_is_x, int bin_a, int bin_b, const py::dict& params,
                           int threads) {
    auto v = image_view(img, "image");
    auto pe = same_shape(err, v, "error map"); auto pm = same_shape(mask, v, "mask");
    auto P = to_poly(centre, "centre"); auto O = to_orders(orders, bmin, bmax); auto ep = edge_params(params);
    soxs::EdgePoints e;
    { py::gil_scoped_release rel; e = soxs::detect_edges(v, pe, {pm}, P, O, {a_is_x, bin_a, bin_b}, ep, threads); }
    return points_dict(std::move(e));
  }, py::arg("image"), py::arg("error"), py::arg("mask"), py::arg("centre"), py::arg("orders"), py::arg("b_min"),
     py::arg("b_max"), py::arg("a_is_x"), py::arg("bin_a"), py::arg("bin_b"), py::arg("params") = py::dict(),
     py::arg("threads") = 0);

  m.def("fit_background", [](const FArr& img, const std::optional<U8Arr>& mask, const DArr& lower, const DArr& upper,
                             const std::vector<int>& orders, const std::vector<double>& bmin,
                             const std::vector<double>& bmax, bool a_is_x, int bin_a, int bin_b, int margin,
                             int spline_deg, double smooth_sigma, int outer_width, int end_margin, int threads,
                             bool halos) {
    auto v = image_view(img, "image");
    auto pm = same_shape(mask, v, "mask");
    auto L = to_poly(lower, "lower"), U = to_poly(upper, "upper"); auto O = to_orders(orders, bmin, bmax);
    soxs::BackgroundParams p{margin, spline_deg, smooth_sigma, outer_width, end_margin, halos};
    soxs::BackgroundResult r;
    { py::gil_scoped_release rel; r = soxs::fit_background(v, {pm}, L, U, O, {a_is_x, bin_a, bin_b}, p, threads); }
    return py::make_tuple(to_image(std::move(r.model), v.ny, v.nx), r.n_samples);
  }, py::arg("image"), py::arg("mask"), py::arg("lower"), py::arg("upper"), py::arg("orders"), py::arg("b_min"),
     py::arg("b_max"), py::arg("a_is_x"), py::arg("bin_a"), py::arg("bin_b"), py::arg("margin") = bg.margin,
     py::arg("spline_deg") = bg.spline_deg, py::arg("smooth_sigma") = bg.smooth_sigma, py::arg("outer_width") = bg.outer_width,
     py::arg("end_margin") = bg.end_margin, py::arg("threads") = 0, py::arg("halos") = bg.halos);

  m.def("flag_low_sensitivity", [](const FArr& img, const std::optional<FArr>& err, const std::optional<U8Arr>& mask,
                                   const DArr& lower, const DArr& upper, const std::vector<int>& orders,
                                   const std::vector<double>& bmin, const std::vector<double>& bmax, bool a_is_x,
                                   int bin_a, int bin_b, double clip_sigma, int half_a, int half_b, int threads) {
    auto v = image_view(img, "image");
    auto pe = same_shape(err, v, "error map"); auto pm = same_shape(mask, v, "mask");
    auto L = to_poly(lower, "lower"), U = to_poly(upper, "upper"); auto O = to_orders(orders, bmin, bmax);
    soxs::LowSensResult r;
    { py::gil_scoped_release rel;
      r = soxs::flag_low_sensitivity(v, pe, {pm}, L, U, O, {a_is_x, bin_a, bin_b}, {clip_sigma, half_a, half_b}, threads); }
    return py::make_tuple(to_image(std::move(r.flags), v.ny, v.nx), r.n_flagged, to_array(std::move(r.sigma_rel)));
  }, py::arg("image"), py::arg("error"), py::arg("mask"), py::arg("lower"), py::arg("upper"), py::arg("orders"),
     py::arg("b_min"), py::arg("b_max"), py::arg("a_is_x"), py::arg("bin_a"), py::arg("bin_b"),
     py::arg("clip_sigma") = ls.clip_sigma, py::arg("half_a") = ls.half_a, py::arg("half_b") = ls.half_b,
     py::arg("threads") = 0);

  m.def("in_order_mask", [](int64_t ny, int64_t nx, const DArr& lower, const DArr& upper, const std::vector<int>& orders,
                            const std::vector<double>& bmin, const std::vector<double>& bmax, bool a_is_x, int bin_a,
                            int bin_b) {
    auto r = soxs::in_order_mask(ny, nx, to_poly(lower, "lower"), to_poly(upper, "upper"), to_orders(orders, bmin, bmax),
                                 {a_is_x, bin_a, bin_b});
    return to_image(std::move(r), ny, nx);
  }, py::arg("ny"), py::arg("nx"), py::arg("lower"), py::arg("upper"), py::arg("orders"), py::arg("b_min"),
     py::arg("b_max"), py::arg("a_is_x"), py::arg("bin_a"), py::arg("bin_b"));

  m.def("stitch", [](const FArr& d_flux, const FArr& d_err, const U8Arr& d_qual, const FArr& q_flux, const FArr& q_err,
                     const U8Arr& q_qual, const DArr& d_lower, const DArr& d_upper, int crossover, bool a_is_x,
                     int bin_a, int bin_b, double offset, double scale) {
    auto v = image_view(q_flux, "QTH flux");
    for (auto* a : {&d_flux, &d_err, &q_err}) same_shape(std::optional<FArr>(*a), v, "stitch input");
    for (auto* a : {&d_qual, &q_qual}) same_shape(std::optional<U8Arr>(*a), v, "stitch quality");
    soxs::Geometry g{a_is_x, bin_a, bin_b};
    bool d_below = true;
    auto line = soxs::stitch_line(to_poly(d_lower, "lower"), to_poly(d_upper, "upper"), crossover, g.len_b(v), g,
                                  offset, &d_below);
    py::array_t<float> f({v.ny, v.nx}), e({v.ny, v.nx});
    py::array_t<uint8_t> q({v.ny, v.nx});
    soxs::stitch_frames(d_flux.data(), d_err.data(), d_qual.data(), q_flux.data(), q_err.data(), q_qual.data(), v.ny,
                        v.nx, g, line, d_below, scale, f.mutable_data(), e.mutable_data(), q.mutable_data());
    return py::make_tuple(f, e, q, to_array(std::move(line)), d_below);
  }, py::arg("d_flux"), py::arg("d_err"), py::arg("d_qual"), py::arg("q_flux"), py::arg("q_err"), py::arg("q_qual"),
     py::arg("d_lower"), py::arg("d_upper"), py::arg("crossover"), py::arg("a_is_x"), py::arg("bin_a"),
     py::arg("bin_b"), py::arg("offset") = uvb.offset, py::arg("scale") = 1.0);
}
