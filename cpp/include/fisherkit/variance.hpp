// Closed-form element-wise variance of the two unbiased Fisher estimators (score I1 and
// Hessian I2) and their covariance, docs/maths/variance.rst#variance (Soen & Sun).
//
// For one input x and one label draw, every diagonal entry of an MLP parameter
// i = (l, u, j) reduces to per-unit scalars (docs/maths/variance.rst#variance-per-unit-scalars):
//   F_ii = abar_j^2 q,  Var(I1_ii) = abar_j^4 r,  Var(I2_ii) = abar_j^4 w,
//   Cov(I1_ii, I2_ii) = abar_j^4 c,
// with q, r, w, c computed from the unit's backward column g = G_l[:, u] and its output-
// Hessian diagonal tau_d = T_l[:, u, u] by detail/moments.hpp. Unit blocks are rank one
// per input: entry (j, k) of unit u is abar_j^2 abar_k^2 times the scalar. Over inputs
// both are one GEMM (diag) or one weighted Gram per unit (unit) per chunk.
//
// diag(T_l[c]) for every output c uses sum_{m >= l} (A_{l->m} o A_{l->m})^T v_m(c) with
// v_m(c) = (G_{m+1}[c, :] W_{m+1}) o phi''(z_m): the m = l + 1 term is one GEMM with
// W_{l+1} o W_{l+1} over the chunk; deeper terms chain A per sample (O(L^2 n^3)).
#pragma once
#include <cstdint>
#include <string>

#include "fisherkit/accumulate.hpp"

namespace fisherkit {

/// Which per-input, single-draw quantity to sum.
enum class Moment : int {
  v1 = 0,        ///< Var(I1 entry | x): score estimator
  v2 = 1,        ///< Var(I2 entry | x): Hessian estimator
  c12 = 2,       ///< Cov(I1 entry, I2 entry | x) for one shared draw
  fsq = 3,       ///< F(x)_entry^2: squared per-input exact Fisher (for the input-sampling part)
  v1_lower = 4,  ///< lower bound of v1 (docs/maths/variance.rst#variance-bounds; diag shape)
  v1_upper = 5,  ///< upper bound of v1
  v2_lower = 6,  ///< lower bound of v2
  v2_upper = 7,  ///< upper bound of v2
};

Moment parse_moment(const std::string& name);

/// out (fisher_size(mlp, shape) values, shape diag or unit; the bounds: diag) = the SUM over
/// the N inputs of the per-input, single-draw quantity `which`, in the flat layout of
/// fisher(). The caller
/// scales: the fixed-input variance of the estimate with S draws per input is
/// out / (N^2 S). Cost: one backward pass of C rows per input, plus the T-diagonal terms
/// for v2 and c12, plus one GEMM (diag) or SYRK per unit (unit) per chunk.
template <class T>
void variance_sum(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, Moment which,
                  Shape shape, VectorView<T> out, std::int64_t chunk = 0, Stream stream = nullptr);

/// Per-input Gram matrix of the output Jacobian, out (N x C*C) row n = J_n J_n^T (C x C,
/// row-major) = sum_l |abar_{l-1}|^2 G_l G_l^T with G_l = dh/dz_l, from per-layer factors
/// (never a C x P Jacobian). The total (trace) variance of the score estimator is built
/// from it (docs/maths/variance.rst#variance-trace). Cost: one backward pass of C rows per input.
template <class T>
void output_gram(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk = 0,
                 Stream stream = nullptr);

}  // namespace fisherkit
