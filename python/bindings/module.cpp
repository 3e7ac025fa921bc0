// soxs_mflat._core: pybind11 face of the C++ master-flat engine.
#include "convert.hpp"

void bind_kernels(py::module_& m);
void bind_orders(py::module_& m);
void bind_master(py::module_& m);
void bind_prep(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "soxs-mflat C++ core (float32 kernels; see soxs_mflat.core for documented wrappers)";
  bind_kernels(m);
  bind_orders(m);
  bind_master(m);
  bind_prep(m);
}
