// The extension module fisherkit._core: exception translation, build facts, and the
// topic registrars (one translation unit per topic).
#include <algorithm>
#include <chrono>

#include "common.hpp"

namespace fisherkit::py_bind {

std::vector<std::pair<int, Registrar>>& registry() {
  static std::vector<std::pair<int, Registrar>> r;
  return r;
}

static std::int64_t to_elements(py::ssize_t bytes, py::ssize_t item, const char* name) {
  if (item == 0 || bytes % item != 0)
    throw py::value_error(std::string("argument '") + name + "' has strides that are not a "
                          "multiple of its item size");
  return bytes / item;
}

ArrayInfo array_info(py::handle obj, const char* name) {
  ArrayInfo a;
  if (py::hasattr(obj, "__cuda_array_interface__")) {
    py::dict cai = obj.attr("__cuda_array_interface__");
    auto data = cai["data"].cast<py::tuple>();
    a.ptr = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
    a.readonly = data[1].cast<bool>();
    const std::string ts = cai["typestr"].cast<std::string>();
    const py::ssize_t item = ts.size() >= 3 ? std::stoi(ts.substr(2)) : 0;
    a.dtype = ts == "<f8" ? 'd' : ts == "<f4" ? 'f' : ts == "<i8" ? 'l' : '?';
    for (auto s : cai["shape"].cast<py::tuple>()) a.shape.push_back(s.cast<std::int64_t>());
    if (cai.contains("strides") && !cai["strides"].is_none()) {
      for (auto s : cai["strides"].cast<py::tuple>())
        a.strides.push_back(to_elements(s.cast<py::ssize_t>(), item, name));
    } else {  // C-contiguous
      a.strides.assign(a.shape.size(), 1);
      for (int i = static_cast<int>(a.shape.size()) - 2; i >= 0; --i)
        a.strides[i] = a.strides[i + 1] * a.shape[i + 1];
    }
    if (cai.contains("stream") && !cai["stream"].is_none())
      a.stream = cai["stream"].cast<std::uintptr_t>();
    a.device = Device::cuda;
    a.keep = py::reinterpret_borrow<py::object>(obj);
    return a;
  }
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string("argument '") + name +
                         "' must be a NumPy or CuPy array, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  auto arr = py::reinterpret_borrow<py::array>(obj);
  a.ptr = const_cast<void*>(arr.data());
  // a misaligned buffer (np.frombuffer(buf, offset=1)) would be read with unaligned loads:
  // the Python layer copies such arrays once; here they are refused
  if (arr.itemsize() > 0 && reinterpret_cast<std::uintptr_t>(a.ptr) % static_cast<std::uintptr_t>(arr.itemsize()) != 0)
    throw py::value_error(std::string("argument '") + name + "' is not aligned to its " +
                          std::to_string(arr.itemsize()) + "-byte items; pass a copy (numpy.array(a))");
  a.readonly = !arr.writeable();
  const py::ssize_t item = arr.itemsize();
  const char kind = arr.dtype().kind();
  a.dtype = kind == 'f' && item == 8 ? 'd' : kind == 'f' && item == 4 ? 'f'
            : kind == 'i' && item == 8 ? 'l' : '?';
  for (py::ssize_t i = 0; i < arr.ndim(); ++i) {
    a.shape.push_back(arr.shape(i));
    a.strides.push_back(to_elements(arr.strides(i), item, name));
  }
  a.keep = arr;
  return a;
}

PyMonitor::PyMonitor(py::object progress) : progress_(std::move(progress)) {}

bool PyMonitor::progress(std::int64_t done, std::int64_t total) {
  using clock = std::chrono::steady_clock;
  const double now = std::chrono::duration<double>(clock::now().time_since_epoch()).count();
  if (now - last_ < 0.1 && done < total) return true;
  last_ = now;
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) return false;  // KeyboardInterrupt (or a handler's error) is set
  if (!progress_.is_none()) {
    try {
      progress_(done, total);
    } catch (py::error_already_set& e) {
      e.restore();  // the callback's exception is what the call raises
      return false;
    }
  }
  return true;
}

Head make_head(const std::string& name, double sigma) {
  Head h;
  h.kind = parse_head(name);
  h.sigma = sigma;
  return h;
}

}  // namespace fisherkit::py_bind

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  namespace fk = fisherkit;
  m.doc() = "fisherkit's compiled core (private; use the fisherkit package)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fk::TooLarge& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const fk::Unavailable& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const fk::Interrupted& e) {
      // the monitor stopped the call: the pending KeyboardInterrupt (or the progress
      // callback's exception) is already set; raise it
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyboardInterrupt, e.what());
    }
  });
  // fisherkit::Error derives from std::invalid_argument, which pybind11 maps to ValueError.
  m.def("version", &fk::version);
  m.def("blas_name", &fk::blas_name);
  m.def("openmp_enabled", &fk::openmp_enabled);
  m.def("cuda_compiled", &fk::cuda_compiled);
  m.def("cuda_device_count", &fk::cuda_device_count);
  m.def("cublas_library", &fk::cublas_library);
  m.def("set_num_threads", &fk::set_num_threads, py::arg("n"));
  m.def("num_threads", &fk::num_threads);
  auto& reg = fk::py_bind::registry();
  std::stable_sort(reg.begin(), reg.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, f] : reg) f(m);
}
