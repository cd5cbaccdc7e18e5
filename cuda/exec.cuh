// The CUDA executor of the passes (cpp/src/passes): workspace from the stream-ordered
// allocator, element loops as grid-stride kernels calling the passes' __host__ __device__
// lambdas, GEMMs in cuBLAS, all on one stream. Same members as the host executor
// (cpp/src/cpu/host_exec.hpp); its coarse primitives are kernels of this file and cuBLAS.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "common.cuh"
#include "cublas.cuh"
#include "fisherkit/detail/activations.hpp"
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

template <class F>
__global__ void for_2d_kernel(std::int64_t rows, std::int64_t cols, F f) {
  const std::int64_t n = rows * cols, step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += step)
    f(i / cols, i % cols);
}

template <class Term, class Store>
__global__ void for_2d_sum_kernel(std::int64_t rows, std::int64_t cols, std::int64_t terms, Term term, Store store) {
  const std::int64_t n = rows * cols, step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    const std::int64_t r = i / cols, j = i % cols;
    using V = decltype(term(r, std::int64_t(0), j));
    V acc = V(0);
    for (std::int64_t t = 0; t < terms; ++t) acc += term(r, t, j);
    store(r, j, acc);
  }
}

template <class T>
__global__ void bias_activation_kernel(Activation act, T* z, const T* bias, std::int64_t bs, T* a, T* d1, T* d2,
                                       std::int64_t n, std::int64_t no) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n * no; i += step) {
    const T zi = bias ? z[i] + bias[(i % no) * bs] : z[i];
    z[i] = zi;
    if (a) {
      T fv, g1, g2;
      fisherkit::detail::activation_eval(act, zi, &fv, &g1, &g2);
      a[i] = fv;
      if (d1) d1[i] = g1;
      if (d2) d2[i] = g2;
    }
  }
}

/// wb[b, s, j] = w[s * ldw + u0 + b] * B[s, j]: the weighted copies of B of nb units.
template <class T>
__global__ void weighted_copies_kernel(T* wb, const T* w, std::int64_t ldw, std::int64_t u0, const T* B,
                                       std::int64_t n, std::int64_t k, std::int64_t nb) {
  const std::int64_t nk = n * k, step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < nb * nk; i += step) {
    const std::int64_t b = i / nk, r = i % nk;
    wb[i] = w[(r / k) * ldw + u0 + b] * B[r];
  }
}

template <class T, class A>
__global__ void add_into_kernel(A* acc, const T* t, std::int64_t n) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += step)
    acc[i] += A(t[i]);
}

/// Phase 1 of a symmetric emission: the upper triangle (i <= j) of each m x m block, scaled
/// and converted (in place when acc is out's storage).
template <class T, class A>
__global__ void emit_upper_kernel(const A* acc, double scale, VectorView<T> out, std::int64_t off,
                                  std::int64_t m, std::int64_t count) {
  const std::int64_t mm = m * m, step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count * mm; i += step) {
    const std::int64_t r = i % mm, a = r / m, b = r % m;
    if (a <= b) out[off + i] = T(acc[off + i] * scale);
  }
}

/// Phase 2: the lower triangle from the (already emitted) upper one.
template <class T>
__global__ void emit_lower_kernel(VectorView<T> out, std::int64_t off, std::int64_t m, std::int64_t count) {
  const std::int64_t mm = m * m, step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count * mm; i += step) {
    const std::int64_t blk = i / mm, r = i % mm, a = r / m, b = r % m;
    if (a > b) out[off + i] = out[off + blk * mm + b * m + a];
  }
}

struct CudaExec {
  static constexpr Device device = Device::cuda;
  static constexpr unsigned kThreads = 256;
  /// Per-chunk workspace budget (bytes) and the largest chunk (inputs): bigger than the
  /// host's, a GPU needs tall matrices to be busy.
  static constexpr std::int64_t chunk_budget = std::int64_t(256) << 20;
  static constexpr std::int64_t chunk_cap = 65536;
  /// Result blocks emitted in one group (no cache to stay in: a layer's units at once).
  static constexpr std::int64_t emit_group_bytes = std::int64_t(1) << 62;
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

  template <class F>
  void for_2d(std::int64_t rows, std::int64_t cols, F f) {
    if (rows <= 0 || cols <= 0) return;
    for_2d_kernel<<<grid(rows * cols), kThreads, 0, stream>>>(rows, cols, f);
    check_cuda(cudaGetLastError(), "a fisherkit kernel launch");
  }

  /// The stores and GEMMs of a pass stay separate kernels (see the host executor's).
  template <class T>
  static constexpr bool fuses_products = false;

