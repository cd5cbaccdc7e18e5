// Bindings of the MLP passes (cpp/include/fisherkit/mlp.hpp).
#include "common.hpp"

namespace fisherkit::py_bind {
namespace {

using Acts = std::vector<std::string>;

void bind(py::module_& m) {
  m.def(
      "forward",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, py::handle X, py::handle out,
         std::int64_t chunk) {
        auto xi = array_info(X, "X");
        auto oi = array_info(out, "out");
        dispatch(xi.dtype, "X", [&](auto t) {
          using T = decltype(t);
          std::vector<ArrayInfo> keep;
          auto mlp = make_mlp<T>(Ws, bs, acts, keep);
          auto x = as_matrix<const T>(xi, "X");
          auto o = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          forward(mlp, x, o, chunk);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("out"),
      py::arg("chunk") = 0);

  m.def(
      "log_likelihood",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma,
         py::handle X, py::handle y, py::handle out, std::int64_t chunk) {
        auto xi = array_info(X, "X"), yi = array_info(y, "y"), oi = array_info(out, "out");
        dispatch(xi.dtype, "X", [&](auto t) {
          using T = decltype(t);
          std::vector<ArrayInfo> keep;
          auto mlp = make_mlp<T>(Ws, bs, acts, keep);
          auto h = make_head(head, sigma);
          auto x = as_matrix<const T>(xi, "X");
          auto yy = as_matrix<const T>(yi, "y");
          auto o = as_vector<T>(oi, "out");
          py::gil_scoped_release nogil;
          log_likelihood(mlp, h, x, yy, o, chunk);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"),
      py::arg("sigma"), py::arg("X"), py::arg("y"), py::arg("out"), py::arg("chunk") = 0);

  m.def(
      "per_sample_grads",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma,
         py::handle X, py::handle y, py::handle out, std::int64_t chunk) {
        auto xi = array_info(X, "X"), yi = array_info(y, "y"), oi = array_info(out, "out");
        dispatch(xi.dtype, "X", [&](auto t) {
          using T = decltype(t);
          std::vector<ArrayInfo> keep;
          auto mlp = make_mlp<T>(Ws, bs, acts, keep);
          auto h = make_head(head, sigma);
          auto x = as_matrix<const T>(xi, "X");
          auto yy = as_matrix<const T>(yi, "y");
          auto o = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          per_sample_grads(mlp, h, x, yy, o, chunk);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"),
      py::arg("sigma"), py::arg("X"), py::arg("y"), py::arg("out"), py::arg("chunk") = 0);

  m.def(
      "nll_gradient",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma,
         py::handle X, py::handle y, py::handle out, std::int64_t chunk) {
        auto xi = array_info(X, "X"), yi = array_info(y, "y"), oi = array_info(out, "out");
        return dispatch(xi.dtype, "X", [&](auto t) {
          using T = decltype(t);
          std::vector<ArrayInfo> keep;
          auto mlp = make_mlp<T>(Ws, bs, acts, keep);
          auto h = make_head(head, sigma);
          auto x = as_matrix<const T>(xi, "X");
          auto yy = as_matrix<const T>(yi, "y");
          auto o = as_vector<T>(oi, "out");
          py::gil_scoped_release nogil;
          return nll_gradient(mlp, h, x, yy, o, chunk);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"),
      py::arg("sigma"), py::arg("X"), py::arg("y"), py::arg("out"), py::arg("chunk") = 0);

  m.def(
      "jvp",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, py::handle X, py::handle v,
         py::handle out1, py::object out2, std::int64_t chunk) {
        auto xi = array_info(X, "X"), vi = array_info(v, "v"), o1 = array_info(out1, "out1");
        ArrayInfo o2;
        if (!out2.is_none()) o2 = array_info(out2, "out2");
        dispatch(xi.dtype, "X", [&](auto t) {
          using T = decltype(t);
          std::vector<ArrayInfo> keep;
          auto mlp = make_mlp<T>(Ws, bs, acts, keep);
          auto x = as_matrix<const T>(xi, "X");
          auto vv = as_vector<const T>(vi, "v");
          auto a = as_matrix<T>(o1, "out1");
          MatrixView<T> b;
          if (!out2.is_none()) b = as_matrix<T>(o2, "out2");
          py::gil_scoped_release nogil;
          jvp(mlp, x, vv, a, b, chunk);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("v"),
      py::arg("out1"), py::arg("out2"), py::arg("chunk") = 0);

  m.def(
      "fisher_vector_product",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma,
         py::handle X, py::handle v, py::handle out, std::int64_t chunk) {
        auto xi = array_info(X, "X"), vi = array_info(v, "v"), oi = array_info(out, "out");
        dispatch(xi.dtype, "X", [&](auto t) {
          using T = decltype(t);
          std::vector<ArrayInfo> keep;
          auto mlp = make_mlp<T>(Ws, bs, acts, keep);
          auto hd = make_head(head, sigma);
          auto x = as_matrix<const T>(xi, "X");
          auto vv = as_vector<const T>(vi, "v");
          auto o = as_vector<T>(oi, "out");
          py::gil_scoped_release nogil;
          fisher_vector_product(mlp, hd, x, vv, o, chunk);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"),
      py::arg("sigma"), py::arg("X"), py::arg("v"), py::arg("out"), py::arg("chunk") = 0);

  m.def(
      "output_jacobian",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, py::handle X, py::handle out,
         std::int64_t chunk) {
        auto xi = array_info(X, "X"), oi = array_info(out, "out");
        dispatch(xi.dtype, "X", [&](auto t) {
          using T = decltype(t);
          std::vector<ArrayInfo> keep;
          auto mlp = make_mlp<T>(Ws, bs, acts, keep);
          auto x = as_matrix<const T>(xi, "X");
          auto o = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          output_jacobian(mlp, x, o, chunk);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("out"),
      py::arg("chunk") = 0);
}

Register reg(10, bind);

}  // namespace
}  // namespace fisherkit::py_bind
