// GPU backend: the mlp passes (FISHERKIT_MLP_OPS of cpp/src/passes/table.hpp).
#include "backend.cuh"
#include "passes/mlp.hpp"

namespace fisherkit {
FISHERKIT_CUDA_BACKEND(FISHERKIT_MLP_OPS)
}  // namespace fisherkit
