// Bindings of the individual kernels (stack, statistics, edges, fit, background, low-sens).
#include "convert.hpp"

void bind_kernels(py::module_& m) {
  const soxs::ClipParams clip{};          // the defaults are the core's (soxs/mflat.hpp)
  const soxs::MasterFlatParams master{};
  m.def("clip_and_stack", [](const std::vector<FArr>& frames, const std::optional<std::vector<FArr>>& errors,
                             const std::optional<std::vector<U8Arr>>& masks, const std::vector<double>& scales,
                             double sigma_lower, double sigma_upper, int max_iters, int threads, bool error_floor) {
    if (frames.empty()) throw std::invalid_argument("clip_and_stack: no frames given");
    auto v0 = image_view(frames[0], "frame 0");
    std::vector<const float*> f, e; std::vector<const uint8_t*> mk;
    for (size_t k = 0; k < frames.size(); ++k) {
      auto v = image_view(frames[k], "frame");
      if (v.ny != v0.ny || v.nx != v0.nx)
        throw std::invalid_argument("frame " + std::to_string(k) + " has shape (" + std::to_string(v.ny) + ", " +
                                    std::to_string(v.nx) + "), expected (" + std::to_string(v0.ny) + ", " + std::to_string(v0.nx) + ")");
      f.push_back(v.data);
      if (errors) { if (k >= errors->size()) throw std::invalid_argument("fewer error maps than frames");
                    e.push_back(same_shape(std::optional<FArr>((*errors)[k]), v0, "error map")); }
      if (masks) { if (k >= masks->size()) throw std::invalid_argument("fewer masks than frames");
                   mk.push_back(same_shape(std::optional<U8Arr>((*masks)[k]), v0, "mask")); }
    }
    int64_t npix = v0.ny * v0.nx;
    py::array_t<float> mean({v0.ny, v0.nx}), err({v0.ny, v0.nx});
    py::array_t<uint8_t> qual({v0.ny, v0.nx}), nused({v0.ny, v0.nx});
    soxs::ClipParams p{sigma_lower, sigma_upper, max_iters, error_floor};
    float *pm = mean.mutable_data(), *pe = err.mutable_data();
    uint8_t *pq = qual.mutable_data(), *pn = nused.mutable_data();
    {
      py::gil_scoped_release rel;
      soxs::clip_and_stack(f, e, mk, scales, npix, p, pm, pe, pq, pn, threads);
    }
    return py::make_tuple(mean, err, qual, nused);
  }, py::arg("frames"), py::arg("errors") = py::none(), py::arg("masks") = py::none(),
     py::arg("scales") = std::vector<double>{}, py::arg("sigma_lower") = clip.sigma_lower,
     py::arg("sigma_upper") = clip.sigma_upper, py::arg("max_iters") = clip.max_iters, py::arg("threads") = 0,
     py::arg("error_floor") = clip.error_floor);

  m.def("inner_order_stats", [](const FArr& img, const std::optional<FArr>& ref, const std::optional<U8Arr>& mask,
                                const DArr& centre, const std::vector<int>& orders, const std::vector<double>& bmin,
                                const std::vector<double>& bmax, bool a_is_x, int bin_a, int bin_b, int window,
                                double clip_sigma, int clip_iters) {
    auto v = image_view(img, "image");
    auto s = soxs::inner_order_stats(v, same_shape(ref, v, "ref"), {same_shape(mask, v, "mask")},
                                     to_poly(centre, "centre"), to_orders(orders, bmin, bmax),
                                     {a_is_x, bin_a, bin_b}, window, clip_sigma, clip_iters);
    py::dict d;
    d["mean"] = s.mean; d["median"] = s.median; d["p10"] = s.p10; d["p50"] = s.p50; d["p90"] = s.p90; d["n"] = s.n;
    return d;
  }, py::arg("image"), py::arg("ref"), py::arg("mask"), py::arg("centre"), py::arg("orders"), py::arg("b_min"),
     py::arg("b_max"), py::arg("a_is_x"), py::arg("bin_a"), py::arg("bin_b"), py::arg("window"),
     py::arg("clip_sigma") = soxs::NORM_CLIP_SIGMA, py::arg("clip_iters") = soxs::NORM_CLIP_ITERS);

  m.def("fit_global_poly", [](const std::vector<double>& n, const std::vector<double>& b, const std::vector<double>& a,
                              int deg_n, int deg_b, double clip_sigma, int max_iters) {
    soxs::FitResult r;
    { py::gil_scoped_release rel; r = soxs::fit_global_poly(n, b, a, deg_n, deg_b, clip_sigma, max_iters); }
    py::dict d;
    d["coeffs"] = from_poly(r.poly); d["residuals"] = to_array(std::move(r.residuals));
    d["clipped"] = to_array(std::move(r.clipped)); d["iterations"] = r.iterations; d["rms"] = r.rms;
    return d;
  }, py::arg("n"), py::arg("b"), py::arg("a"), py::arg("deg_n"), py::arg("deg_b"), py::arg("clip_sigma") = master.fit_clip_sigma,
     py::arg("max_iters") = master.fit_clip_iters);

  m.def("poly_eval", [](const DArr& c, const DArr& n, const DArr& b) {
    auto P = to_poly(c, "coeffs");
    if (n.size() != b.size()) throw std::invalid_argument("poly_eval: n and b must have the same size");
    std::vector<double> out(n.size());
    for (py::ssize_t i = 0; i < n.size(); ++i) out[i] = P.eval(n.data()[i], b.data()[i]);
    return to_array(std::move(out));
  }, py::arg("coeffs"), py::arg("n"), py::arg("b"));
}
