// The host executor of the portable passes (passes.hpp): buffers are std::vectors, loops
// run on OpenMP threads, GEMMs go to OpenBLAS. The CUDA executor (cuda/exec.cuh) has the
// same members over device memory, kernels and cuBLAS; running the passes with this one
// is how the CPU tests check the CUDA backend's algorithms line by line.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "../blas.hpp"
#include "../parallel.hpp"
#include "fisherkit/view.hpp"

namespace fisherkit::xpu {

struct HostExec {
  static constexpr Device device = Device::host;

  /// Growable workspace; resize never shrinks and does not keep values.
  template <class T>
  class Buf {
   public:
    explicit Buf(HostExec&) {}
    Buf(Buf&&) noexcept = default;
    Buf& operator=(Buf&&) noexcept = default;
    Buf(const Buf&) = delete;
    void resize(std::int64_t n) {
      if (static_cast<size_t>(n) > v_.size()) v_.resize(static_cast<size_t>(n));
    }
    T* data() { return v_.data(); }
    const T* data() const { return v_.data(); }
    void swap(Buf& o) noexcept { v_.swap(o.v_); }

   private:
    std::vector<T> v_;
  };

  /// Called by the passes after the layout checks, before any work (the CUDA executor
  /// checks that a device is visible here).
  void start() const {}
  void check_device_of(const void*, const char*) const {}

  /// f(i) for i in [0, n).
  template <class F>
  void for_each(std::int64_t n, F f) {
    if (n > 0) detail::parallel_for(n, 16, f);
  }

  /// The smallest i in [0, n) with pred(i), or -1.
  template <class P>
  std::int64_t first_if(std::int64_t n, P pred) {
    for (std::int64_t i = 0; i < n; ++i)
      if (pred(i)) return i;
    return -1;
  }

  /// Row-major C = alpha op(A) op(B) + beta C.
  template <class T>
  void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* A,
            std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
    blas::gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  /// `batch` GEMMs, the i-th on A + i sA, B + i sB, C + i sC (a stride may be 0).
  template <class T>
  void gemm_batched(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                    const T* A, std::int64_t lda, std::int64_t sA, const T* B, std::int64_t ldb,
                    std::int64_t sB, T beta, T* C, std::int64_t ldc, std::int64_t sC,
                    std::int64_t batch) {
    for (std::int64_t i = 0; i < batch; ++i)
      blas::gemm(ta, tb, m, n, k, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
  }

  /// Copy n values of executor memory to the host.
  template <class T>
  void to_host(T* dst, const T* src, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
};

}  // namespace fisherkit::xpu
