// Bindings of the structured solves (cpp/include/fisherkit/dpr2.hpp, rank1.hpp). The Python
// layer (src/fisherkit/linalg.py) has already reshaped to the core's 2-D layouts, made the
// arrays contiguous and converted them to one dtype; here we only marshal.
#include "common.hpp"
#include "fisherkit/dpr2.hpp"
#include "fisherkit/rank1.hpp"

namespace fisherkit::py_bind {
namespace {

/// The optional int32 per-block status array (None: errors are raised instead).
VectorView<int> status_view(py::handle status) {
  if (status.is_none()) return VectorView<int>{};
  auto a = array_info(status, "status");
  if (a.shape.size() != 1) throw py::value_error("argument 'status' must be 1-D");
  return VectorView<int>{static_cast<int*>(a.ptr), a.shape[0], a.strides[0], a.device};
}

void bind(py::module_& m) {
  m.def(
      "dpr2_solve",
      [](py::handle d, py::handle U, py::handle S, py::handle rhs, std::int64_t k, double damping,
         py::handle out, py::handle status) {
        auto di = array_info(d, "d"), ui = array_info(U, "U"), si = array_info(S, "S"),
             ri = array_info(rhs, "rhs"), oi = array_info(out, "out");
        dispatch(di.dtype, "d", [&](auto t) {
          using T = decltype(t);
          auto dv = as_matrix<const T>(di, "d");
          auto uv = as_matrix<const T>(ui, "U");
          auto sv = as_matrix<const T>(si, "S");
          auto rv = as_matrix<const T>(ri, "rhs");
          auto ov = as_matrix<T>(oi, "out");
          const VectorView<int> st = status_view(status);
          py::gil_scoped_release nogil;
          dpr2_solve(dv, uv, sv, rv, k, damping, ov, st, stream_of(di));
        });
      },
      py::arg("d"), py::arg("U"), py::arg("S"), py::arg("rhs"), py::arg("k"), py::arg("damping"),
      py::arg("out"), py::arg("status") = py::none());

  m.def(
      "dpr2_inverse",
      [](py::handle d, py::handle U, py::handle S, double damping, py::handle out) {
        auto di = array_info(d, "d"), ui = array_info(U, "U"), si = array_info(S, "S"),
             oi = array_info(out, "out");
        dispatch(di.dtype, "d", [&](auto t) {
          using T = decltype(t);
          auto dv = as_matrix<const T>(di, "d");
          auto uv = as_matrix<const T>(ui, "U");
          auto sv = as_matrix<const T>(si, "S");
          auto ov = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          dpr2_inverse(dv, uv, sv, damping, ov);
        });
      },
      py::arg("d"), py::arg("U"), py::arg("S"), py::arg("damping"), py::arg("out"));

  m.def(
      "rank1_solve",
      [](py::handle psi, py::handle g, double damping, py::handle out) {
        auto pi = array_info(psi, "psi"), gi = array_info(g, "g"), oi = array_info(out, "out");
        dispatch(gi.dtype, "g", [&](auto t) {
          using T = decltype(t);
          auto pv = as_matrix<const T>(pi, "psi");
          auto gv = as_matrix<const T>(gi, "g");
          auto ov = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          rank1_solve(pv, gv, damping, ov);
        });
      },
      py::arg("psi"), py::arg("g"), py::arg("damping"), py::arg("out"));

  m.def(
      "rankb_solve",
      [](py::handle Psi, py::handle g, double damping, py::handle out) {
        auto pi = array_info(Psi, "Psi"), gi = array_info(g, "g"), oi = array_info(out, "out");
        dispatch(gi.dtype, "g", [&](auto t) {
          using T = decltype(t);
          auto pv = as_matrix<const T>(pi, "Psi");
          auto gv = as_matrix<const T>(gi, "g");
          auto ov = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          rankb_solve(pv, gv, damping, ov);
        });
      },
      py::arg("Psi"), py::arg("g"), py::arg("damping"), py::arg("out"));
}

Register reg(40, bind);

}  // namespace
}  // namespace fisherkit::py_bind
