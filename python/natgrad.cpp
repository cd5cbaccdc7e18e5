// Bindings of the unit-wise natural-gradient row kernels (cpp/include/fisherkit/natgrad.hpp).
// src/fisherkit/natgrad.py has made the arrays contiguous and of one dtype; we only marshal.
#include "common.hpp"
#include "fisherkit/natgrad.hpp"

namespace fisherkit::py_bind {
namespace {

void bind(py::module_& m) {
  m.def(
      "unit_row_reductions",
      [](py::handle W, py::handle G, py::handle out) {
        auto wi = array_info(W, "W"), gi = array_info(G, "G"), oi = array_info(out, "out");
        dispatch(wi.dtype, "W", [&](auto t) {
          using T = decltype(t);
          auto wv = as_matrix<const T>(wi, "W");
          auto gv = as_matrix<const T>(gi, "G");
          auto ov = as_matrix<double>(oi, "out");
          py::gil_scoped_release nogil;
          unit_row_reductions(wv, gv, ov);
        });
      },
      py::arg("W"), py::arg("G"), py::arg("out"),
      "out (m, 4) float64 = per row [sum W^2, sum W, sum W*G, sum G]; W, G: (m, n).");

  m.def(
      "unit_row_combine",
      [](py::handle G, py::handle W, py::handle coef, py::handle out) {
        auto gi = array_info(G, "G"), wi = array_info(W, "W"), ci = array_info(coef, "coef"),
             oi = array_info(out, "out");
        dispatch(gi.dtype, "G", [&](auto t) {
          using T = decltype(t);
          auto gv = as_matrix<const T>(gi, "G");
          auto wv = as_matrix<const T>(wi, "W");
          auto cv = as_matrix<const double>(ci, "coef");
          auto ov = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          unit_row_combine(gv, wv, cv, ov);
        });
      },
      py::arg("G"), py::arg("W"), py::arg("coef"), py::arg("out"),
      "out (m, n) = coef[:, 0:1] * G + coef[:, 1:2] * W + coef[:, 2:3]; coef: (m, 3) float64.");
}

Register reg(50, bind);

}  // namespace
}  // namespace fisherkit::py_bind
