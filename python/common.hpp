// Marshalling between Python arrays and fisherkit views. No maths here.
//
// NumPy arrays cross through the buffer protocol and CuPy arrays through
// __cuda_array_interface__, without copies; the Python layer (src/fisherkit) has already
// converted dtypes and layouts once, at the boundary. Outputs are allocated by the
// caller's array library and passed in.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "fisherkit/fisherkit.hpp"

namespace fisherkit::py_bind {

namespace py = pybind11;

/// Topic files register their bindings here (static registrars), so adding a topic never
/// touches module.cpp.
using Registrar = void (*)(py::module_&);
std::vector<std::pair<int, Registrar>>& registry();
struct Register {
  Register(int order, Registrar f) { registry().emplace_back(order, f); }
};

/// What a Python array looks like to C++.
struct ArrayInfo {
  void* ptr = nullptr;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;  // in elements
  char dtype = '?';                   // 'f' float32, 'd' float64, 'l' int64, '?' other
  bool readonly = false;
  Device device = Device::host;
  std::uintptr_t stream = 0;          // CuPy's stream pointer when given (0: default)
  py::object keep;                    // keeps the buffer alive while the info lives
};

ArrayInfo array_info(py::handle obj, const char* name);

template <class T>
constexpr char dtype_char() {
  return sizeof(T) == 8 ? 'd' : 'f';
}

template <class T>
MatrixView<T> as_matrix(const ArrayInfo& a, const char* name) {
  if (a.dtype != dtype_char<T>())
    throw py::type_error(std::string("argument '") + name + "' has the wrong dtype (expected " +
                         (sizeof(T) == 8 ? "float64" : "float32") + ")");
  if (a.shape.size() != 2)
    throw py::value_error(std::string("argument '") + name + "' must be 2-D, got " +
                          std::to_string(a.shape.size()) + "-D");
  if (!std::is_const_v<T> && a.readonly)
    throw py::value_error(std::string("argument '") + name + "' is read-only");
  return MatrixView<T>{static_cast<T*>(a.ptr), a.shape[0], a.shape[1], a.strides[0], a.strides[1],
                       a.device};
}

template <class T>
VectorView<T> as_vector(const ArrayInfo& a, const char* name) {
  if (a.dtype != dtype_char<T>())
    throw py::type_error(std::string("argument '") + name + "' has the wrong dtype (expected " +
                         (sizeof(T) == 8 ? "float64" : "float32") + ")");
  if (a.shape.size() != 1)
    throw py::value_error(std::string("argument '") + name + "' must be 1-D, got " +
                          std::to_string(a.shape.size()) + "-D");
  if (!std::is_const_v<T> && a.readonly)
    throw py::value_error(std::string("argument '") + name + "' is read-only");
  return VectorView<T>{static_cast<T*>(a.ptr), a.shape[0], a.strides[0], a.device};
}

/// Call f(T{}) with T = double or float from a dtype char.
template <class F>
decltype(auto) dispatch(char dtype, const char* name, F&& f) {
  if (dtype == 'd') return f(double{});
  if (dtype == 'f') return f(float{});
  throw py::type_error(std::string("argument '") + name + "' must be float32 or float64");
}

/// An MLP over the arrays of a Python model: holds the ArrayInfos alive with the views.
template <class T>
struct PyMlp {
  std::vector<ArrayInfo> arrays;
  Mlp<T> mlp;
};

/// Layers of a Python model: weights[l] (n_out, n_in) and biases[l] ((n_out,) or None for a
/// layer without bias).
template <class T>
Mlp<T> make_mlp(const py::sequence& weights, const py::sequence& biases,
                const std::vector<std::string>& activations, std::vector<ArrayInfo>& keep) {
  if (py::len(weights) != py::len(biases))
    throw py::value_error("arguments 'weights' and 'biases' must have the same length");
  std::vector<Layer<T>> layers;
  keep.reserve(2 * py::len(weights));
  for (size_t l = 0; l < py::len(weights); ++l) {
    const std::string wn = "layers[" + std::to_string(l) + "].weight";
    const std::string bn = "layers[" + std::to_string(l) + "].bias";
    keep.push_back(array_info(weights[l], wn.c_str()));
    auto W = as_matrix<const T>(keep.back(), wn.c_str());
    VectorView<const T> b{nullptr, 0, 1, W.device};
    if (!py::object(biases[l]).is_none()) {
      keep.push_back(array_info(biases[l], bn.c_str()));
      b = as_vector<const T>(keep.back(), bn.c_str());
    }
    layers.push_back(Layer<T>{W, b});
  }
  std::vector<Activation> acts;
  for (const auto& a : activations) acts.push_back(parse_activation(a));
  return Mlp<T>(std::move(layers), std::move(acts));
}

Head make_head(const std::string& name, double sigma);

/// The stream a CUDA array names (CuPy's current one); nullptr for host arrays.
inline Stream stream_of(const ArrayInfo& a) {
  return a.device == Device::cuda ? reinterpret_cast<Stream>(a.stream) : nullptr;
}

/// Element type of a view (MatrixView<const T> -> T).
template <class View>
using elem_t = std::remove_const_t<std::remove_pointer_t<decltype(View::data)>>;

/// Call f(mlp, X) with T chosen by X's dtype: the MLP built over the Python arrays and X as
/// a const view. Everything one MLP binding needs before it releases the GIL.
template <class F>
decltype(auto) with_mlp(const py::sequence& weights, const py::sequence& biases,
                        const std::vector<std::string>& activations, const ArrayInfo& X, F&& f) {
  return dispatch(X.dtype, "X", [&](auto t) -> decltype(auto) {
    using T = decltype(t);
    std::vector<ArrayInfo> keep;
    auto mlp = make_mlp<T>(weights, biases, activations, keep);
    return f(mlp, as_matrix<const T>(X, "X"));
  });
}

/// Call f(mlp, X, y, head, stream, progress) with T chosen by X's dtype: with_mlp plus the
/// labels `y` (an empty view for None, where the pass takes them optionally) and the head,
/// for the labelled passes. Returns what f returns.
template <class F>
decltype(auto) with_labelled(const py::sequence& weights, const py::sequence& biases,
                             const std::vector<std::string>& activations, const std::string& head, double sigma,
                             py::handle X, py::object y, py::object progress, F&& f) {
  ArrayInfo yi;
  if (!y.is_none()) yi = array_info(y, "y");
  const ArrayInfo xi = array_info(X, "X");
  return with_mlp(weights, biases, activations, xi, [&](const auto& mlp, auto x) -> decltype(auto) {
    using T = elem_t<decltype(x)>;
    MatrixView<const T> yy;
    if (!y.is_none()) yy = as_matrix<const T>(yi, "y");
    const Head hd = make_head(head, sigma);
    return f(mlp, x, yy, hd, stream_of(xi), progress);
  });
}

/// Views of optional arrays: None gives an empty view (not given, or not computed); the
/// infos live in `keep`.
template <class T>
MatrixView<T> opt_matrix(py::handle obj, const char* name, std::vector<ArrayInfo>& keep) {
  if (obj.is_none()) return MatrixView<T>{};
  keep.push_back(array_info(obj, name));
  return as_matrix<T>(keep.back(), name);
}
template <class T>
VectorView<T> opt_vector(py::handle obj, const char* name, std::vector<ArrayInfo>& keep) {
  if (obj.is_none()) return VectorView<T>{};
  keep.push_back(array_info(obj, name));
  return as_vector<T>(keep.back(), name);
}

/// The Monitor of a compiled call made from Python: about every 0.1 s it takes the GIL,
/// runs pending signal handlers (Ctrl-C raises KeyboardInterrupt, and the call stops at its
/// next checkpoint) and reports (done, total) to `progress` when one is given.
class PyMonitor : public Monitor {
 public:
  explicit PyMonitor(py::object progress);
  bool progress(std::int64_t done, std::int64_t total) override;

 private:
  py::object progress_;
  double last_ = 0.0;
};

/// Installs a PyMonitor for the duration of one compiled call (create it with the GIL held,
/// before releasing it).
struct Supervised {
  explicit Supervised(py::object progress = py::none()) : monitor(std::move(progress)), scope(&monitor) {}
  PyMonitor monitor;
  MonitorScope scope;
};

}  // namespace fisherkit::py_bind
