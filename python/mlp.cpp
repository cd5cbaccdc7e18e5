// Bindings of the MLP passes (cpp/include/fisherkit/mlp.hpp). Marshalling only.
#include "common.hpp"

namespace fisherkit::py_bind {
namespace {

using Acts = std::vector<std::string>;

void bind(py::module_& m) {
  m.def(
      "forward",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, py::handle X, py::handle out, std::int64_t chunk) {
        auto oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          auto o = as_matrix<elem_t<decltype(x)>>(oi, "out");
          Supervised call;
          py::gil_scoped_release nogil;
          forward(mlp, x, o, chunk, stream_of(xi));
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("out"),
      py::arg("chunk") = 0);

  m.def(
      "log_likelihood",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma, py::handle X,
         py::object y, py::handle out, std::int64_t chunk) {
        auto oi = array_info(out, "out");
        with_labelled(Ws, bs, acts, head, sigma, X, y, py::none(), [&](const auto& mlp, auto x, auto yy,
                                                                        const Head& hd, Stream st, py::object) {
          auto o = as_vector<elem_t<decltype(x)>>(oi, "out");
          Supervised call;
          py::gil_scoped_release nogil;
          log_likelihood(mlp, hd, x, yy, o, chunk, st);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"),
      py::arg("X"), py::arg("y"), py::arg("out"), py::arg("chunk") = 0);

  m.def(
      "per_sample_grads",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma, py::handle X,
         py::object y, py::handle out, std::int64_t chunk, py::object progress) {
        auto oi = array_info(out, "out");
        with_labelled(Ws, bs, acts, head, sigma, X, y, progress, [&](const auto& mlp, auto x, auto yy, const Head& hd,
                                                                     Stream st, py::object pr) {
          auto o = as_matrix<elem_t<decltype(x)>>(oi, "out");
          Supervised call(pr);
          py::gil_scoped_release nogil;
          per_sample_grads(mlp, hd, x, yy, o, chunk, st);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"),
      py::arg("X"), py::arg("y"), py::arg("out"), py::arg("chunk") = 0, py::arg("progress") = py::none());

  m.def(
      "nll_gradient",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma, py::handle X,
         py::object y, py::handle out, std::int64_t chunk) {
        auto oi = array_info(out, "out");
        return with_labelled(Ws, bs, acts, head, sigma, X, y, py::none(), [&](const auto& mlp, auto x, auto yy,
                                                                               const Head& hd, Stream st, py::object) {
          auto o = as_vector<elem_t<decltype(x)>>(oi, "out");
          Supervised call;
          py::gil_scoped_release nogil;
          return nll_gradient(mlp, hd, x, yy, o, chunk, st);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"),
      py::arg("X"), py::arg("y"), py::arg("out"), py::arg("chunk") = 0);

  m.def(
      "jvp",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, py::handle X, py::handle v, py::handle out1,
         py::object out2, std::int64_t chunk) {
        auto vi = array_info(v, "v"), o1 = array_info(out1, "out1");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          using T = elem_t<decltype(x)>;
          auto vv = as_vector<const T>(vi, "v");
          auto a = as_matrix<T>(o1, "out1");
          std::vector<ArrayInfo> keep;
          MatrixView<T> b = opt_matrix<T>(out2, "out2", keep);
          Supervised call;
          py::gil_scoped_release nogil;
          jvp(mlp, x, vv, a, b, chunk, stream_of(xi));
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("v"), py::arg("out1"),
      py::arg("out2"), py::arg("chunk") = 0);

  m.def(
      "fisher_vector_product",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, const std::string& head, double sigma, py::handle X,
         py::handle V, py::handle out, std::int64_t chunk, py::object progress) {
        auto vi = array_info(V, "V"), oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          using T = elem_t<decltype(x)>;
          auto vv = as_matrix<const T>(vi, "V");
          auto o = as_matrix<T>(oi, "out");
          const Head hd = make_head(head, sigma);
          Supervised call(progress);
          py::gil_scoped_release nogil;
          fisher_vector_product(mlp, hd, x, vv, o, chunk, stream_of(xi));
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"),
      py::arg("X"), py::arg("V"), py::arg("out"), py::arg("chunk") = 0, py::arg("progress") = py::none());

  m.def(
      "output_jacobian",
      [](py::sequence Ws, py::sequence bs, const Acts& acts, py::handle X, py::handle out, std::int64_t chunk) {
        auto oi = array_info(out, "out");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          auto o = as_matrix<elem_t<decltype(x)>>(oi, "out");
          Supervised call;
          py::gil_scoped_release nogil;
          output_jacobian(mlp, x, o, chunk, stream_of(xi));
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("X"), py::arg("out"),
      py::arg("chunk") = 0);

  m.def(
      "layout",
      [](const std::vector<std::int64_t>& n_out, const std::vector<std::int64_t>& n_in, const std::vector<bool>& bias) {
        if (n_out.size() != n_in.size() || n_out.size() != bias.size())
          throw py::value_error("arguments 'n_out', 'n_in' and 'bias' must have one entry per layer");
        std::vector<LayerDims> dims;
        for (size_t l = 0; l < n_out.size(); ++l) dims.push_back(LayerDims{n_out[l], n_in[l], bias[l]});
        const Layout lay(std::move(dims));
        py::dict out, size, offset;
        py::list param_offset, unit_width;
        for (std::int64_t l = 1; l <= lay.n_layers(); ++l) {
          param_offset.append(lay.param_offset(l));
          unit_width.append(lay.unit_width(l));
        }
        for (Shape sh : {Shape::full, Shape::layer, Shape::unit, Shape::diag, Shape::kfac}) {
          size[shape_name(sh)] = lay.size(sh);
          py::list offs;
          for (std::int64_t l = 1; l <= lay.n_layers(); ++l) offs.append(lay.offset(sh, l));
          offset[shape_name(sh)] = offs;
        }
        out["n_params"] = lay.n_params();
        out["param_offset"] = param_offset;
        out["unit_width"] = unit_width;
        out["size"] = size;
        out["offset"] = offset;
        return out;
      },
      py::arg("n_out"), py::arg("n_in"), py::arg("bias"),
      "The flat parameter layout (layout.hpp): n_params, per layer param_offset and unit_width "
      "(n_in + bias), and per shape the result size and each layer's offset.");
}

Register reg(10, bind);

}  // namespace
}  // namespace fisherkit::py_bind
