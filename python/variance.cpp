// Bindings of the variance engine (cpp/include/fisherkit/variance.hpp) and of the
// natural-gradient statistics (natgrad.hpp unit_statistics). Marshalling only.
#include "common.hpp"

namespace fisherkit::py_bind {
namespace {

void bind(py::module_& m) {
  m.def(
      "variance_sum",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, const std::string& head, double sigma,
         py::handle X, const std::string& which, const std::string& shape, std::int64_t chunk, py::handle out,
         py::object progress) {
        auto oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          auto o = as_vector<elem_t<decltype(x)>>(oi, "out");
          const Head hd = make_head(head, sigma);
          const Moment mo = parse_moment(which);
          const Shape sh = parse_shape(shape);
          Supervised call(progress);
          py::gil_scoped_release nogil;
          variance_sum(mlp, hd, x, mo, sh, o, chunk, stream_of(xi));
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"), py::arg("X"),
      py::arg("which"), py::arg("shape"), py::arg("chunk"), py::arg("out"), py::arg("progress") = py::none());

  m.def(
      "output_gram",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, py::handle X, py::handle out,
         std::int64_t chunk) {
        auto oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          auto o = as_matrix<elem_t<decltype(x)>>(oi, "out");
          Supervised call;
          py::gil_scoped_release nogil;
          output_gram(mlp, x, o, chunk, stream_of(xi));
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("out"),
      py::arg("chunk") = 0);

  m.def(
      "unit_statistics",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, const std::string& head, double sigma,
         py::handle X, py::object y, const std::string& metric, std::int64_t samples, std::uint64_t seed,
         std::int64_t index_offset, std::int64_t chunk, py::list layers, py::object grad, py::object progress) {
        const ArrayInfo xi = array_info(X, "X");
        return with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          using T = elem_t<decltype(x)>;
          if (py::len(layers) != static_cast<size_t>(mlp.n_layers()))
            throw py::value_error("argument 'layers' must have one dict of outputs per layer");
          std::vector<ArrayInfo> keep;
          std::vector<UnitStats<T>> stats(py::len(layers));
          for (size_t l = 0; l < stats.size(); ++l) {
            py::dict d = layers[l].cast<py::dict>();
            auto get = [&](const char* key) -> py::object {
              if (d.contains(key)) return py::reinterpret_borrow<py::object>(d[key]);
              return py::none();
            };
            UnitStats<T>& st = stats[l];
            st.inputs = opt_matrix<T>(get("inputs"), "inputs", keep);
            st.g2 = opt_matrix<T>(get("g2"), "g2", keep);
            st.b2 = opt_matrix<T>(get("b2"), "b2", keep);
            st.rows = opt_matrix<T>(get("rows"), "rows", keep);
            st.g2_sum = opt_vector<double>(get("g2_sum"), "g2_sum", keep);
            st.b2_sum = opt_vector<double>(get("b2_sum"), "b2_sum", keep);
            st.x_sum = opt_vector<double>(get("x_sum"), "x_sum", keep);
            st.x_sq = opt_vector<double>(get("x_sq"), "x_sq", keep);
            st.x_gram = opt_matrix<double>(get("x_gram"), "x_gram", keep);
            st.qd1 = opt_matrix<double>(get("qd1"), "qd1", keep);
            st.qd2 = opt_matrix<double>(get("qd2"), "qd2", keep);
            st.blocks = opt_vector<double>(get("blocks"), "blocks", keep);
          }
          MatrixView<const T> yy = opt_matrix<const T>(y, "y", keep);
          VectorView<T> g = opt_vector<T>(grad, "grad", keep);
          UnitStatsOptions opt;
          opt.metric = parse_metric(metric);
          opt.samples = samples;
          opt.seed = seed;
          opt.index_offset = index_offset;
          opt.chunk = chunk;
          const Head hd = make_head(head, sigma);
          Supervised call(progress);
          py::gil_scoped_release nogil;
          return unit_statistics(mlp, hd, x, yy, opt, stats, g, stream_of(xi));
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"), py::arg("X"),
      py::arg("y"), py::arg("metric"), py::arg("samples"), py::arg("seed"), py::arg("index_offset"), py::arg("chunk"),
      py::arg("layers"), py::arg("grad"), py::arg("progress") = py::none(),
      "Per-layer unit statistics (natgrad.hpp): `layers` is one dict per layer of preallocated outputs "
      "(keys inputs, g2, b2, rows of the model's dtype; g2_sum, b2_sum, x_sum, x_sq, x_gram, qd1, qd2, blocks in float64). "
      "With `grad` (P values) also the mean-NLL gradient; returns the mean NLL (0 without grad).");
}

Register reg(35, bind);

}  // namespace
}  // namespace fisherkit::py_bind
