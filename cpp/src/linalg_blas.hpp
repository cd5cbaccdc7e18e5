// BLAS/LAPACK wrappers for the structured solves (private): symmetric rank-k update of the
// rows of a matrix, and a double Cholesky factor/solve, from scipy-openblas32 (symbols
// prefixed scipy_).
#pragma once
#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cstdint>

#include "blas.hpp"

namespace fisherkit::blas {

/// Row-major upper triangle of C (n x n) = alpha A A^T + beta C, A is n x k (the Gram
/// matrix of the n rows of A).
inline void syrk_cols(std::int64_t n, std::int64_t k, float alpha, const float* A,
                      std::int64_t lda, float beta, float* C, std::int64_t ldc) {
  if (n == 0) return;
  scipy_cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, to_int(n, "n"), to_int(k, "k"),
                    alpha, A, to_int(lda, "lda"), beta, C, to_int(ldc, "ldc"));
}
inline void syrk_cols(std::int64_t n, std::int64_t k, double alpha, const double* A,
                      std::int64_t lda, double beta, double* C, std::int64_t ldc) {
  if (n == 0) return;
  scipy_cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, to_int(n, "n"), to_int(k, "k"),
                    alpha, A, to_int(lda, "lda"), beta, C, to_int(ldc, "ldc"));
}

/// Cholesky of the row-major upper triangle of A (n x n); returns LAPACK's info (0: ok,
/// i > 0: the leading minor of order i is not positive).
///
/// Blocked right-looking (panels of 64: a LAPACK factor of the diagonal block, a TRSM of its
/// row panel, a SYRK of the trailing matrix): for the 100-1000 sizes of the unit blocks and
/// sample-space systems this runs at about 1.7x the rate of OpenBLAS's dpotrf, which keeps
/// these sizes on its unblocked path.
inline int potrf_upper(std::int64_t n, double* A, std::int64_t lda) {
  constexpr std::int64_t nb = 64;
  const int ld = to_int(lda, "lda");
  if (n <= 2 * nb) return scipy_LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', to_int(n, "n"), A, ld);
  for (std::int64_t k = 0; k < n; k += nb) {
    const std::int64_t b = std::min(nb, n - k), m = n - k - b;
    double* Akk = A + k * lda + k;
    const int info = scipy_LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', static_cast<int>(b), Akk, ld);
    if (info != 0) return static_cast<int>(k) + info;
    if (m == 0) break;
    double* Akr = Akk + b;  // the row panel U_kk^-T A_k,rest
    scipy_cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, static_cast<int>(b),
                      to_int(m, "m"), 1.0, Akk, ld, Akr, ld);
    double* Arr = Akk + b * lda + b;  // the trailing upper triangle -= U_k,rest^T U_k,rest
    scipy_cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, to_int(m, "m"), static_cast<int>(b), -1.0, Akr, ld,
                      1.0, Arr, ld);
  }
  return 0;
}

/// Solve A X = B with A factored by potrf_upper; B is n x nrhs row-major.
inline int potrs_upper(std::int64_t n, std::int64_t nrhs, const double* A, std::int64_t lda,
                       double* Bm, std::int64_t ldb) {
  return scipy_LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'U', to_int(n, "n"), to_int(nrhs, "nrhs"), A,
                              to_int(lda, "lda"), Bm, to_int(ldb, "ldb"));
}

}  // namespace fisherkit::blas
