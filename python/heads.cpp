// Bindings of the heads (cpp/include/fisherkit/heads.hpp). Marshalling only; each call runs
// where H lives.
#include "common.hpp"

namespace fisherkit::py_bind {
namespace {

void bind(py::module_& m) {
  m.def(
      "head_log_likelihood",
      [](const std::string& head, double sigma, py::handle H, py::handle y, py::handle out) {
        auto hi = array_info(H, "H"), yi = array_info(y, "y"), oi = array_info(out, "out");
        dispatch(hi.dtype, "H", [&](auto t) {
          using T = decltype(t);
          auto hd = make_head(head, sigma);
          auto h = as_matrix<const T>(hi, "H");
          auto yy = as_matrix<const T>(yi, "y");
          auto o = as_vector<T>(oi, "out");
          py::gil_scoped_release nogil;
          head_log_likelihood(hd, h, yy, o, stream_of(hi));
        });
      },
      py::arg("head"), py::arg("sigma"), py::arg("H"), py::arg("y"), py::arg("out"));

  m.def(
      "head_mean",
      [](const std::string& head, double sigma, py::handle H, py::handle out) {
        auto hi = array_info(H, "H"), oi = array_info(out, "out");
        dispatch(hi.dtype, "H", [&](auto t) {
          using T = decltype(t);
          auto hd = make_head(head, sigma);
          auto h = as_matrix<const T>(hi, "H");
          auto o = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          head_mean(hd, h, o, stream_of(hi));
        });
      },
      py::arg("head"), py::arg("sigma"), py::arg("H"), py::arg("out"));

  m.def(
      "head_covariance",
      [](const std::string& head, double sigma, py::handle H, py::handle out, bool sqrt) {
        auto hi = array_info(H, "H"), oi = array_info(out, "out");
        dispatch(hi.dtype, "H", [&](auto t) {
          using T = decltype(t);
          auto hd = make_head(head, sigma);
          auto h = as_matrix<const T>(hi, "H");
          auto o = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          head_covariance(hd, h, o, sqrt, stream_of(hi));
        });
      },
      py::arg("head"), py::arg("sigma"), py::arg("H"), py::arg("out"), py::arg("sqrt") = false);

  m.def(
      "head_sample",
      [](const std::string& head, double sigma, py::handle H, std::uint64_t seed, std::int64_t S, py::handle out,
         std::int64_t offset) {
        auto hi = array_info(H, "H"), oi = array_info(out, "out");
        dispatch(hi.dtype, "H", [&](auto t) {
          using T = decltype(t);
          auto hd = make_head(head, sigma);
          auto h = as_matrix<const T>(hi, "H");
          auto o = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          head_sample(hd, h, seed, S, o, offset, stream_of(hi));
        });
      },
      py::arg("head"), py::arg("sigma"), py::arg("H"), py::arg("seed"), py::arg("samples"), py::arg("out"),
      py::arg("index_offset") = 0);
}

Register reg(20, bind);

}  // namespace
}  // namespace fisherkit::py_bind
