// Conversions between NumPy arrays and the core's plain views (zero-copy where possible).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "soxs/mflat.hpp"

namespace py = pybind11;
using FArr = py::array_t<float, py::array::c_style | py::array::forcecast>;
using U8Arr = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using DArr = py::array_t<double, py::array::c_style | py::array::forcecast>;

inline soxs::ImageView image_view(const FArr& a, const char* name) {
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must be 2-D, got " + std::to_string(a.ndim()) + "-D");
  soxs::check_image_shape(a.shape(0), a.shape(1), name);   // the core's limits at every entry, empty included
  return soxs::ImageView{a.data(), a.shape(0), a.shape(1)};
}

// Optional companion array (mask or error) that must match the image shape.
template <class Arr>
inline const typename Arr::value_type* same_shape(const std::optional<Arr>& a, const soxs::ImageView& v,
                                                  const char* name) {
  if (!a) return nullptr;
  if (a->ndim() != 2 || a->shape(0) != v.ny || a->shape(1) != v.nx)
    throw std::invalid_argument(std::string(name) + " has shape (" + std::to_string(a->shape(0)) + ", " +
                                std::to_string(a->ndim() > 1 ? a->shape(1) : 0) + "), expected (" +
                                std::to_string(v.ny) + ", " + std::to_string(v.nx) + ")");
  return a->data();
}

inline soxs::Poly2D to_poly(const DArr& c, const char* name) {
  if (c.ndim() != 2 || c.shape(0) < 1 || c.shape(1) < 1)
    throw std::invalid_argument(std::string(name) + " must be a 2-D coefficient array c[i_order, j_b]");
  soxs::Poly2D p;
  if (c.shape(0) > 16 || c.shape(1) > 16)   // before the int casts below
    throw std::invalid_argument(std::string(name) + ": polynomial degrees must be in [0, 15]");
  p.deg_n = int(c.shape(0)) - 1; p.deg_b = int(c.shape(1)) - 1;
  p.c.assign(c.data(), c.data() + c.size());
  soxs::check_poly_coeffs(p, name);
  return p;
}

inline py::array_t<double> from_poly(const soxs::Poly2D& p) {
  py::array_t<double> a({p.deg_n + 1, p.deg_b + 1});
  std::copy(p.c.begin(), p.c.end(), a.mutable_data());
  return a;
}

inline std::vector<soxs::OrderSpan> to_orders(const std::vector<int>& n, const std::vector<double>& bmin,
                                              const std::vector<double>& bmax) {
  if (n.size() != bmin.size() || n.size() != bmax.size())
    throw std::invalid_argument("orders, b_min and b_max must have the same length");
  std::vector<soxs::OrderSpan> o(n.size());
  for (size_t i = 0; i < n.size(); ++i) o[i] = {n[i], bmin[i], bmax[i]};
  return o;
}

template <class T>
inline py::array_t<T> to_array(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, heap->data(), owner);
}

template <class T>
inline py::array_t<T> to_image(std::vector<T>&& v, int64_t ny, int64_t nx) {
  return to_array(std::move(v)).reshape({ny, nx});
}

// Recipe parameters from a Python dict (numbers and bools) to the core's named map.
inline soxs::NamedParams named_params(const py::dict& d) {
  soxs::NamedParams m;
  for (auto item : d) {
    py::object v = py::reinterpret_borrow<py::object>(item.second);
    if (py::isinstance<py::bool_>(v) || py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v))
      m[item.first.cast<std::string>()] = v.cast<double>();
  }
  return m;
}
