// Row kernels of the O(n) unit-wise natural gradient (natgrad.md 1.7, "whole-network
// closed-form natural gradient", passes 1 and 3).
//
// A layer with m units and fan-in n holds W (m x n) and its gradient G (m x n). The
// closed form needs four reductions per row (pass 1) and then one element-wise
// combination per row (pass 3); the O(1)-per-unit work in between (the Gaussian integrals
// A_k and a 3 x 3 solve) stays in Python. Both passes stream the weight-sized arrays once:
// pass 1 reads W and G, pass 3 reads G and W and writes the result, so the whole update
// moves 5 weight-sized arrays (a copy moves 2). Views need unit column stride; rows may be
// strided. OpenMP over rows; accumulation in double for float and double.
#pragma once
#include <cstdint>

#include "fisherkit/view.hpp"

namespace fisherkit {

/// out(i, :) = [sum_j W_ij^2, sum_j W_ij, sum_j W_ij G_ij, sum_j G_ij] for every row i.
/// W, G: m x n (same shape); out: m x 4 (double). Throws Error naming the argument on a
/// shape mismatch or a non-unit column stride. Cost: 6 m n flops, one read of W and G.
template <class T>
void unit_row_reductions(MatrixView<const T> W, MatrixView<const T> G, MatrixView<double> out);

/// out_ij = coef(i, 0) G_ij + coef(i, 1) W_ij + coef(i, 2) for every row i (natgrad.md
/// 1.7: n~_w = (g_w - y1 m 1 - y2 e) / a). G, W, out: m x n; coef: m x 3 (double). `out`
/// may alias G. Throws Error naming the argument on a shape mismatch. Cost: 4 m n flops,
/// one read of G and W, one write of out.
template <class T>
void unit_row_combine(MatrixView<const T> G, MatrixView<const T> W, MatrixView<const double> coef,
                      MatrixView<T> out);

}  // namespace fisherkit
