// Shared helpers of the CUDA launchers.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "fisherkit/error.hpp"
#include "fisherkit/view.hpp"

namespace fisherkit::cuda::detail {

inline void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // do not leave the error recorded for the next, unrelated call
  if (e == cudaErrorMemoryAllocation)
    throw TooLarge(std::string("out of GPU memory in ") + what + "; pass a smaller chunk or free GPU memory");
  throw Unavailable(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

template <class V>
void check_device(const V& v, const char* name) {
  FISHERKIT_CHECK(v.device == Device::cuda, "argument '", name,
                  "' is a host view; this entry point takes CUDA memory");
}

inline unsigned blocks_for(long long n, unsigned threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

}  // namespace fisherkit::cuda::detail
