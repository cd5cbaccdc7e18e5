// GPU backend: the fisher passes (FISHERKIT_FISHER_OPS of cpp/src/passes/table.hpp).
#include "backend.cuh"
#include "passes/fisher.hpp"

namespace fisherkit {
FISHERKIT_CUDA_BACKEND(FISHERKIT_FISHER_OPS)
}  // namespace fisherkit
