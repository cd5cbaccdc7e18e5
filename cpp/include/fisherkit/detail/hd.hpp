// FISHERKIT_HD marks element-level functions that both the CPU loops and the CUDA kernels
// call, so one piece of maths serves both backends and is unit-tested on the CPU.
#pragma once
#if defined(__CUDACC__)
#define FISHERKIT_HD __host__ __device__ __forceinline__
#else
#define FISHERKIT_HD inline
#endif

// FISHERKIT_LAMBDA marks the loop bodies of the passes (cpp/src/passes): plain
// lambdas for the host executor, extended __host__ __device__ lambdas under nvcc.
#if defined(__CUDACC__)
#define FISHERKIT_LAMBDA __host__ __device__
#else
#define FISHERKIT_LAMBDA
#endif
