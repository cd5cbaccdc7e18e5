// Element maths of the batched diagonal-plus-rank-2 solve (docs/maths/natgrad.rst#natgrad-dpr2, push-through
// Woodbury), shared by the CPU loops (cpp/src/dpr2.cpp) and the CUDA kernel (cuda/dpr2.cu).
//
// Block b: A = D + U S U^T with D = diag(d + damping) (n x n, positive), U (n x 2), S (2 x 2,
// any, possibly singular). With K = U^T D^-1 U and t = U^T D^-1 r,
//   x = D^-1 (r - U y),   (I_2 + S K) y = S t,
// which never inverts S. All per-block scalars are double, whatever the element type.
#pragma once
#include "fisherkit/detail/hd.hpp"

namespace fisherkit::detail {

/// Outcome of one block (the CUDA kernel writes it to a status array; the CPU turns it into
/// an Error naming the block).
enum Dpr2Status : int {
  dpr2_ok = 0,
  dpr2_bad_diagonal = 1,  // some d_j + damping is not a finite positive number
  dpr2_non_finite = 2,    // NaN/Inf in U, S or rhs (or overflow of the reductions)
  dpr2_singular = 3,      // I + S K is singular to working precision: A is singular
};

/// Running sums of one block: K = U^T D^-1 U (symmetric, 3 entries).
struct Dpr2Gram {
  double k00 = 0, k01 = 0, k11 = 0;
};

/// Is the damped diagonal entry usable (finite and > 0)? NaN fails both comparisons.
FISHERKIT_HD bool dpr2_diag_ok(double dj) { return dj > 0.0 && dj <= 1.7976931348623157e308; }

/// Add element j: dj = d_j + damping, (u0, u1) = row j of U. Returns nothing; the CPU's
/// vectorised reduction inlines the same three products.
FISHERKIT_HD void dpr2_gram_add(Dpr2Gram& g, double dj, double u0, double u1) {
  const double inv = 1.0 / dj;
  const double a = u0 * inv, b = u1 * inv;
  g.k00 += a * u0;
  g.k01 += a * u1;
  g.k11 += b * u1;
}

/// The 2 x 2 system M = I + S K of one block, kept for its right-hand sides.
struct Dpr2Small {
  double m00, m01, m10, m11;  // M
  double s00, s01, s10, s11;  // S
  double det;
};

/// Build M = I + S K and decide whether it is singular: |det M| must exceed
/// 64 eps_double (|m00 m11| + |m01 m10|) -- the cancellation bound of the 2 x 2 determinant.
/// det(M) = det(A) / det(D), so this is exactly "A is singular to working precision".
/// Returns dpr2_ok, dpr2_non_finite or dpr2_singular.
FISHERKIT_HD int dpr2_small_setup(Dpr2Small& m, double s00, double s01, double s10, double s11,
                                  const Dpr2Gram& g) {
  m.s00 = s00; m.s01 = s01; m.s10 = s10; m.s11 = s11;
  m.m00 = 1.0 + s00 * g.k00 + s01 * g.k01;
  m.m01 = s00 * g.k01 + s01 * g.k11;
  m.m10 = s10 * g.k00 + s11 * g.k01;
  m.m11 = 1.0 + s10 * g.k01 + s11 * g.k11;
  const double p = m.m00 * m.m11, q = m.m01 * m.m10;
  m.det = p - q;
  const double scale = (p < 0 ? -p : p) + (q < 0 ? -q : q);
  if (!(m.det - m.det == 0.0) || !(scale - scale == 0.0)) return dpr2_non_finite;
  const double ad = m.det < 0 ? -m.det : m.det;
  if (!(ad > 64.0 * 2.220446049250313e-16 * scale)) return dpr2_singular;
  return dpr2_ok;
}

/// Solve M y = S t for one right-hand side (t = U^T D^-1 r).
FISHERKIT_HD void dpr2_small_solve(const Dpr2Small& m, double t0, double t1, double& y0,
                                   double& y1) {
  const double v0 = m.s00 * t0 + m.s01 * t1;
  const double v1 = m.s10 * t0 + m.s11 * t1;
  y0 = (m.m11 * v0 - m.m01 * v1) / m.det;
  y1 = (m.m00 * v1 - m.m10 * v0) / m.det;
}

/// Z = M^-1 S (2 x 2), the coupling of the explicit inverse A^-1 = D^-1 - D^-1 U Z U^T D^-1.
FISHERKIT_HD void dpr2_small_coupling(const Dpr2Small& m, double& z00, double& z01, double& z10,
                                      double& z11) {
  dpr2_small_solve(m, 1.0, 0.0, z00, z10);  // M^-1 S e_0
  dpr2_small_solve(m, 0.0, 1.0, z01, z11);  // M^-1 S e_1
}

/// x_j = (r_j - u0 y0 - u1 y1) / (d_j + damping).
template <class T>
FISHERKIT_HD T dpr2_apply(T r, T u0, T u1, double dj, double y0, double y1) {
  return static_cast<T>((static_cast<double>(r) - static_cast<double>(u0) * y0 -
                         static_cast<double>(u1) * y1) / dj);
}

/// Entry (i, j) of the explicit inverse: delta_ij / d_i - (u_i/d_i)^T Z (u_j/d_j).
FISHERKIT_HD double dpr2_inverse_entry(bool diag, double dinv_i, double a0, double a1, double b0,
                                       double b1, double z00, double z01, double z10,
                                       double z11) {
  // (a0, a1) = u_i / d_i, (b0, b1) = u_j / d_j
  const double c = a0 * (z00 * b0 + z01 * b1) + a1 * (z10 * b0 + z11 * b1);
  return (diag ? dinv_i : 0.0) - c;
}

}  // namespace fisherkit::detail
