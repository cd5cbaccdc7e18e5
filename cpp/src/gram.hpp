// Weighted accumulations over a chunk shared by the Fisher and variance engines (private):
// every diagonal and unit-block quantity of an MLP is a per-unit weight times a power of
// the augmented layer input (math/variance.md 5.2), so it is one GEMM (diag) or one
// weighted Gram per unit (unit) per chunk. Chunk sums are computed in T by BLAS and
// added to float64 accumulators.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "blas.hpp"

namespace fisherkit::detail {

/// Add a chunk's contribution computed by BLAS in T into a float64 accumulator block
/// (rows x cols, leading dimension ld_acc). For double the BLAS call writes straight into
/// the accumulator (beta = 1); for float it writes a T scratch that is then added.
/// `upper`: only the upper triangle is meaningful (a SYRK result), so only it is added.
template <class T, class Call>
void blas_accumulate(double* acc, std::int64_t rows, std::int64_t cols, std::int64_t ld_acc,
                     std::vector<T>& tmp, Call&& call, bool upper = false) {
  if constexpr (std::is_same_v<T, double>) {
    call(acc, ld_acc, T(1));
  } else {
    tmp.resize(static_cast<size_t>(rows * cols));
    call(tmp.data(), cols, T(0));
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = upper ? i : 0; j < cols; ++j) acc[i * ld_acc + j] += double(tmp[i * cols + j]);
  }
}

/// Diagonal of one layer: acc[u * ni + j] += sum_s w[s, u] B[s, j] for the weights and
/// acc[no * ni + u] += sum_s w[s, u] B[s, ni] for the biases. w: n x no; B: n x (ni + 1)
/// (a power of the augmented input; its last column is the bias slot).
template <class T>
void accumulate_diag(double* acc, const T* w, std::int64_t no, const T* B, std::int64_t n,
                     std::int64_t ni, std::vector<T>& tmp) {
  const std::int64_t k = ni + 1;
  blas_accumulate<T>(acc, no, ni, ni, tmp, [&](auto* dst, std::int64_t ldd, T beta) {
    blas::gemm(true, false, no, ni, n, T(1), w, no, B, k, beta, dst, ldd);
  });
  for (std::int64_t s = 0; s < n; ++s)
    for (std::int64_t u = 0; u < no; ++u) acc[no * ni + u] += double(w[s * no + u]) * double(B[s * k + ni]);
}

/// Unit blocks of one layer: blocks + u k^2 (k x k, upper triangle) += sum_s w[s, u] B_s B_s^T
/// for every unit u. Rows are split by the sign of w and each part is a SYRK of
/// sqrt|w_s| B_s, so signed weights cost one SYRK's work. pos/neg/tmp are scratch.
template <class T>
void accumulate_unit(double* blocks, const T* w, std::int64_t no, const T* B, std::int64_t n,
                     std::int64_t k, std::vector<T>& pos, std::vector<T>& neg, std::vector<T>& tmp) {
  pos.resize(static_cast<size_t>(n * k));
  neg.resize(static_cast<size_t>(n * k));
  for (std::int64_t u = 0; u < no; ++u) {
    double* blk = blocks + u * k * k;
    std::int64_t np_ = 0, nn_ = 0;
    for (std::int64_t s = 0; s < n; ++s) {
      const T ws = w[s * no + u];
      if (ws == T(0)) continue;
      const T sw = std::sqrt(ws > T(0) ? ws : -ws);
      T* dst = ws > T(0) ? pos.data() + (np_++) * k : neg.data() + (nn_++) * k;
      for (std::int64_t j = 0; j < k; ++j) dst[j] = sw * B[s * k + j];
    }
    if (np_ > 0)
      blas_accumulate<T>(blk, k, k, k, tmp, [&](auto* dst, std::int64_t ldd, T beta) {
        blas::syrk_rows(k, np_, T(1), pos.data(), k, beta, dst, ldd);
      }, true);
    if (nn_ > 0)
      blas_accumulate<T>(blk, k, k, k, tmp, [&](auto* dst, std::int64_t ldd, T beta) {
        blas::syrk_rows(k, nn_, T(-1), neg.data(), k, beta, dst, ldd);
      }, true);
  }
}

/// Copy the upper triangle of an m x m row-major block to its lower triangle.
inline void symmetrise_block(double* b, std::int64_t m) {
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < i; ++j) b[i * m + j] = b[j * m + i];
}

/// out[off + i m + j] = out[off + j m + i] = scale * acc[off + i m + j] for i <= j: the
/// upper triangle of an m x m accumulator block, scaled, converted and mirrored, in 64 x 64
/// tiles (a plain column-order mirror of a block larger than the cache was as slow as the
/// SYRKs that filled it). acc may alias out's storage (T = double, unit stride).
template <class T, class Out>
void emit_symmetric_block(const double* acc, double scale, Out& out, std::int64_t off,
                          std::int64_t m) {
  constexpr std::int64_t TB = 64;
  for (std::int64_t ib = 0; ib < m; ib += TB)
    for (std::int64_t jb = ib; jb < m; jb += TB) {
      const std::int64_t ie = ib + TB < m ? ib + TB : m, je = jb + TB < m ? jb + TB : m;
      for (std::int64_t i = ib; i < ie; ++i)
        for (std::int64_t j = (jb > i ? jb : i); j < je; ++j) {
          const T v = T(acc[off + i * m + j] * scale);
          out[off + i * m + j] = v;
          out[off + j * m + i] = v;
        }
    }
}

}  // namespace fisherkit::detail
