// Argument checks shared by the host-only entry points (private; the passes check on their
// executor, passes/common.hpp).
#pragma once
#include <cmath>
#include <cstdint>

#include "fisherkit/view.hpp"

namespace fisherkit::detail {

/// Every value of m is finite; names the argument and the first bad entry.
template <class T>
void check_finite(MatrixView<const T> m, const char* name) {
  for (std::int64_t i = 0; i < m.rows; ++i)
    for (std::int64_t j = 0; j < m.cols; ++j)
      FISHERKIT_CHECK(std::isfinite(m(i, j)), "argument '", name, "' contains NaN or Inf (first at [", i, ", ", j,
                      "])");
}

}  // namespace fisherkit::detail
