// Binding of the whole master-flat computation.
#include "convert.hpp"

py::dict fit_dict(soxs::FitResult&& f) {
  py::dict d;
  d["coeffs"] = from_poly(f.poly); d["residuals"] = to_array(std::move(f.residuals));
  d["clipped"] = to_array(std::move(f.clipped)); d["iterations"] = f.iterations; d["rms"] = f.rms;
  return d;
}

py::dict edges_dict(soxs::EdgeFit&& e) {
  py::dict edges, pts;
  auto& E = e.points;
  pts["order"] = to_array(std::move(E.order)); pts["b"] = to_array(std::move(E.b));
  pts["lower"] = to_array(std::move(E.lower)); pts["upper"] = to_array(std::move(E.upper));
  pts["level_pct"] = to_array(std::move(E.level_pct)); pts["peak"] = to_array(std::move(E.peak));
  pts["n_slices_per_order"] = to_array(std::move(E.n_slices_per_order));
  edges["points"] = pts; edges["lower"] = fit_dict(std::move(e.lower));
  edges["upper"] = fit_dict(std::move(e.upper));
  edges["n_used_per_order"] = to_array(std::move(e.n_used_per_order));
  edges["peak_per_order"] = to_array(std::move(e.peak_per_order));
  edges["level_pct_per_order"] = to_array(std::move(e.level_pct_per_order));
  edges["min_threshold"] = to_array(std::move(e.min_threshold));
  edges["max_threshold"] = to_array(std::move(e.max_threshold));
  return edges;
}

py::dict qc_dict(const soxs::QCValues& q) {
  py::dict qc;
  qc["ORDEXP10"] = q.ordexp10; qc["ORDEXP50"] = q.ordexp50; qc["ORDEXP90"] = q.ordexp90;
  qc["X RES MIN"] = q.x_res_min; qc["X RES MAX"] = q.x_res_max; qc["X RES SD"] = q.x_res_sd;
  qc["N LOW SENS"] = q.n_low_sens; qc["COLDPIX NUM"] = q.coldpix_num; qc["COLDPIX FRAC"] = q.coldpix_frac;
  qc["INNER ORDER PIX MEAN"] = q.inner_mean; qc["INNER ORDER PIX SUM"] = q.inner_sum;
  return qc;
}

void bind_master(py::module_& m) {
  m.def("master_flat", [](const std::vector<FArr>& frames, const std::optional<std::vector<FArr>>& errors,
                          const std::optional<U8Arr>& bpm, const DArr& centre, const std::vector<int>& orders,
                          const std::vector<double>& bmin, const std::vector<double>& bmax, bool a_is_x, int bin_a,
                          int bin_b, const py::dict& params) {
    if (frames.empty()) throw std::invalid_argument("master_flat: no frames given");
    auto v0 = image_view(frames[0], "frame 0");
    std::vector<const float*> f, e;
    for (size_t k = 0; k < frames.size(); ++k) {
      auto v = image_view(frames[k], "frame");
      if (v.ny != v0.ny || v.nx != v0.nx) throw std::invalid_argument("frame " + std::to_string(k) + " differs in shape from frame 0");
      f.push_back(v.data);
      if (errors) {
        if (errors->size() != frames.size()) throw std::invalid_argument("need one error map per frame");
        e.push_back(same_shape(std::optional<FArr>((*errors)[k]), v0, "error map"));
      }
    }
    auto pm = same_shape(bpm, v0, "bad-pixel map");
    auto P = to_poly(centre, "centre"); auto O = to_orders(orders, bmin, bmax); auto mp = soxs::master_params_from(named_params(params));
    soxs::MasterFlatResult r;
    { py::gil_scoped_release rel; r = soxs::master_flat(f, e, {pm}, v0.ny, v0.nx, P, O, {a_is_x, bin_a, bin_b}, mp); }
    py::dict d;
    int64_t ny = v0.ny, nx = v0.nx;
    d["flux"] = to_image(std::move(r.flux), ny, nx); d["error"] = to_image(std::move(r.error), ny, nx);
    d["quality"] = to_image(std::move(r.quality), ny, nx);
    d["background"] = r.background.empty() ? py::object(py::none()) : py::object(to_image(std::move(r.background), ny, nx));
    d["stacked"] = r.stacked.empty() ? py::object(py::none()) : py::object(to_image(std::move(r.stacked), ny, nx));
    d["norm_first"] = to_array(std::move(r.norm_first)); d["norm_second"] = to_array(std::move(r.norm_second));
    d["order_median_flux"] = to_array(std::move(r.order_median_flux));
    d["edges"] = edges_dict(std::move(r.edges));
    d["qc"] = qc_dict(r.qc);
    return d;
  }, py::arg("frames"), py::arg("errors"), py::arg("bpm"), py::arg("centre"), py::arg("orders"), py::arg("b_min"),
     py::arg("b_max"), py::arg("a_is_x"), py::arg("bin_a"), py::arg("bin_b"), py::arg("params") = py::dict());

  m.def("check_order_table", [](const DArr& centre, const std::vector<int>& orders, const std::vector<double>& bmin,
                                const std::vector<double>& bmax, bool a_is_x, int bin_a, int bin_b, int64_t ny,
                                int64_t nx) {
    soxs::check_order_table(to_poly(centre, "centre"), to_orders(orders, bmin, bmax), {a_is_x, bin_a, bin_b}, ny, nx);
  }, py::arg("centre"), py::arg("orders"), py::arg("b_min"), py::arg("b_max"), py::arg("a_is_x"), py::arg("bin_a"),
     py::arg("bin_b"), py::arg("ny"), py::arg("nx"),
     "The order table against the frames' geometry (what master_flat checks on entry), before any pixel is read.");

  m.def("check_params", [](const py::dict& params, size_t n_orders) {
    soxs::check_recipe_params(named_params(params), n_orders);
  }, py::arg("params"), py::arg("n_orders"),
     "The parameter limits that need the order table (order_deg < number of orders) or tie parameters together.");
}
