// Head moments and per-unit variance scalars, vectorised over the N rows of H (N x C
// natural parameters). The per-row maths is detail/moments.hpp (host and device);
// docs/maths/heads.rst#heads-fourth-moments
//
// All entry points take host views with arbitrary strides, compute in double internally
// (sums, centring, head mean parameters) and round the results to T. They validate the
// head (sigma, C), that H is finite, and every shape, and throw fisherkit::Error naming
// the argument.
#pragma once
#include <cstdint>

#include "fisherkit/heads.hpp"
#include "fisherkit/view.hpp"

namespace fisherkit {

/// Which moment of the centred sufficient statistic tau = t - eta(h) a contraction takes.
enum class HeadMoment : int {
  covariance = 2,       ///< I(u, v) = E[(u.tau)(v.tau)]                     (2 vectors)
  third_cumulant = 3,   ///< kappa3(u, v, w) = E[(u.tau)(v.tau)(w.tau)]      (3 vectors)
  fourth_moment = 4,    ///< K(u, v, w, z) = E[(u.tau)(v.tau)(w.tau)(z.tau)] (4 vectors)
  fourth_cumulant = 5,  ///< kappa4(u, v, w, z) = K minus the 3 pairings of I (4 vectors)
};

/// Number of vectors a HeadMoment contracts with (2, 3 or 4).
int head_moment_order(HeadMoment which);

/// Row-wise contraction out[n] = M(h_n)(U_n, V_n[, W_n[, Z_n]]) for M = I, kappa3, K or
/// kappa4 (docs/maths/heads.rst#heads-fourth-moments). H, U, V, W, Z are N x C; the
/// vectors beyond the order of `which` are ignored (pass empty views). out has N entries.
/// Cost O(N C); never forms a C^3 or C^4 tensor.
template <class T>
void head_contraction(const Head& head, HeadMoment which, MatrixView<const T> H,
                      MatrixView<const T> U, MatrixView<const T> V, MatrixView<const T> W,
                      MatrixView<const T> Z, VectorView<T> out);

/// Per-unit scalars of docs/maths/variance.rst#variance-per-unit-scalars for n units of one layer at N inputs:
///   q = g^T I g,  r = K(g,g,g,g) - q^2,  w = tau_d^T I tau_d,  c = -kappa3(g, g, tau_d),
/// with g = G_l[:, u] and tau_d = T_l[:, u, u] of input n. G holds G_l per input as an
/// N x (C*n) view, entry (c, u) of input n at G(n, c*n + u) (row-major C x n); Tdiag has
/// the same layout for T_l[c, u, u]. q, r (and w, c) are N x n. Then for a parameter
/// (l, u, j): F_ii = abar_j^2 q, V1_i = abar_j^4 r, V2_i = abar_j^4 w, C12_i = abar_j^4 c.
/// Tdiag may be empty (data == nullptr): then w and c must be empty too and only q, r are
/// computed. Categorical forms are the centred, stable ones. Cost O(N n C).
template <class T>
void head_unit_scalars(const Head& head, MatrixView<const T> H, MatrixView<const T> G,
                       MatrixView<const T> Tdiag, MatrixView<T> q, MatrixView<T> r,
                       MatrixView<T> w, MatrixView<T> c);

/// Layer-block variances of docs/maths/variance.rst#variance-layer-blocks for n units at N inputs:
///   U1[u, u'] = Var((g_u.tau)(g_u'.tau)) = kappa4(g_u,g_u',g_u,g_u') + q_u q_u' + (g_u^T I g_u')^2,
///   U2[u, u'] = T_l[:, u, u']^T I T_l[:, u, u'].
/// G is N x (C*n) as in head_unit_scalars; Tfull is N x (C*n*n), entry (c, u, u') at column
/// c*n*n + u*n + u' (may be empty: then U2 must be empty too). U1, U2 are N x (n*n),
/// entry (u, u') at column u*n + u'. The element-wise variance of the layer block at one
/// input is U (x) (abar^2 abar^2^T). Cost O(N n^2 C).
template <class T>
void head_layer_block(const Head& head, MatrixView<const T> H, MatrixView<const T> G,
                      MatrixView<const T> Tfull, MatrixView<T> U1, MatrixView<T> U2);

/// Head constants of docs/maths/heads.rst#heads-spectral-constants per row: out (N x 4) = (lambda_min, lambda_max, k_min,
/// k_max), the extreme eigenvalues of I(h) and the extreme values of K(u,u,u,u) over unit
/// vectors u. lambda_min and k_min are exact or lower bounds, lambda_max and k_max exact or
/// upper bounds (see detail::head_spectral_constants for which is which per head). O(N C).
template <class T>
void head_spectral_constants(const Head& head, MatrixView<const T> H, MatrixView<T> out);

}  // namespace fisherkit
