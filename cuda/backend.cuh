// The GPU backend of the table (cpp/src/passes/table.hpp): each pass run by the CUDA
// executor on the caller's stream. cuda/backend_*.cu instantiate one group each, so the
// groups compile in parallel.
#pragma once
#include "exec.cuh"
#include "passes/table.hpp"

#define FISHERKIT_CUDA_PASS(T_, R, name, params, args, dev) \
  FISHERKIT_DEFINE_PASS(T_, R, name, params, args, dev, _cuda, cuda::detail::CudaExec x(stream))
#define FISHERKIT_CUDA_INSTANTIATE(T_, R, name, params, args, dev) \
  FISHERKIT_INSTANTIATE(T_, R, name, params, args, dev, _cuda)
#define FISHERKIT_CUDA_BACKEND(GROUP)          \
  GROUP(FISHERKIT_CUDA_PASS, T)                \
  GROUP(FISHERKIT_CUDA_INSTANTIATE, float)     \
  GROUP(FISHERKIT_CUDA_INSTANTIATE, double)
