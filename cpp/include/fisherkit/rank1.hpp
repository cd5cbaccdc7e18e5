// Low-rank damped empirical-Fisher solves (docs/maths/rank1.rst#rank1-sherman-morrison, docs/maths/rank1.rst#rank1-rank-b).
//
//   rank 1 (Sherman-Morrison):  (lambda I_p + psi psi^T)^-1 g
//                             = (g - psi (psi . g) / (lambda + psi . psi)) / lambda
//   rank B (sample space):      F_B = lambda I_p + (1/B) Psi^T Psi   (Psi: B x p, rows psi_b)
//                               F_B^-1 g = (g - Psi^T y / B) / lambda,
//                               (lambda I_B + Psi Psi^T / B) y = Psi g
// The 1/B makes F_B the damped mean of the B one-sample Fishers psi_b psi_b^T (docs/maths/natgrad.rst#natgrad
// 3.5), so B = 1 is exactly the rank-1 form.
#pragma once
#include <cstdint>

#include "fisherkit/view.hpp"

namespace fisherkit {

/// Sherman-Morrison: out row i = (damping I + psi_i psi_i^T)^-1 g_i. psi is m x p, or 1 x p
/// for one score shared by all m rows of g (m x p); out is m x p (may alias g). damping > 0.
/// Dot products accumulate in double. Cost: 2 dot products and one axpy over p per row
/// (3 reads and 1 write of p elements). docs/maths/rank1.rst#rank1-sherman-morrison Throws Error on shapes, damping,
/// NaN/Inf.
template <class T>
void rank1_solve(MatrixView<const T> psi, MatrixView<const T> g, double damping,
                 MatrixView<T> out);

/// Sample-space solve of the damped rank-B empirical Fisher: out row i =
/// (damping I_p + Psi^T Psi / B)^-1 g_i, with Psi B x p (rows = per-sample scores), g and out
/// m x p (out must not alias g or Psi), damping > 0. The B x B Gram Psi Psi^T and Psi g^T
/// are BLAS calls in T (syrk, gemm); the B x B system lambda I + Gram / B is factored by
/// Cholesky in double; the back-projection is one gemm. Cost O(p B^2 + p B m + B^3);
/// workspace B^2 + 2 B m doubles plus B m values of T. docs/maths/natgrad.rst#natgrad-exact-unit-blocks (the sample-space solve) and docs/maths/rank1.rst#rank1-rank-b.
/// Throws Error on shapes, damping, NaN/Inf, or a Gram system that is not positive
/// definite to working precision (damping too small for the scale of Psi).
template <class T>
void rankb_solve(MatrixView<const T> Psi, MatrixView<const T> g, double damping,
                 MatrixView<T> out);

}  // namespace fisherkit
