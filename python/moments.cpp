// Bindings of the head moments and per-unit variance scalars (cpp/include/fisherkit/moments.hpp).
#include "common.hpp"
#include "fisherkit/moments.hpp"

namespace fisherkit::py_bind {
namespace {

/// ArrayInfo of an optional argument: None gives an info with a null pointer.
ArrayInfo opt_info(py::handle obj, const char* name) {
  if (obj.is_none()) return ArrayInfo{};
  return array_info(obj, name);
}

template <class T>
MatrixView<T> opt_matrix(const ArrayInfo& a, const char* name) {
  if (a.ptr == nullptr && a.shape.empty()) return MatrixView<T>{};
  return as_matrix<T>(a, name);
}

void host_only(const ArrayInfo& a) {
  if (a.device == Device::cuda)
    throw py::type_error("the head moment functions take NumPy (host) arrays; got a CuPy array "
                         "for 'H' (copy it with cupy.asnumpy)");
}

void contraction(const std::string& head, double sigma, HeadMoment which, py::handle H,
                 const std::vector<py::handle>& vecs, py::handle out) {
  static const char* names[4] = {"U", "V", "W", "Z"};
  auto hi = array_info(H, "H"), oi = array_info(out, "out");
  host_only(hi);
  std::vector<ArrayInfo> vi;
  for (size_t k = 0; k < vecs.size(); ++k) vi.push_back(array_info(vecs[k], names[k]));
  dispatch(hi.dtype, "H", [&](auto t) {
    using T = decltype(t);
    auto hd = make_head(head, sigma);
    auto h = as_matrix<const T>(hi, "H");
    MatrixView<const T> v[4];
    for (size_t k = 0; k < vi.size(); ++k) v[k] = as_matrix<const T>(vi[k], names[k]);
    auto o = as_vector<T>(oi, "out");
    py::gil_scoped_release nogil;
    head_contraction(hd, which, h, v[0], v[1], v[2], v[3], o);
  });
}

void bind(py::module_& m) {
  m.def(
      "head_quadratic",
      [](const std::string& head, double sigma, py::handle H, py::handle U, py::handle V,
         py::handle out) {
        contraction(head, sigma, HeadMoment::covariance, H, {U, V}, out);
      },
      py::arg("head"), py::arg("sigma"), py::arg("H"), py::arg("U"), py::arg("V"),
      py::arg("out"),
      "out[n] = U[n]^T I(H[n]) V[n] (covariance of t). H, U, V: (N, C); out: (N,).");

  m.def(
      "head_third_cumulant",
      [](const std::string& head, double sigma, py::handle H, py::handle U, py::handle V,
         py::handle W, py::handle out) {
        contraction(head, sigma, HeadMoment::third_cumulant, H, {U, V, W}, out);
      },
      py::arg("head"), py::arg("sigma"), py::arg("H"), py::arg("U"), py::arg("V"), py::arg("W"),
      py::arg("out"), "out[n] = kappa3(H[n])(U[n], V[n], W[n]). All (N, C); out: (N,).");

  m.def(
      "head_fourth_moment",
      [](const std::string& head, double sigma, py::handle H, py::handle U, py::handle V,
         py::handle W, py::handle Z, py::handle out, bool cumulant) {
        contraction(head, sigma, cumulant ? HeadMoment::fourth_cumulant : HeadMoment::fourth_moment,
                    H, {U, V, W, Z}, out);
      },
      py::arg("head"), py::arg("sigma"), py::arg("H"), py::arg("U"), py::arg("V"), py::arg("W"),
      py::arg("Z"), py::arg("out"), py::arg("cumulant") = false,
      "out[n] = K(H[n])(U[n], V[n], W[n], Z[n]), the 4th central moment of t (kappa4 when "
      "cumulant=True). All (N, C); out: (N,).");

  m.def(
      "head_unit_scalars",
      [](const std::string& head, double sigma, py::handle H, py::handle G, py::handle Tdiag,
         py::handle q, py::handle r, py::handle w, py::handle c) {
        auto hi = array_info(H, "H"), gi = array_info(G, "G"), ti = opt_info(Tdiag, "Tdiag");
        auto qi = array_info(q, "q"), ri = array_info(r, "r"), wi = opt_info(w, "w"),
             ci = opt_info(c, "c");
        host_only(hi);
        dispatch(hi.dtype, "H", [&](auto t) {
          using T = decltype(t);
          auto hd = make_head(head, sigma);
          auto h = as_matrix<const T>(hi, "H");
          auto g = as_matrix<const T>(gi, "G");
          auto td = opt_matrix<const T>(ti, "Tdiag");
          auto qo = as_matrix<T>(qi, "q");
          auto ro = as_matrix<T>(ri, "r");
          auto wo = opt_matrix<T>(wi, "w");
          auto co = opt_matrix<T>(ci, "c");
          py::gil_scoped_release nogil;
          head_unit_scalars(hd, h, g, td, qo, ro, wo, co);
        });
      },
      py::arg("head"), py::arg("sigma"), py::arg("H"), py::arg("G"), py::arg("Tdiag"),
      py::arg("q"), py::arg("r"), py::arg("w"), py::arg("c"),
      "Per-unit q, r, w, c (docs/maths/variance.rst#variance-per-unit-scalars). H: (N, C); G, Tdiag: (N, C*n) with entry (c, u) "
      "at column c*n + u; q, r, w, c: (N, n). Tdiag, w, c may be None together.");

  m.def(
      "head_layer_block",
      [](const std::string& head, double sigma, py::handle H, py::handle G, py::handle T_,
         py::handle U1, py::handle U2) {
        auto hi = array_info(H, "H"), gi = array_info(G, "G"), ti = opt_info(T_, "T");
        auto u1i = array_info(U1, "U1"), u2i = opt_info(U2, "U2");
        host_only(hi);
        dispatch(hi.dtype, "H", [&](auto t) {
          using T = decltype(t);
          auto hd = make_head(head, sigma);
          auto h = as_matrix<const T>(hi, "H");
          auto g = as_matrix<const T>(gi, "G");
          auto tt = opt_matrix<const T>(ti, "T");
          auto o1 = as_matrix<T>(u1i, "U1");
          auto o2 = opt_matrix<T>(u2i, "U2");
          py::gil_scoped_release nogil;
          head_layer_block(hd, h, g, tt, o1, o2);
        });
      },
      py::arg("head"), py::arg("sigma"), py::arg("H"), py::arg("G"), py::arg("T"),
      py::arg("U1"), py::arg("U2"),
      "Layer-block U1, U2 (docs/maths/variance.rst#variance-layer-blocks). G: (N, C*n); T: (N, C*n*n) with entry (c, u, u') "
      "at column c*n*n + u*n + u'; U1, U2: (N, n*n). T and U2 may be None together.");

  m.def(
      "head_spectral_constants",
      [](const std::string& head, double sigma, py::handle H, py::handle out) {
        auto hi = array_info(H, "H"), oi = array_info(out, "out");
        host_only(hi);
        dispatch(hi.dtype, "H", [&](auto t) {
          using T = decltype(t);
          auto hd = make_head(head, sigma);
          auto h = as_matrix<const T>(hi, "H");
          auto o = as_matrix<T>(oi, "out");
          py::gil_scoped_release nogil;
          head_spectral_constants(hd, h, o);
        });
      },
      py::arg("head"), py::arg("sigma"), py::arg("H"), py::arg("out"),
      "out (N, 4) = (lambda_min, lambda_max, k_min, k_max) per row (docs/maths/heads.rst#heads-spectral-constants); the "
      "min columns are exact or lower bounds, the max columns exact or upper bounds.");
}

Register reg(30, bind);

}  // namespace
}  // namespace fisherkit::py_bind
