// Bindings of preparation / detrending and of the UVB combination.
#include "convert.hpp"

namespace {

// One lamp's result dict; every image must have the shape (ny, nx) of the QTH stack (the core
// reads ny * nx values from each).
soxs::LampMaster lamp_master(const py::dict& r, const char* lamp, int64_t ny, int64_t nx, std::vector<py::object>& keep) {
  const soxs::ImageView shape{nullptr, ny, nx};
  // keep the converted arrays alive for the duration of the call
  auto f32 = [&](const char* key) -> const float* {
    if (!r.contains(key) || r[key].is_none()) return nullptr;
    FArr a = r[key].cast<FArr>();
    keep.push_back(a);
    return same_shape(std::optional<FArr>(a), shape, (std::string(lamp) + " " + key).c_str());
  };
  soxs::LampMaster m;
  m.stacked = f32("stacked"); m.background = f32("background"); m.error = f32("error");
  if (!m.stacked || !m.error) throw std::invalid_argument(std::string(lamp) + ": stacked and error images are required");
  U8Arr q = r["quality"].cast<U8Arr>();
  keep.push_back(q);
  m.quality = same_shape(std::optional<U8Arr>(q), shape, (std::string(lamp) + " quality").c_str());
  py::dict e = r["edges"].cast<py::dict>();
  m.lower = to_poly(e["lower"]["coeffs"].cast<DArr>(), "lower");
  m.upper = to_poly(e["upper"]["coeffs"].cast<DArr>(), "upper");
  m.n_used = e["n_used_per_order"].cast<std::vector<int>>();
  m.n_slices = e["points"]["n_slices_per_order"].cast<std::vector<int>>();
  m.order_median_flux = r["order_median_flux"].cast<std::vector<double>>();
  auto lv = r["norm_second"].cast<std::vector<double>>();
  double s = 0;
  for (double x : lv) s += x;
  m.level_e = lv.empty() ? 1.0 : s / double(lv.size());
  py::dict qc = r["qc"].cast<py::dict>();
  m.qc.ordexp10 = qc["ORDEXP10"].cast<double>(); m.qc.ordexp50 = qc["ORDEXP50"].cast<double>();
  m.qc.ordexp90 = qc["ORDEXP90"].cast<double>();
  return m;
}

}  // namespace

py::dict fit_dict(soxs::FitResult&& f);
py::dict qc_dict(const soxs::QCValues& q);
py::dict edges_dict(soxs::EdgeFit&& e);

