// GPU backend: the variance passes and the natural-gradient statistics (FISHERKIT_VARIANCE_OPS
// of cpp/src/passes/table.hpp).
#include "backend.cuh"
#include "passes/natgrad.hpp"
#include "passes/variance.hpp"

namespace fisherkit {
FISHERKIT_CUDA_BACKEND(FISHERKIT_VARIANCE_OPS)
}  // namespace fisherkit
