// Thin typed wrappers over the CBLAS of scipy-openblas32 (symbols prefixed scipy_).
// Private to the core library: consumers never see BLAS headers.
#pragma once
#include <cblas.h>

#include <climits>
#include <cstdint>

#include "fisherkit/error.hpp"

namespace fisherkit::blas {

inline blasint to_int(std::int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw Error(std::string("BLAS dimension '") + what + "' out of 32-bit range");
  return static_cast<blasint>(v);
}

/// Row-major C (m x n) = alpha op(A) op(B) + beta C.
inline void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                 const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta,
                 float* C, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    to_int(m, "m"), to_int(n, "n"), to_int(k, "k"), alpha, A, to_int(lda, "lda"),
                    B, to_int(ldb, "ldb"), beta, C, to_int(ldc, "ldc"));
}
inline void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
                 const double* A, std::int64_t lda, const double* B, std::int64_t ldb,
                 double beta, double* C, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    to_int(m, "m"), to_int(n, "n"), to_int(k, "k"), alpha, A, to_int(lda, "lda"),
                    B, to_int(ldb, "ldb"), beta, C, to_int(ldc, "ldc"));
}

/// Row-major upper triangle of C (n x n) = alpha A^T A + beta C, A is k x n (trans) —
/// the Gram matrix of k rows.
inline void syrk_rows(std::int64_t n, std::int64_t k, float alpha, const float* A,
                      std::int64_t lda, float beta, float* C, std::int64_t ldc) {
  if (n == 0) return;
  scipy_cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, to_int(n, "n"), to_int(k, "k"), alpha,
                    A, to_int(lda, "lda"), beta, C, to_int(ldc, "ldc"));
}
inline void syrk_rows(std::int64_t n, std::int64_t k, double alpha, const double* A,
                      std::int64_t lda, double beta, double* C, std::int64_t ldc) {
  if (n == 0) return;
  scipy_cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, to_int(n, "n"), to_int(k, "k"), alpha,
                    A, to_int(lda, "lda"), beta, C, to_int(ldc, "ldc"));
}

}  // namespace fisherkit::blas
