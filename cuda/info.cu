// Build facts of the CUDA build.
#include <cuda_runtime.h>

#include "fisherkit/mlp.hpp"

namespace fisherkit {

bool cuda_compiled() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

}  // namespace fisherkit
