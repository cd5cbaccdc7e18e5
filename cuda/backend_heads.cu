// GPU backend: the head passes (FISHERKIT_HEAD_OPS of cpp/src/passes/table.hpp).
#include "backend.cuh"
#include "passes/heads.hpp"

namespace fisherkit {
FISHERKIT_CUDA_BACKEND(FISHERKIT_HEAD_OPS)
}  // namespace fisherkit
