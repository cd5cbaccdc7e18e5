// GPU backend: the KFAC and EKFAC passes (FISHERKIT_KFAC_OPS of cpp/src/passes/table.hpp).
#include "backend.cuh"
#include "passes/kfac.hpp"

namespace fisherkit {
FISHERKIT_CUDA_BACKEND(FISHERKIT_KFAC_OPS)
}  // namespace fisherkit
