// Kronecker-factored Fisher (KFAC) and its eigenvalue-corrected refinement (EKFAC), their
// distance from the exact layer blocks, and the closed-form variance of their sampled parts.
// docs/maths/kfac.rst#kfac-factors
//
// For layer l with augmented inputs abar_n (k_l = n_in + bias values, bias last) and the
// estimator's backward rows d_r = d(r^T h)/dz_l (M rows per input: the columns of a square
// root of Cov(t | h_n) for "exact", the draws (t - eta) / sqrt(S) for "score", the data
// residual for "empirical"), the layer block of the Fisher is
//   F_l = (1/N) sum_n Gamma_n (x) abar_n abar_n^T,   Gamma_n = sum_{r in n} d_r d_r^T,
// in the unit-major order (u, j) (unit u, input j; the flat parameter order permutes it:
// Layout::local_index). KFAC replaces it by G_l (x) A_l with
//   A_l = (1/N) sum_n abar_n abar_n^T       (k_l x k_l)
//   G_l = (1/N) sum_n Gamma_n               (n_out x n_out)
// both averages, so that G_l (x) A_l has the scale of every fisherkit Fisher. EKFAC keeps
// the eigenbases Q_A, Q_G of the factors and re-fits the diagonal in their product basis:
//   s[i, j] = (1/N) sum_n sum_{r in n} (Q_G^T d_r)_i^2 (Q_A^T abar_n)_j^2,
// the exact diagonal of (Q_G (x) Q_A)^T F_l (Q_G (x) Q_A), one GEMM over inputs per chunk.
//
// Layouts: Shape::kfac (layout.hpp) for the factors, and for the bases (Q_A then Q_G per
// layer, eigenvectors in the columns, row-major); the EKFAC diagonal has P values, layer l's
// n_out x k_l array s row-major at param_offset(l).
#pragma once
#include <cstdint>

#include "fisherkit/accumulate.hpp"

namespace fisherkit {

/// The factors A_l, G_l of every layer into `out` (Shape::kfac layout,
/// mlp.layout().size(Shape::kfac) values), averaged over the N inputs (and draws).
/// opt.estimator: exact, score or empirical (the Hessian estimator has no Kronecker form:
/// Error). opt.samples, seed, index_offset and chunk as fisher(); opt.shape is ignored.
/// Cost per chunk of n inputs: the forward pass, the backward pass of M rows per input, and
/// two SYRKs per layer (n k_l^2 + n M n_out^2 multiply-adds).
template <class T>
void kfac_factors(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
                  const FisherOptions& opt, VectorView<T> out, Stream stream = nullptr);

/// The EKFAC diagonal s of every layer in the eigenbases `bases` (Shape::kfac layout:
/// Q_A then Q_G per layer) into `out` (P values), averaged like kfac_factors, from the same
/// backward rows (the same draws for the same seed). Cost per chunk: kfac_factors' passes
/// with the two SYRKs replaced by the rotations abar Q_A, D Q_G and one GEMM q^T (abar Q_A)^2.
template <class T>
void ekfac_diagonal(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
                    const FisherOptions& opt, VectorView<const T> bases, VectorView<T> out,
                    Stream stream = nullptr);

/// For every layer, sq[l] = ||F_l||_F^2 with F_l the estimator's layer block
/// (fisher(..., shape="layer") with the same options), without forming F_l
/// (docs/maths/kfac.rst#kfac-error):
///   ||F_l||^2 = (1/N^2) sum_{n,m} tr(Gamma_n Gamma_m) (abar_n . abar_m)^2,
/// and in the same pass over the inputs, when asked for:
///   cross (L values, needs `factors`, Shape::kfac layout): <F_l, G_l (x) A_l>_F =
///     (1/N) sum_n tr(Gamma_n G_l) abar_n^T A_l abar_n;
///   diag (P values, needs `bases`): the EKFAC diagonal of ekfac_diagonal (with the
///     eigenvalues of the factors, <F_l, G_l (x) A_l> = sum_ij lambda_G,i lambda_A,j s_ij, so
///     `cross` is then not needed).
/// The double sum runs over pairs of chunks by GEMMs: tr(Gamma_n Gamma_m) from the Gram of
/// the backward rows (n M x m M, squared, summed in M x M blocks) or, when cheaper
/// (n_out + 1 <= 2 M^2), from the Gram (a SYRK within a chunk) of the packed Gamma_n. The
/// inputs' per-layer summaries are kept for as many inputs as fit `keep_bytes` (0: 8
/// workspace budgets, 256 MiB on the host); beyond that the inputs are taken in blocks and
/// the later inputs' rows recomputed once per block. Cost: O(N^2 (min(M^2 n_out, n_out^2 / 2)
/// + k_l)) per layer, plus the passes of kfac_factors once per block.
template <class T>
void kfac_error_sums(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
                     const FisherOptions& opt, VectorView<const T> factors, VectorView<const T> bases,
                     std::int64_t keep_bytes, VectorView<double> sq, VectorView<double> cross, VectorView<T> diag,
                     Stream stream = nullptr);

/// The SUM over the N inputs of the single-draw variance of the score estimator's sampled
/// KFAC parts (docs/maths/kfac.rst#kfac-variance), inputs fixed:
///   without bases (empty view): out (Shape::kfac layout) holds, for G_l[u, v],
///     sum_n Var((b_u . tau)(b_v . tau)) = sum_n [kappa4(b_u, b_v, b_u, b_v) + I(b_u, b_u) I(b_v, b_v)
///     + I(b_u, b_v)^2] with b_u = dh/dz_{l,u} (C values) at input n; the A_l parts are 0
///     (A_l does not depend on the labels);
///   with bases (Shape::kfac layout), for the EKFAC diagonal (out: P values)
///     sum_n Var(((Q_G b)_i . tau)^2) (Q_A^T abar_n)_j^4, the bases held fixed.
/// The variance of the estimate with S draws per input is out / (N^2 S). Cost: one backward
/// pass of C columns per input, plus O(C n_out^2) per input and layer (KFAC) or one GEMM
/// per layer (EKFAC).
template <class T>
void kfac_variance_sum(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, VectorView<const T> bases,
                       VectorView<T> out, std::int64_t chunk = 0, Stream stream = nullptr);

}  // namespace fisherkit
