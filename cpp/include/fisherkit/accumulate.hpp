// Fisher information estimates of an MLP, accumulated over chunks of inputs into one of
// four shapes. docs/maths/conventions.rst#conventions-network (docs/maths/estimators.rst#estimators-shapes).
//
// Estimators (S = samples draws of y per input, drawn from the model with the
// counter-based generator, so results do not depend on chunk size or threads; draw s of
// input n is exactly head_sample(head, H, seed, S)'s row n*S + s):
//   exact      F = (1/N) sum_n J_n^T I(h_n) J_n, through a square-root factor of I(h)
//   score      (1/(N S)) sum_n sum_s s_ns s_ns^T, s_ns = J_n^T (t(y_ns) - eta_n)     (I1)
//   hessian    (1/(N S)) sum_n sum_s -d^2 log p(y_ns|x_n) = F - (1/N) sum_n sum_a taubar_na H_a(x_n)
//              with taubar_n = (1/S) sum_s (t(y_ns) - eta_n) and H_a the output Hessians (I2)
//   empirical  (1/N) sum_n g_n g_n^T at the given labels (biased; needs y)
// Shapes, in the flat parameter order (per layer W_l row-major, then b_l):
//   full   P x P, row-major
//   layer  per layer l a D_l x D_l block, D_l = n_l (n_{l-1} + 1), in that layer's flat order
//   unit   per layer l, n_l blocks of (n_{l-1} + 1)^2: row u of W_l then b_l[u]
//   diag   P
// All blocks are concatenated into one flat output of fisher_size(mlp, shape) values.
//
// Every shape is built from the per-sample backward factors: for a pseudo-output row r of
// sample n, the row D_l[r] = d(r^T h)/dz_l and the augmented input abar_{l-1}; the
// parameter gradient of row r is D_l[r] (x) abar. Unit and diagonal shapes need only the
// per-unit weights q_nu = sum_r D_l[r,u]^2 (F_ii = abar_j^2 q), so they are one GEMM (diag)
// or one weighted Gram per unit (unit) per chunk; full and layer shapes are a SYRK of the
// pseudo-gradient rows. The Hessian estimator subtracts the output-Hessian term computed
// by the recursion T_l = D_l W_{l+1}^T T_{l+1} W_{l+1} D_l + diag(ehat_l * phi''(z_l)) for
// the contracted output taubar^T h (within-layer blocks), plus the cross-layer formula of
// docs/maths/variance.rst#variance-output-hessian for "full" (O(N P^2) work: meant for small P).
//
// Accumulation: each chunk is summed in T by BLAS, chunk sums are accumulated in float64,
// so float32 error grows with the chunk size, not with N.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fisherkit/heads.hpp"
#include "fisherkit/layout.hpp"
#include "fisherkit/mlp.hpp"

namespace fisherkit {

enum class Estimator : int { exact = 0, score = 1, hessian = 2, empirical = 3 };

Estimator parse_estimator(const std::string& name);
Shape parse_shape(const std::string& name);
const char* estimator_name(Estimator e);
const char* shape_name(Shape s);

struct FisherOptions {
  Estimator estimator = Estimator::exact;
  Shape shape = Shape::diag;
  std::int64_t samples = 1;       ///< draws of y per input (score, hessian)
  std::uint64_t seed = 0;         ///< counter-based generator key
  std::int64_t chunk = 0;         ///< inputs per chunk; 0 picks one from the workspace budget
  std::int64_t index_offset = 0;  ///< global index of X's first row (for streaming with one seed)
  /// Shape "layer" only: the layers (0-based, ascending) whose blocks are computed; the flat
  /// output holds just those blocks, in order. Empty: every layer.
  std::vector<std::int64_t> layers;
};

/// Values of the flat output of fisher() for these options (the layer subset included).
template <class T>
std::int64_t fisher_result_size(const Mlp<T>& mlp, const FisherOptions& opt);

/// Number of values of the flat output for `shape` (mlp.layout().size(shape)).
template <class T>
std::int64_t fisher_size(const Mlp<T>& mlp, Shape shape);

/// Bytes of workspace fisher() allocates besides `out` for these options and N inputs on
/// the host: the per-chunk buffers. The result accumulates in `out` itself, in T, when
/// `out` has unit stride (a strided `out` adds one result-sized buffer of T).
template <class T>
std::int64_t fisher_workspace_bytes(const Mlp<T>& mlp, const FisherOptions& opt, std::int64_t N);

/// The estimate averaged over the N inputs (and draws) into `out` (fisher_size values).
/// y: labels (N x 1 class indices or N x C) for the empirical estimator, ignored (may be
/// empty) otherwise.
template <class T>
void fisher(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
            const FisherOptions& opt, VectorView<T> out, Stream stream = nullptr);

/// Output Hessians d^2 h_c / dtheta^2 per input, out: N x (C * P * P), row n holding C
/// symmetric P x P matrices in the flat parameter order (within-layer blocks from the
/// output-Hessian recursion T_l, cross-layer blocks from docs/maths/variance.rst#variance-output-hessian). For small
/// problems: O(C P^2) work and memory per input.
template <class T>
void output_hessians(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out,
                     std::int64_t chunk = 0, Stream stream = nullptr);

}  // namespace fisherkit
