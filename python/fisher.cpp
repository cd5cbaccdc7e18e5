// Bindings of the Fisher estimators (cpp/include/fisherkit/accumulate.hpp). Marshalling only.
#include "common.hpp"

namespace fisherkit::py_bind {
namespace {

FisherOptions options(const std::string& estimator, const std::string& shape, std::int64_t samples,
                      std::int64_t chunk, std::vector<std::int64_t> layers) {
  FisherOptions opt;
  opt.estimator = parse_estimator(estimator);
  opt.shape = parse_shape(shape);
  opt.samples = samples;
  opt.chunk = chunk;
  opt.layers = std::move(layers);
  return opt;
}

void bind(py::module_& m) {
  m.def(
      "fisher",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, const std::string& head,
         double sigma, py::handle X, py::object y, const std::string& estimator, const std::string& shape,
         std::int64_t samples, std::uint64_t seed, std::int64_t chunk, std::int64_t index_offset, py::handle out,
         py::object progress, std::vector<std::int64_t> layers) {
        auto oi = array_info(out, "out");
        with_labelled(Ws, bs, acts, head, sigma, X, y, progress, [&](const auto& mlp, auto x, auto yy, const Head& hd,
                                                                     Stream st, py::object pr) {
          auto o = as_vector<elem_t<decltype(x)>>(oi, "out");
          FisherOptions opt = options(estimator, shape, samples, chunk, layers);
          opt.seed = seed;
          opt.index_offset = index_offset;
          Supervised call(pr);
          py::gil_scoped_release nogil;
          fisher(mlp, hd, x, yy, opt, o, st);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"),
      py::arg("X"), py::arg("y"), py::arg("estimator"), py::arg("shape"), py::arg("samples"), py::arg("seed"),
      py::arg("chunk"), py::arg("index_offset"), py::arg("out"), py::arg("progress") = py::none(),
      py::arg("layers") = std::vector<std::int64_t>{});

  m.def(
      "fisher_workspace",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, py::handle X,
         const std::string& estimator, const std::string& shape, std::int64_t samples, std::int64_t chunk,
         std::vector<std::int64_t> layers) {
        const ArrayInfo xi = array_info(X, "X");
        return with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          return fisher_workspace_bytes(mlp, options(estimator, shape, samples, chunk, layers), x.rows);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("estimator"),
      py::arg("shape"), py::arg("samples"), py::arg("chunk"), py::arg("layers") = std::vector<std::int64_t>{},
      "Bytes of workspace fisher() allocates besides its result for these options and X's rows (host "
      "executor): one chunk's buffers (the result accumulates in place).");

  m.def(
      "output_hessians",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, py::handle X, py::handle out,
         std::int64_t chunk, py::object progress) {
        auto oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          auto o = as_matrix<elem_t<decltype(x)>>(oi, "out");
          Supervised call(progress);
          py::gil_scoped_release nogil;
          output_hessians(mlp, x, o, chunk, stream_of(xi));
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("out"),
      py::arg("chunk") = 0, py::arg("progress") = py::none());
}

Register reg(25, bind);

}  // namespace
}  // namespace fisherkit::py_bind