void bind_prep(py::module_& m) {
  m.def("prepare_frame", [](const FArr& raw, int rot90, int64_t row0, int64_t row1, int64_t col0, int64_t col1,
                            float gain) {
    auto v = image_view(raw, "raw frame");
    if (row1 <= row0 || col1 <= col0 || row1 - row0 > std::max(v.ny, v.nx) || col1 - col0 > std::max(v.ny, v.nx))
      throw std::invalid_argument("prepare_frame: empty or oversized science window");
    py::array_t<float> out({row1 - row0, col1 - col0});
    float* o = out.mutable_data();
    py::gil_scoped_release rel;
    soxs::prepare_frame(v, {rot90, row0, row1, col0, col1, gain}, o);
    return out;
  }, py::arg("raw"), py::arg("rot90"), py::arg("row0"), py::arg("row1"), py::arg("col0"), py::arg("col1"),
     py::arg("gain"));

  m.def("prepare_frame_int", [](const py::array& raw, double bzero, int rot90, int64_t row0, int64_t row1,
                                int64_t col0, int64_t col1, float gain) {
    // the data unit as read (astropy's do_not_scale_image_data): no conversion, so checked here
    const py::dtype dt = raw.dtype();
    const char kind = dt.kind();
    const int bitpix = int(dt.itemsize()) * 8;
    if (raw.ndim() != 2 || !(raw.flags() & py::array::c_style))
      throw std::invalid_argument("prepare_frame_int: need a C-contiguous 2-D array");
    if (!((kind == 'u' && bitpix == 8) || (kind == 'i' && (bitpix == 16 || bitpix == 32))))
      throw std::invalid_argument("prepare_frame_int: need uint8, int16 or int32 pixels");
    if (row1 <= row0 || col1 <= col0 || row1 - row0 > std::max(raw.shape(0), raw.shape(1)) ||
        col1 - col0 > std::max(raw.shape(0), raw.shape(1)))
      throw std::invalid_argument("prepare_frame: empty or oversized science window");
    const uint16_t one = 1;
    const bool host_big = *reinterpret_cast<const uint8_t*>(&one) == 0;
    const char order = dt.byteorder();   // '>' as in a FITS file, '<', or '=' (native)
    const bool big = order == '>' || (order == '=' && host_big);
    soxs::RawIntView v{raw.data(), raw.shape(0), raw.shape(1), bitpix, big, bzero};
    py::array_t<float> out({row1 - row0, col1 - col0});
    float* o = out.mutable_data();
    py::gil_scoped_release rel;
    soxs::prepare_frame_int(v, {rot90, row0, row1, col0, col1, gain}, o);
    return out;
  }, py::arg("raw"), py::arg("bzero"), py::arg("rot90"), py::arg("row0"), py::arg("row1"), py::arg("col0"),
     py::arg("col1"), py::arg("gain"),
     "prepare_frame of float32(raw + bzero) for a FITS integer data unit as stored (uint8, int16, int32; any "
     "byte order), without a float32 copy of the frame.");

  m.def("detrend_frame", [](py::array_t<float, py::array::c_style> data, const std::optional<FArr>& cal,
                            const std::optional<FArr>& cal_err, double cal_scale, double ron) {
    auto v = image_view(FArr(data), "data");
    py::array_t<float> err({v.ny, v.nx});
    float *d = data.mutable_data(), *e = err.mutable_data();
    const float *c = same_shape(cal, v, "calibration"), *ce = same_shape(cal_err, v, "calibration error");
    py::gil_scoped_release rel;
    soxs::detrend_frame(d, v.ny * v.nx, c, ce, cal_scale, ron, e);
    return err;
  }, py::arg("data").noconvert(), py::arg("cal"), py::arg("cal_err"), py::arg("cal_scale"), py::arg("ron"),
     "Subtract cal * cal_scale from data IN PLACE (float32, C-contiguous) and return the error map.");

  m.def("sample_percentile", [](const FArr& img, int step, double q) {
    auto v = image_view(img, "image");
    py::gil_scoped_release rel;
    return soxs::sample_percentile(v, step, q);
  }, py::arg("img"), py::arg("step"), py::arg("q"), "numpy.percentile(img[::step, ::step], q).");

  m.def("pair_by_time", &soxs::pair_by_time, py::arg("flat_mjd"), py::arg("off_mjd"),
        "Index of the lamp-off frame for each flat: nearest in time, each used once while unused ones remain.");

  m.def("combine_uvb", [](const py::dict& d, const py::dict& q, const DArr& centre_q, const std::vector<int>& orders,
                          const std::vector<double>& bmin, const std::vector<double>& bmax, bool a_is_x, int bin_a,
                          int bin_b, const py::dict& params) {
    std::vector<py::object> keep;
    FArr f0 = q["stacked"].cast<FArr>();
    auto v0 = image_view(f0, "QTH stacked");
    const int64_t ny = v0.ny, nx = v0.nx;
    auto D = lamp_master(d, "D2 master", ny, nx, keep), Q = lamp_master(q, "QTH master", ny, nx, keep);
    soxs::UvbParams p = soxs::uvb_params_from(named_params(params));
    auto C = to_poly(centre_q, "centre");
    auto O = to_orders(orders, bmin, bmax);
    soxs::UvbResult r;
    { py::gil_scoped_release rel; r = soxs::combine_uvb(D, Q, ny, nx, C, O, {a_is_x, bin_a, bin_b}, p); }
    py::dict out;
    out["crossover"] = r.crossover; out["scale"] = r.scale; out["d_below"] = r.d_below;
    out["line"] = to_array(std::move(r.line));
    out["flux"] = to_image(std::move(r.flux), ny, nx); out["error"] = to_image(std::move(r.error), ny, nx);
    out["stacked"] = to_image(std::move(r.stacked), ny, nx); out["quality"] = to_image(std::move(r.quality), ny, nx);
    out["edges"] = edges_dict(std::move(r.edges));
    out["qc"] = qc_dict(r.qc);
    out["background"] = py::none();
    return out;
  }, py::arg("d"), py::arg("q"), py::arg("centre_q"), py::arg("orders"), py::arg("b_min"), py::arg("b_max"),
     py::arg("a_is_x"), py::arg("bin_a"), py::arg("bin_b"), py::arg("params") = py::dict());

  m.def("choose_crossover", &soxs::choose_crossover, py::arg("orders"), py::arg("slices"), py::arg("used_d"),
        py::arg("used_q"), py::arg("elec_d"), py::arg("elec_q"), py::arg("min_frac") = soxs::UvbParams{}.min_frac);
}
