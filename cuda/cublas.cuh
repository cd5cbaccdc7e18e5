// cuBLAS, loaded at run time. fisherkit declares the handful of cuBLAS entry points it
// calls (their C ABI has been stable since CUDA 8) and finds libcublas when the first GPU
// GEMM runs: the path in FISHERKIT_CUBLAS, else libcublas.so.13 / .so.12 by soname (CuPy's
// or the nvidia-cublas wheel's copy once loaded, or the system's). The CPU-only build and
// the CUDA build therefore need no cuBLAS headers or libraries, and a machine without
// cuBLAS gets a clear error on the first GPU GEMM instead of failing to import.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace fisherkit::cuda::detail {

/// Row-major C = alpha op(A) op(B) + beta C on `stream`, batched with element strides
/// (batch 1: a plain GEMM). float and double.
void cublas_gemm(cudaStream_t stream, bool ta, bool tb, std::int64_t m, std::int64_t n,
                 std::int64_t k, float alpha, const float* A, std::int64_t lda, std::int64_t sA,
                 const float* B, std::int64_t ldb, std::int64_t sB, float beta, float* C,
                 std::int64_t ldc, std::int64_t sC, std::int64_t batch);
void cublas_gemm(cudaStream_t stream, bool ta, bool tb, std::int64_t m, std::int64_t n,
                 std::int64_t k, double alpha, const double* A, std::int64_t lda, std::int64_t sA,
                 const double* B, std::int64_t ldb, std::int64_t sB, double beta, double* C,
                 std::int64_t ldc, std::int64_t sC, std::int64_t batch);

/// Where cuBLAS was loaded from ("" when it has not been needed yet or is missing).
const char* cublas_library();

}  // namespace fisherkit::cuda::detail
