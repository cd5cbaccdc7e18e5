// The unit-wise natural gradients on the compiled engine: one pass for the statistics of
// every method (unit_statistics), and the solvers of each method's per-unit systems
// (host, float64, OpenMP over units): batched Cholesky of exact unit blocks, the
// sample-space solve for batches smaller than the fan-in, the closed-form mean-field solve
// (a diagonal-plus-rank-2 system per unit, O(n)), and Ollivier's quasi-diagonal update.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fisherkit/heads.hpp"
#include "fisherkit/mlp.hpp"
#include "fisherkit/view.hpp"

namespace fisherkit {

/// Per-sample metric weight of a unit (docs/maths/natgrad.rst#natgrad-unit-blocks): exact (the head's covariance,
/// C backward rows per input), score (`samples` labels drawn from the model, drawn as
/// fisher()'s score estimator draws them), empirical (the data labels), bpm (Ollivier's
/// backpropagated metric: diag Cov(t|h) backpropagated with squared weights; no rows).
enum class Metric : int { exact = 0, score = 1, empirical = 2, bpm = 3 };

Metric parse_metric(const std::string& name);

struct UnitStatsOptions {
  Metric metric = Metric::exact;
  std::int64_t samples = 1;       ///< draws per input (score)
  std::uint64_t seed = 0;         ///< counter-based generator key (score)
  std::int64_t index_offset = 0;  ///< global index of X's first row
  std::int64_t chunk = 0;         ///< inputs per chunk; 0: from the workspace budget
};

/// The statistics of one layer l (l = 1..L) that unit_statistics computes; a view without
/// data is not computed. g2[s, u] is unit u's metric weight at input s (with respect to its
/// pre-activation, averaged over draws), b2[s, u] the weight with respect to its activity
/// (g2 = b2 phi'(z)^2; b2 = g2 in the output layer). abar = (a_{l-1}, 1) is the augmented
/// input (k_l = n_{l-1} + bias). Sums run over the N inputs.
template <class T>
struct UnitStats {
  MatrixView<T> inputs;        ///< N x n_{l-1}: the layer's inputs a_{l-1}
  MatrixView<T> g2;            ///< N x n_l
  MatrixView<T> b2;            ///< N x n_l
  MatrixView<T> rows;          ///< N x (M n_l): the metric's M backward rows per input (exact: the
                               ///< covariance's square root backpropagated; score: draws / sqrt(S))
  VectorView<double> g2_sum;   ///< n_l: sum_s g2[s, u]
  VectorView<double> b2_sum;   ///< n_l: sum_s b2[s, u]
  VectorView<double> x_sum;    ///< n_{l-1}: sum_s a[s, j]
  VectorView<double> x_sq;     ///< n_{l-1}: sum_s a[s, j]^2
  MatrixView<double> x_gram;   ///< n_{l-1} x n_{l-1}: sum_s a_s a_s^T
  MatrixView<double> qd1;      ///< n_l x k_l: sum_s g2[s, u] abar[s, j]
  MatrixView<double> qd2;      ///< n_l x k_l: sum_s g2[s, u] abar[s, j]^2
  VectorView<double> blocks;   ///< n_l k_l^2: sum_s g2[s, u] abar_s abar_s^T (row-major blocks)
};

/// One pass over X computing, for every layer, the requested statistics of the unit-wise
/// natural gradients (`stats` has one entry per layer). When `grad` has data (P values), the
/// same pass also writes the gradient of the mean negative log-likelihood at the labels y
/// and returns that mean (otherwise returns 0): an optimizer step needs one forward pass.
/// y is needed by the empirical metric and by `grad`. Cost: forward, plus one backward pass
/// of the metric's rows (exact C, score S, empirical 1, bpm none: a GEMM with W o W per
/// layer), plus one more row for the gradient, plus a GEMM or SYRK per requested sum.
template <class T>
double unit_statistics(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
                       const UnitStatsOptions& opt, const std::vector<UnitStats<T>>& stats, VectorView<T> grad,
                       Stream stream = nullptr);

/// Solves (B_b + damping I) x_b = r_b for B float64 blocks of k x k (blocks: B x k^2, each
/// symmetric, row-major; rhs, out: B x (k nrhs), the nrhs right-hand sides of block b
/// row-major k x nrhs) by Cholesky. A block that is not positive definite is an Error naming
/// it, or, when `status` has B entries, status[b] = the order of its first non-positive minor
/// (0: solved) and its output undefined. Cost per block k^3/3 + 2 k^2 nrhs; workspace k^2 per
/// thread.
void unit_block_solve(MatrixView<const double> blocks, MatrixView<const double> rhs, double damping,
                      MatrixView<double> out, std::int64_t nrhs = 1, VectorView<int> status = {});

/// The exact unit blocks in sample space, for a batch smaller than the fan-in: for every
/// unit i, x_i = (damping I + Xi_i^T Xi_i)^-1 r_i with Xi_i = diag(g2[:, i] / N)^(1/2) xt
/// (xt: N x k augmented inputs, g2: N x m weights >= 0, rhs/out: m x k), through the N x N
/// system (damping I_N + Xi Xi^T) y = Xi r (Cholesky). damping > 0. Cost: one N x N Gram,
/// then N^3/3 + 4 N k per unit.
void unit_sample_space_solve(MatrixView<const double> xt, MatrixView<const double> g2, MatrixView<const double> rhs,
                             double damping, MatrixView<double> out);

/// The closed-form mean-field unit solve (diagonal plus rank 2 per unit): for every row b,
/// (a_b I_n + U_b S_b U_b^T) x_b = r_b - U_b q_b with U_b = [1_n, w_b] (w_b row b of W),
/// a_b > 0, S_b (row b of S: s00, s01, s10, s11) any 2 x 2 (singular allowed), q_b (2 values).
/// Writes x (out, B x n) and ux (B x 2) = U_b^T x_b. The push-through identity of dpr2_solve
/// with D = a_b I, from four row reductions (sum w, w.w, sum r, w.r): one read of W and rhs,
/// one read and a write for the result. Throws Error naming the row when a_b is not
/// positive or the system is singular to working precision.
void dpr2_rows_solve(VectorView<const double> a, MatrixView<const double> W, MatrixView<const double> S,
                     MatrixView<const double> q, MatrixView<const double> rhs, MatrixView<double> out,
                     MatrixView<double> ux);

/// Ollivier's quasi-diagonal update of one layer (m units, n inputs): per edge (i, j) the 2 x 2
/// system on (bias, weight) with M00 = m00[i] + damping, M0j = m0i[i, j], Mjj = mii[i, j] +
/// damping, then the bias correction: dW_ij = (gW_ij M00 - gb_i M0j) / (Mjj M00 - M0j^2),
/// db_i = (gb_i - sum_j M0j dW_ij) / M00. With `diag_only` (or m0i empty): the diagonal update
/// dW = gW / Mjj, db = gb / M00. Throws Error naming the unit when a system is singular.
void quasi_diagonal_solve(VectorView<const double> m00, MatrixView<const double> m0i, MatrixView<const double> mii,
                          MatrixView<const double> gW, VectorView<const double> gb, double damping,
                          MatrixView<double> dW, VectorView<double> db);

}  // namespace fisherkit
