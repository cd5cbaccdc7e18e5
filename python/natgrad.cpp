// Bindings of the natural-gradient solvers (cpp/include/fisherkit/natgrad.hpp). The Python
// layer (src/fisherkit/natgrad/) passes contiguous float64 arrays; we only marshal.
#include "common.hpp"
#include "fisherkit/natgrad.hpp"

namespace fisherkit::py_bind {
namespace {

MatrixView<const double> in64(py::handle a, const char* name, std::vector<ArrayInfo>& keep) {
  keep.push_back(array_info(a, name));
  return as_matrix<const double>(keep.back(), name);
}
MatrixView<double> out64(py::handle a, const char* name, std::vector<ArrayInfo>& keep) {
  keep.push_back(array_info(a, name));
  return as_matrix<double>(keep.back(), name);
}
VectorView<const double> vin64(py::handle a, const char* name, std::vector<ArrayInfo>& keep) {
  keep.push_back(array_info(a, name));
  return as_vector<const double>(keep.back(), name);
}

void bind(py::module_& m) {
  m.def(
      "unit_block_solve",
      [](py::handle blocks, py::handle rhs, double damping, py::handle out, std::int64_t nrhs, py::object status) {
        std::vector<ArrayInfo> keep;
        auto b = in64(blocks, "blocks", keep);
        auto r = in64(rhs, "rhs", keep);
        auto o = out64(out, "out", keep);
        VectorView<int> st;
        if (!status.is_none()) {
          keep.push_back(array_info(status, "status"));
          const ArrayInfo& a = keep.back();
          if (a.shape.size() != 1) throw py::value_error("argument 'status' must be 1-D");
          st = VectorView<int>{static_cast<int*>(a.ptr), a.shape[0], a.strides[0], a.device};
        }
        Supervised call;
        py::gil_scoped_release nogil;
        unit_block_solve(b, r, damping, o, nrhs, st);
      },
      py::arg("blocks"), py::arg("rhs"), py::arg("damping"), py::arg("out"), py::arg("nrhs") = 1,
      py::arg("status") = py::none(),
      "(blocks + damping I)^-1 rhs per block by Cholesky; blocks (B, k*k), rhs/out (B, k*nrhs), float64.");

  m.def(
      "unit_sample_space_solve",
      [](py::handle xt, py::handle g2, py::handle rhs, double damping, py::handle out) {
        std::vector<ArrayInfo> keep;
        auto a = in64(xt, "xt", keep);
        auto g = in64(g2, "g2", keep);
        auto r = in64(rhs, "rhs", keep);
        auto o = out64(out, "out", keep);
        py::gil_scoped_release nogil;
        unit_sample_space_solve(a, g, r, damping, o);
      },
      py::arg("xt"), py::arg("g2"), py::arg("rhs"), py::arg("damping"), py::arg("out"),
      "Exact unit blocks in sample space: xt (N, k), g2 (N, m), rhs/out (m, k), float64.");

  m.def(
      "dpr2_rows_solve",
      [](py::handle a, py::handle W, py::handle S, py::handle q, py::handle rhs, py::handle out, py::handle ux) {
        std::vector<ArrayInfo> keep;
        auto av = vin64(a, "a", keep);
        auto w = in64(W, "W", keep);
        auto s = in64(S, "S", keep);
        auto qv = in64(q, "q", keep);
        auto r = in64(rhs, "rhs", keep);
        auto o = out64(out, "out", keep);
        auto u = out64(ux, "ux", keep);
        py::gil_scoped_release nogil;
        dpr2_rows_solve(av, w, s, qv, r, o, u);
      },
      py::arg("a"), py::arg("W"), py::arg("S"), py::arg("q"), py::arg("rhs"), py::arg("out"), py::arg("ux"),
      "Per row b: (a_b I + U S_b U^T) x = rhs_b - U q_b with U = [1, W_b]; out (B, n), ux (B, 2) = U^T x. float64.");

  m.def(
      "quasi_diagonal_solve",
      [](py::handle m00, py::handle m0i, py::handle mii, py::handle gW, py::handle gb, double damping, py::handle dW,
         py::handle db) {
        std::vector<ArrayInfo> keep;
        auto a = vin64(m00, "m00", keep);
        MatrixView<const double> b;
        if (!m0i.is_none()) b = in64(m0i, "m0i", keep);
        auto c = in64(mii, "mii", keep);
        auto g = in64(gW, "gW", keep);
        auto h = vin64(gb, "gb", keep);
        auto o = out64(dW, "dW", keep);
        keep.push_back(array_info(db, "db"));
        auto ob = as_vector<double>(keep.back(), "db");
        py::gil_scoped_release nogil;
        quasi_diagonal_solve(a, b, c, g, h, damping, o, ob);
      },
      py::arg("m00"), py::arg("m0i"), py::arg("mii"), py::arg("gW"), py::arg("gb"), py::arg("damping"), py::arg("dW"),
      py::arg("db"), "Ollivier's quasi-diagonal update (m0i None: the diagonal update). float64.");
}

Register reg(50, bind);

}  // namespace
}  // namespace fisherkit::py_bind
