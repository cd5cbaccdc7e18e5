// Batched diagonal-plus-rank-2 blocks: solve and explicit inverse (docs/maths/natgrad.rst#natgrad-dpr2).
//
// B independent blocks of size n, block b being
//   A_b = diag(d_b + damping) + U_b S_b U_b^T,
// with d_b > 0 (n entries), U_b an n x 2 matrix and S_b a 2 x 2 matrix that may be singular
// (and need not be symmetric). Both routines use the push-through Woodbury identity
//   A^-1 = D^-1 - D^-1 U (I_2 + S K)^-1 S U^T D^-1,   K = U^T D^-1 U,
// which never inverts S (docs/maths/natgrad.rst#natgrad-meanfield-solver: C = [[A2-A0, A1], [A1, 0]] is singular when
// A1 = 0 and A2 = A0). Per block the cost is O(n) for the solve and O(n^2) for the inverse;
// the 2 x 2 reductions are accumulated in double for float and double alike.
//
// Layout (all host views need unit column stride; rows, i.e. blocks, may be strided):
//   d    B x n      row b = the diagonal of block b (before damping)
//   U    B x 2n     row b = U_b stored row-major n x 2: U_b[j][a] = U(b, 2j + a)
//   S    B x 4      row b = S_b row-major: [s00, s01, s10, s11] (any column stride)
//   rhs  B x n k    row b = the k right-hand sides of block b, row-major n x k
//   out  B x n k    (may be the same memory as rhs: the update is element-wise)
#pragma once
#include <cstdint>

#include "fisherkit/view.hpp"

namespace fisherkit {

/// out_b = (diag(d_b + damping) + U_b S_b U_b^T)^-1 rhs_b for every block b (shapes in the
/// header comment; k >= 1 right-hand sides per block). `damping` >= 0 is added to d. Runs
/// where the views live: OpenMP over blocks on the host, one CTA per block on the GPU
/// (asynchronous on `stream`).
/// Without `status` (no entries): throws Error naming the argument on a shape mismatch,
/// NaN/Inf in any input, a damped diagonal entry that is not positive (naming block and
/// entry), or a block whose matrix is singular to working precision (naming the block); GPU
/// calls need `status`. With `status` (B entries of int): each block writes its
/// detail::Dpr2Status (0 ok, 1 bad diagonal, 2 non-finite, 3 singular) there and a failed
/// block's output is NaN; shapes and damping still throw. Cost: one read of d, U, rhs (a
/// second one from cache), one write of out; 10 n k flops per block.
template <class T>
void dpr2_solve(MatrixView<const T> d, MatrixView<const T> U, MatrixView<const T> S, MatrixView<const T> rhs,
                std::int64_t k, double damping, MatrixView<T> out, VectorView<int> status = {},
                Stream stream = nullptr);

/// Explicit inverses: out row b = (A_b)^-1 stored row-major n x n (out is B x n^2), via
/// A^-1 = D^-1 - (D^-1 U) Z (D^-1 U)^T, Z = (I + S K)^-1 S (docs/maths/natgrad.rst#natgrad-meanfield-solver, first form).
/// Same checks as dpr2_solve. Cost O(n^2) per block; meant for small n and for tests.
template <class T>
void dpr2_inverse(MatrixView<const T> d, MatrixView<const T> U, MatrixView<const T> S,
                  double damping, MatrixView<T> out);


}  // namespace fisherkit
