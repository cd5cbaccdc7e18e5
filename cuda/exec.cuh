// The CUDA executor of the portable passes (cpp/src/xpu/passes.hpp): workspace from the
// stream-ordered allocator, element loops as grid-stride kernels calling the passes'
// __host__ __device__ lambdas, GEMMs in cuBLAS, all on one stream. Same members as the
// host executor (cpp/src/xpu/host_exec.hpp).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "common.cuh"
#include "cublas.cuh"
#include "fisherkit/view.hpp"

namespace fisherkit::cuda::detail {

template <class F>
__global__ void for_each_kernel(std::int64_t n, F f) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) f(i);
}

template <class P>
__global__ void first_if_kernel(std::int64_t n, P pred, unsigned long long* first) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += step)
    if (pred(i)) atomicMin(first, static_cast<unsigned long long>(i));
}

struct CudaExec {
  static constexpr Device device = Device::cuda;
  static constexpr unsigned kThreads = 256;
  cudaStream_t stream;

  explicit CudaExec(void* s) : stream(static_cast<cudaStream_t>(s)) {}

  /// Called by the passes once the arguments' devices, shapes and layouts are checked (so
  /// that those errors come first), before any work on the device.
  void start() const {
    cudaGetLastError();  // an error recorded by someone else's earlier call is not ours
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
      cudaGetLastError();
      int driver = 0;
      cudaDriverGetVersion(&driver);  // 0: no driver installed at all
      cudaGetLastError();
      if (e == cudaErrorInsufficientDriver && driver > 0)
        throw Unavailable(std::string("the NVIDIA driver is older than the CUDA runtime fisherkit was "
                                      "built with (CUDA ") + std::to_string(CUDART_VERSION / 1000) + "." +
                          std::to_string(CUDART_VERSION % 1000 / 10) + "); update the driver or build "
                          "fisherkit with an older CUDA toolkit");
      throw Unavailable(std::string("no CUDA device is visible (fisherkit was built with CUDA; the "
                                    "runtime says: ") + (driver == 0 ? "no NVIDIA driver is installed" : cudaGetErrorString(e == cudaSuccess ? cudaErrorNoDevice : e)) +
                        "); pass NumPy arrays for the CPU path");
    }
  }

  /// Memory at p (argument `name`) must be on the current device: kernels, allocations and
  /// cuBLAS all run there.
  void check_device_of(const void* p, const char* name) const {
    if (!p) return;
    cudaPointerAttributes attr{};
    const cudaError_t e = cudaPointerGetAttributes(&attr, p);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return;  // not a pointer the runtime knows; the kernels will report it
    }
    int cur = 0;
    check_cuda(cudaGetDevice(&cur), "cudaGetDevice");
    FISHERKIT_CHECK(attr.type == cudaMemoryTypeManaged || attr.type == cudaMemoryTypeHost ||
                        attr.device == cur,
                    "argument '", name, "' is on GPU ", attr.device, " but the current device is GPU ", cur,
                    "; call fisherkit under `with cupy.cuda.Device(", attr.device, "):`");
  }

  /// Growable device workspace (stream-ordered allocations; resize keeps no values).
  template <class T>
  class Buf {
   public:
    explicit Buf(CudaExec& x) : stream_(x.stream) {}
    Buf(Buf&& o) noexcept : p_(o.p_), cap_(o.cap_), stream_(o.stream_) { o.p_ = nullptr; o.cap_ = 0; }
    Buf& operator=(Buf&& o) noexcept {
      std::swap(p_, o.p_);
      std::swap(cap_, o.cap_);
      std::swap(stream_, o.stream_);
      return *this;
    }
    Buf(const Buf&) = delete;
    ~Buf() {
      if (p_ && cudaFreeAsync(p_, stream_) != cudaSuccess) cudaGetLastError();
    }
    void resize(std::int64_t n) {
      if (n <= cap_) return;
      if (p_) check_cuda(cudaFreeAsync(p_, stream_), "cudaFreeAsync");
      p_ = nullptr;
      cap_ = 0;
      check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&p_), static_cast<size_t>(n) * sizeof(T), stream_),
                 "cudaMallocAsync");
      cap_ = n;
    }
    T* data() { return p_; }
    const T* data() const { return p_; }
    void swap(Buf& o) noexcept {
      std::swap(p_, o.p_);
      std::swap(cap_, o.cap_);
    }

   private:
    T* p_ = nullptr;
    std::int64_t cap_ = 0;
    cudaStream_t stream_;
  };

  unsigned grid(std::int64_t n) const {
    return static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, 65535 * 16));
  }

  template <class F>
  void for_each(std::int64_t n, F f) {
    if (n <= 0) return;
    for_each_kernel<<<grid(n), kThreads, 0, stream>>>(n, f);
    check_cuda(cudaGetLastError(), "a fisherkit kernel launch");
  }

  template <class P>
  std::int64_t first_if(std::int64_t n, P pred) {
    if (n <= 0) return -1;
    Buf<unsigned long long> flag(*this);
    flag.resize(1);
    const unsigned long long none = ~0ull;
    check_cuda(cudaMemsetAsync(flag.data(), 0xFF, sizeof(none), stream), "cudaMemsetAsync");
    first_if_kernel<<<grid(n), kThreads, 0, stream>>>(n, pred, flag.data());
    check_cuda(cudaGetLastError(), "a fisherkit check kernel");
    unsigned long long first = none;
    check_cuda(cudaMemcpyAsync(&first, flag.data(), sizeof(first), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    return first == none ? -1 : static_cast<std::int64_t>(first);
  }

  template <class T>
  void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* A,
            std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
    cublas_gemm(stream, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
  }

  template <class T>
  void gemm_batched(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                    const T* A, std::int64_t lda, std::int64_t sA, const T* B, std::int64_t ldb,
                    std::int64_t sB, T beta, T* C, std::int64_t ldc, std::int64_t sC, std::int64_t batch) {
    cublas_gemm(stream, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
  }

  template <class T>
  void to_host(T* dst, const T* src, std::int64_t n) {
    check_cuda(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(T), cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync");
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }
};

}  // namespace fisherkit::cuda::detail