  /// Rows of parameter-gradient form (see the host executor's outer_rows); `stream` is a
  /// host cache hint.
  template <class T>
  void outer_rows(T* base, std::int64_t ld, std::int64_t M, std::int64_t mstride, const T* D, std::int64_t rows,
                  std::int64_t no, const T* A, std::int64_t lda, std::int64_t ni, bool bias, bool /*stream*/) {
    for_2d(rows * no, ni, [=] __host__ __device__(std::int64_t q, std::int64_t j) {
      const std::int64_t r = q / no, u = q % no, s = r / M;
      base[s * ld + (r % M) * mstride + u * ni + j] = D[q] * A[s * lda + j];
    });
    if (bias)
      for_2d(rows, no, [=] __host__ __device__(std::int64_t r, std::int64_t u) {
        base[(r / M) * ld + (r % M) * mstride + no * ni + u] = D[r * no + u];
      });
  }

  template <class Term, class Store>
  void for_2d_sum(std::int64_t rows, std::int64_t cols, std::int64_t terms, Term term, Store store) {
    if (rows <= 0 || cols <= 0) return;
    for_2d_sum_kernel<<<grid(rows * cols), kThreads, 0, stream>>>(rows, cols, terms, term, store);
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

  /// Upper triangle of C = alpha A^T A + beta C (computed as a full GEMM: cuBLAS SYRK is
  /// not loaded; the passes only read the upper triangle).
  template <class T>
  void syrk(std::int64_t n, std::int64_t k, T alpha, const T* A, std::int64_t lda, T beta, T* C, std::int64_t ldc) {
    gemm(true, false, n, n, k, alpha, A, lda, A, lda, beta, C, ldc);
  }

  template <class T>
  void bias_activation(Activation act, T* z, const T* bias, std::int64_t bs, T* a, T* d1, T* d2, std::int64_t n,
                       std::int64_t no) {
    if (n * no <= 0) return;
    bias_activation_kernel<<<grid(n * no), kThreads, 0, stream>>>(act, z, bias, bs, a, d1, d2, n, no);
    check_cuda(cudaGetLastError(), "a fisherkit kernel launch");
  }

  /// Unit blocks: acc + u k^2 += sum_s w[s, u] B_s B_s^T (= with `overwrite`), as
  /// strided-batched GEMMs B^T (w_u o B) over groups of units whose weighted copies fit in
  /// 256 MiB.
  template <class T, class A>
  void unit_gram(A* acc, const T* w, std::int64_t ldw, std::int64_t no, const T* B, std::int64_t n,
                 std::int64_t k, bool overwrite = false) {
    const std::int64_t per_unit = n * k * static_cast<std::int64_t>(sizeof(T));
    const std::int64_t ub = std::max<std::int64_t>(1, std::min<std::int64_t>(no, (std::int64_t(256) << 20) / std::max<std::int64_t>(per_unit, 1)));
    Buf<T> wb(*this), tmp(*this);
    for (std::int64_t u0 = 0; u0 < no; u0 += ub) {
      const std::int64_t nb = std::min(ub, no - u0);
      wb.resize(nb * n * k);
      weighted_copies_kernel<<<grid(nb * n * k), kThreads, 0, stream>>>(wb.data(), w, ldw, u0, B, n, k, nb);
      check_cuda(cudaGetLastError(), "a fisherkit kernel launch");
      A* dst = acc + u0 * k * k;
      if constexpr (std::is_same_v<T, A>) {
        gemm_batched(true, false, k, k, n, T(1), B, k, 0, static_cast<const T*>(wb.data()), k, n * k,
                     overwrite ? T(0) : T(1), dst, k, k * k, nb);
      } else {
        if (overwrite)
          check_cuda(cudaMemsetAsync(dst, 0, static_cast<size_t>(nb * k * k) * sizeof(A), stream), "cudaMemsetAsync");
        tmp.resize(nb * k * k);
        gemm_batched(true, false, k, k, n, T(1), B, k, 0, static_cast<const T*>(wb.data()), k, n * k, T(0),
                     tmp.data(), k, k * k, nb);
        add_into_kernel<<<grid(nb * k * k), kThreads, 0, stream>>>(dst, static_cast<const T*>(tmp.data()), nb * k * k);
        check_cuda(cudaGetLastError(), "a fisherkit kernel launch");
      }
    }
  }

  /// count symmetric m x m blocks mirrored from their upper triangles (two phases, so that
  /// acc may be out's own storage). Returns whether every emitted value is finite.
  template <class T, class A>
  bool emit_symmetric(const A* acc, double scale, VectorView<T> out, std::int64_t off, std::int64_t m,
                      std::int64_t count) {
    const std::int64_t n = count * m * m;
    if (n <= 0) return true;
    emit_upper_kernel<<<grid(n), kThreads, 0, stream>>>(acc, scale, out, off, m, count);
    check_cuda(cudaGetLastError(), "a fisherkit kernel launch");
    emit_lower_kernel<<<grid(n), kThreads, 0, stream>>>(out, off, m, count);
    check_cuda(cudaGetLastError(), "a fisherkit kernel launch");
    return first_if(n, [=] FISHERKIT_LAMBDA(std::int64_t i) { return !fisherkit::detail::fk_isfinite(out[off + i]); }) < 0;
  }

  template <class T>
  void to_host(T* dst, const T* src, std::int64_t n) {
    check_cuda(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(T), cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync");
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }
};

}  // namespace fisherkit::cuda::detail
