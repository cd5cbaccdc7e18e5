// Argument checks shared by the core's entry points (private).
#pragma once
#include <cmath>
#include <cstdint>

#include "fisherkit/mlp.hpp"

namespace fisherkit::detail {

/// Every value of m is finite; names the argument and the first bad entry.
template <class T>
void check_finite(MatrixView<const T> m, const char* name) {
  for (std::int64_t i = 0; i < m.rows; ++i)
    for (std::int64_t j = 0; j < m.cols; ++j)
      FISHERKIT_CHECK(std::isfinite(m(i, j)), "argument '", name,
                      "' contains NaN or Inf (first at [", i, ", ", j, "])");
}

/// Inputs X of an MLP: host, unit column stride, at least one row, width n_0, finite;
/// the weights finite.
/// The device-independent part: one device for X and the weights, the shape, the layout.
template <class T>
void check_input_layout(const Mlp<T>& mlp, MatrixView<const T> X, const char* name) {
  FISHERKIT_CHECK(X.device == mlp.device(), "argument '", name, "' is in ",
                  X.device == Device::cuda ? "GPU" : "host", " memory but the MLP's weights are in ",
                  mlp.device() == Device::cuda ? "GPU" : "host", " memory; put both on one device");
  FISHERKIT_CHECK(X.rows > 0, "argument '", name, "' is an empty batch (0 rows)");
  FISHERKIT_CHECK(X.cols == mlp.input_dim(), "argument '", name, "' must have ",
                  mlp.input_dim(), " columns (the MLP's input width), got ", X.cols);
  check_rows_unit_stride(X, name);
}

template <class T>
void check_inputs(const Mlp<T>& mlp, MatrixView<const T> X, const char* name) {
  check_host(X, name);
  check_input_layout(mlp, X, name);
  check_finite(X, name);
  mlp.check_finite();
}

}  // namespace fisherkit::detail
