// Non-owning strided views over host or CUDA memory. No allocation, no ownership.
#pragma once
#include <cstdint>
#include <type_traits>

#include "fisherkit/detail/hd.hpp"
#include "fisherkit/error.hpp"

namespace fisherkit {

enum class Device : int { host = 0, cuda = 1 };

/// A CUDA stream (cudaStream_t) as an opaque pointer; nullptr is the default stream. Every
/// public function takes one; host computations ignore it.
using Stream = void*;

/// rows x cols matrix; element (i, j) at data[i * row_stride + j * col_stride] (strides
/// in elements). Functions that hand a view to BLAS need col_stride == 1 and say so.
template <class T>
struct MatrixView {
  T* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t row_stride = 0;
  std::int64_t col_stride = 1;
  Device device = Device::host;

  FISHERKIT_HD T& operator()(std::int64_t i, std::int64_t j) const {
    return data[i * row_stride + j * col_stride];
  }
  FISHERKIT_HD T* row(std::int64_t i) const { return data + i * row_stride; }
  /// Rows [begin, begin + count).
  MatrixView rows_slice(std::int64_t begin, std::int64_t count) const {
    MatrixView v = *this;
    v.data = data + begin * row_stride;
    v.rows = count;
    return v;
  }
  template <class U = T, std::enable_if_t<!std::is_const_v<U>, int> = 0>
  operator MatrixView<const U>() const {
    return MatrixView<const U>{data, rows, cols, row_stride, col_stride, device};
  }
};

/// A contiguous row-major rows x cols view.
template <class T>
MatrixView<T> matrix_view(T* data, std::int64_t rows, std::int64_t cols,
                          Device device = Device::host) {
  return MatrixView<T>{data, rows, cols, cols, 1, device};
}

/// Vector of `size` elements at data[i * stride].
template <class T>
struct VectorView {
  T* data = nullptr;
  std::int64_t size = 0;
  std::int64_t stride = 1;
  Device device = Device::host;

  FISHERKIT_HD T& operator[](std::int64_t i) const { return data[i * stride]; }
  template <class U = T, std::enable_if_t<!std::is_const_v<U>, int> = 0>
  operator VectorView<const U>() const {
    return VectorView<const U>{data, size, stride, device};
  }
};

template <class T>
VectorView<T> vector_view(T* data, std::int64_t size, Device device = Device::host) {
  return VectorView<T>{data, size, 1, device};
}

namespace detail {
template <class V>
void check_host(const V& v, const char* name) {
  FISHERKIT_CHECK(v.device == Device::host, "argument '", name,
                  "' is in GPU memory, but this computation runs on the host: the CUDA backend "
                  "does not cover it yet (pass NumPy arrays; C++: the fisherkit::cuda entry points)");
}
template <class T>
void check_rows_unit_stride(const MatrixView<T>& m, const char* name) {
  FISHERKIT_CHECK(m.rows == 0 || m.cols <= 1 || m.col_stride == 1, "argument '", name,
                  "' must have unit column stride (row-major rows), got col_stride=",
                  m.col_stride);
  FISHERKIT_CHECK(m.rows <= 1 || m.row_stride >= m.cols * (m.cols > 1 ? 1 : 0), "argument '",
                  name, "' has overlapping rows (row_stride=", m.row_stride, " < cols=", m.cols,
                  ")");
}
template <class T>
void check_shape(const MatrixView<T>& m, std::int64_t rows, std::int64_t cols,
                 const char* name) {
  FISHERKIT_CHECK(m.rows == rows && m.cols == cols, "argument '", name, "' must have shape (",
                  rows, ", ", cols, "), got (", m.rows, ", ", m.cols, ")");
}
}  // namespace detail

}  // namespace fisherkit
