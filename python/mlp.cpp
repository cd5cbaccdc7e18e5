// Bindings of the MLP passes (cpp/include/fisherkit/mlp.hpp). Marshalling only.
#include "common.hpp"

namespace fisherkit::py_bind {
namespace {

using Acts = std::vector<std::string>;

void bind(py::module_& m) {
  m.def(
      "forward",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, py::handle X, py::handle out,
         std::int64_t chunk) {
        auto oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          auto o = as_matrix<elem_t<decltype(x)>>(oi, "out");
          py::gil_scoped_release nogil;
          route(xi, [&] { forward(mlp, x, o, chunk); }, [&] { portable::forward(mlp, x, o, chunk); },
                [&](cuda::Stream st) { cuda::forward_cuda(mlp, x, o, chunk, st); });
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("out"),
      py::arg("chunk") = 0);

  m.def(
      "log_likelihood",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma,
         py::handle X, py::handle y, py::handle out, std::int64_t chunk) {
        auto yi = array_info(y, "y"), oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          using T = elem_t<decltype(x)>;
          auto yy = as_matrix<const T>(yi, "y");
          auto o = as_vector<T>(oi, "out");
          const Head hd = make_head(head, sigma);
          py::gil_scoped_release nogil;
          route(xi, [&] { log_likelihood(mlp, hd, x, yy, o, chunk); },
                [&] { portable::log_likelihood(mlp, hd, x, yy, o, chunk); },
                [&](cuda::Stream st) { cuda::log_likelihood_cuda(mlp, hd, x, yy, o, chunk, st); });
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"),
      py::arg("sigma"), py::arg("X"), py::arg("y"), py::arg("out"), py::arg("chunk") = 0);

  m.def(
      "per_sample_grads",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma,
         py::handle X, py::handle y, py::handle out, std::int64_t chunk) {
        auto yi = array_info(y, "y"), oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          using T = elem_t<decltype(x)>;
          auto yy = as_matrix<const T>(yi, "y");
          auto o = as_matrix<T>(oi, "out");
          const Head hd = make_head(head, sigma);
          py::gil_scoped_release nogil;
          route(xi, [&] { per_sample_grads(mlp, hd, x, yy, o, chunk); },
                [&] { portable::per_sample_grads(mlp, hd, x, yy, o, chunk); },
                [&](cuda::Stream st) { cuda::per_sample_grads_cuda(mlp, hd, x, yy, o, chunk, st); });
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"),
      py::arg("sigma"), py::arg("X"), py::arg("y"), py::arg("out"), py::arg("chunk") = 0);

  m.def(
      "nll_gradient",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma,
         py::handle X, py::handle y, py::handle out, std::int64_t chunk) {
        auto yi = array_info(y, "y"), oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        return with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          using T = elem_t<decltype(x)>;
          auto yy = as_matrix<const T>(yi, "y");
          auto o = as_vector<T>(oi, "out");
          const Head hd = make_head(head, sigma);
          py::gil_scoped_release nogil;
          return route(xi, [&] { return nll_gradient(mlp, hd, x, yy, o, chunk); },
                       [&] { return portable::nll_gradient(mlp, hd, x, yy, o, chunk); },
                       [&](cuda::Stream st) { return cuda::nll_gradient_cuda(mlp, hd, x, yy, o, chunk, st); });
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"),
      py::arg("sigma"), py::arg("X"), py::arg("y"), py::arg("out"), py::arg("chunk") = 0);

  m.def(
      "jvp",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, py::handle X, py::handle v,
         py::handle out1, py::object out2, std::int64_t chunk) {
        auto vi = array_info(v, "v"), o1 = array_info(out1, "out1");
        ArrayInfo o2;
        if (!out2.is_none()) o2 = array_info(out2, "out2");
        with_mlp(Ws, bs, acts, array_info(X, "X"), [&](const auto& mlp, auto x) {
          using T = elem_t<decltype(x)>;
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
        auto vi = array_info(v, "v"), oi = array_info(out, "out");
        with_mlp(Ws, bs, acts, array_info(X, "X"), [&](const auto& mlp, auto x) {
          using T = elem_t<decltype(x)>;
          auto vv = as_vector<const T>(vi, "v");
          auto o = as_vector<T>(oi, "out");
          const Head hd = make_head(head, sigma);
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
        auto oi = array_info(out, "out");
        with_mlp(Ws, bs, acts, array_info(X, "X"), [&](const auto& mlp, auto x) {
          auto o = as_matrix<elem_t<decltype(x)>>(oi, "out");
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
