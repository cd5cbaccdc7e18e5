// Vectorised bulk loops (private). Defined in activations_simd.cpp, compiled with
// vector-maths flags.
#pragma once
#include <cstdint>

#include "fisherkit/detail/activations.hpp"

namespace fisherkit::detail {

/// f = phi(z), d1 = phi'(z), d2 = phi''(z) over n contiguous values; d1/d2 may be null.
template <class T>
void activation_bulk(Activation a, const T* z, T* f, T* d1, T* d2, std::int64_t n);

}  // namespace fisherkit::detail
