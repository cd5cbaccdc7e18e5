// Bindings of the variance engine (cpp/include/fisherkit/variance.hpp) and of the
// per-input output Hessians (accumulate.hpp). Marshalling only.
#include "common.hpp"

namespace fisherkit::py_bind {
namespace {

void bind(py::module_& m) {
  m.def(
      "variance_sum",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts,
         const std::string& head, double sigma, py::handle X, const std::string& which,
         const std::string& shape, std::int64_t chunk, py::handle out) {
        auto oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          auto o = as_vector<elem_t<decltype(x)>>(oi, "out");
          const Head hd = make_head(head, sigma);
          const Moment mo = parse_moment(which);
          const Shape sh = parse_shape(shape);
          py::gil_scoped_release nogil;
          route(xi, [&] { variance_sum(mlp, hd, x, mo, sh, o, chunk); },
                [&] { portable::variance_sum(mlp, hd, x, mo, sh, o, chunk); },
                [&](cuda::Stream st) { cuda::variance_sum_cuda(mlp, hd, x, mo, sh, o, chunk, st); });
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"),
      py::arg("sigma"), py::arg("X"), py::arg("which"), py::arg("shape"), py::arg("chunk"),
      py::arg("out"));

  m.def(
      "output_hessians",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, py::handle X,
         py::handle out, std::int64_t chunk) {
        auto oi = array_info(out, "out");
        with_mlp(Ws, bs, acts, array_info(X, "X"), [&](const auto& mlp, auto x) {
          auto o = as_matrix<elem_t<decltype(x)>>(oi, "out");
          py::gil_scoped_release nogil;
          output_hessians(mlp, x, o, chunk);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("out"),
      py::arg("chunk") = 0);
}

Register reg(35, bind);

}  // namespace
}  // namespace fisherkit::py_bind
