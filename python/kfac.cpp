// Bindings of the KFAC and EKFAC passes (cpp/include/fisherkit/kfac.hpp). Marshalling only.
#include "common.hpp"

namespace fisherkit::py_bind {
namespace {

/// The options of a KFAC pass (opt.shape is not read).
FisherOptions kfac_options(const std::string& estimator, std::int64_t samples, std::uint64_t seed, std::int64_t chunk,
                           std::int64_t index_offset) {
  FisherOptions opt;
  opt.estimator = parse_estimator(estimator);
  opt.shape = Shape::kfac;
  opt.samples = samples;
  opt.seed = seed;
  opt.chunk = chunk;
  opt.index_offset = index_offset;
  return opt;
}

void bind(py::module_& m) {
  m.def(
      "kfac_factors",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, const std::string& head,
         double sigma, py::handle X, py::object y, const std::string& estimator, std::int64_t samples,
         std::uint64_t seed, std::int64_t chunk, std::int64_t index_offset, py::handle out, py::object progress) {
        auto oi = array_info(out, "out");
        const FisherOptions opt = kfac_options(estimator, samples, seed, chunk, index_offset);
        with_labelled(Ws, bs, acts, head, sigma, X, y, progress, [&](const auto& mlp, auto x, auto yy, const Head& hd,
                                                                     Stream st, py::object pr) {
          auto o = as_vector<elem_t<decltype(x)>>(oi, "out");
          Supervised call(pr);
          py::gil_scoped_release nogil;
          kfac_factors(mlp, hd, x, yy, opt, o, st);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"),
      py::arg("X"), py::arg("y"), py::arg("estimator"), py::arg("samples"), py::arg("seed"), py::arg("chunk"),
      py::arg("index_offset"), py::arg("out"), py::arg("progress") = py::none(),
      "The Kronecker factors A_l, G_l of every layer into `out` (the 'kfac' layout).");

  m.def(
      "ekfac_diagonal",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, const std::string& head,
         double sigma, py::handle X, py::object y, const std::string& estimator, std::int64_t samples,
         std::uint64_t seed, std::int64_t chunk, std::int64_t index_offset, py::handle bases, py::handle out,
         py::object progress) {
        auto oi = array_info(out, "out");
        auto bi = array_info(bases, "bases");
        const FisherOptions opt = kfac_options(estimator, samples, seed, chunk, index_offset);
        with_labelled(Ws, bs, acts, head, sigma, X, y, progress, [&](const auto& mlp, auto x, auto yy, const Head& hd,
                                                                     Stream st, py::object pr) {
          using T = elem_t<decltype(x)>;
          auto o = as_vector<T>(oi, "out");
          auto b = as_vector<const T>(bi, "bases");
          Supervised call(pr);
          py::gil_scoped_release nogil;
          ekfac_diagonal(mlp, hd, x, yy, opt, b, o, st);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"),
      py::arg("X"), py::arg("y"), py::arg("estimator"), py::arg("samples"), py::arg("seed"), py::arg("chunk"),
      py::arg("index_offset"), py::arg("bases"), py::arg("out"), py::arg("progress") = py::none(),
      "The EKFAC diagonal (P values, per layer n_out x k row-major) in the eigenbases `bases` ('kfac' layout).");

  m.def(
      "kfac_error_sums",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, const std::string& head,
         double sigma, py::handle X, py::object y, const std::string& estimator, std::int64_t samples,
         std::uint64_t seed, std::int64_t chunk, std::int64_t index_offset, py::object factors, py::object bases,
         std::int64_t keep_bytes, py::handle sq, py::object cross, py::object diag, py::object progress) {
        std::vector<ArrayInfo> keep;
        auto info = [&](py::object o, const char* name) -> const ArrayInfo* {
          if (o.is_none()) return nullptr;
          keep.push_back(array_info(o, name));
          return &keep.back();
        };
        keep.reserve(5);
        const ArrayInfo* si = info(py::reinterpret_borrow<py::object>(sq), "sq");
        const ArrayInfo* fi = info(factors, "factors");
        const ArrayInfo* bi = info(bases, "bases");
        const ArrayInfo* ci = info(cross, "cross");
        const ArrayInfo* di = info(diag, "diag");
        const FisherOptions opt = kfac_options(estimator, samples, seed, chunk, index_offset);
        with_labelled(Ws, bs, acts, head, sigma, X, y, progress, [&](const auto& mlp, auto x, auto yy, const Head& hd,
                                                                     Stream st, py::object pr) {
          using T = elem_t<decltype(x)>;
          const Device dev = mlp.device();
          VectorView<const T> fa{nullptr, 0, 1, dev}, ba{nullptr, 0, 1, dev};
          VectorView<double> cr{nullptr, 0, 1, dev};
          VectorView<T> dg{nullptr, 0, 1, dev};
          if (fi) fa = as_vector<const T>(*fi, "factors");
          if (bi) ba = as_vector<const T>(*bi, "bases");
          if (ci) cr = as_vector<double>(*ci, "cross");
          if (di) dg = as_vector<T>(*di, "diag");
          auto s = as_vector<double>(*si, "sq");
          Supervised call(pr);
          py::gil_scoped_release nogil;
          kfac_error_sums(mlp, hd, x, yy, opt, fa, ba, keep_bytes, s, cr, dg, st);
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"),
      py::arg("X"), py::arg("y"), py::arg("estimator"), py::arg("samples"), py::arg("seed"), py::arg("chunk"),
      py::arg("index_offset"), py::arg("factors"), py::arg("bases"), py::arg("keep_bytes"), py::arg("sq"),
      py::arg("cross"), py::arg("diag"), py::arg("progress") = py::none(),
      "Per layer ||F_l||_F^2 into `sq` (L float64 values); with `factors` and `cross` also <F_l, G_l (x) A_l>; "
      "with `bases` and `diag` also the EKFAC diagonal (P values), from the same pass.");

  m.def(
      "kfac_variance_sum",
      [](py::sequence Ws, py::sequence bs, const std::vector<std::string>& acts, const std::string& head,
         double sigma, py::handle X, py::object bases, py::handle out, std::int64_t chunk, py::object progress) {
        auto oi = array_info(out, "out");
        ArrayInfo bi;
        if (!bases.is_none()) bi = array_info(bases, "bases");
        const ArrayInfo xi = array_info(X, "X");
        with_mlp(Ws, bs, acts, xi, [&](const auto& mlp, auto x) {
          using T = elem_t<decltype(x)>;
          auto o = as_vector<T>(oi, "out");
          VectorView<const T> b{nullptr, 0, 1, mlp.device()};
          if (!bases.is_none()) b = as_vector<const T>(bi, "bases");
          const Head hd = make_head(head, sigma);
          Supervised call(progress);
          py::gil_scoped_release nogil;
          kfac_variance_sum(mlp, hd, x, b, o, chunk, stream_of(xi));
        });
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("head"), py::arg("sigma"),
      py::arg("X"), py::arg("bases"), py::arg("out"), py::arg("chunk") = 0, py::arg("progress") = py::none(),
      "Sum over inputs of the single-draw variance of the score estimator's G_l entries ('kfac' layout), or "
      "with `bases` of its EKFAC diagonal (P values).");
}

Register reg(27, bind);

}  // namespace
}  // namespace fisherkit::py_bind
