// Exponential-family output heads, vectorised over the rows of H (N x C natural
// parameters). The per-row maths lives in detail/heads.hpp (host and device).
#pragma once
#include <cstdint>
#include <string>

#include "fisherkit/detail/heads.hpp"
#include "fisherkit/view.hpp"

namespace fisherkit {

/// A head: its kind and, for the Gaussian, the fixed standard deviation sigma (> 0).
struct Head {
  HeadKind kind = HeadKind::categorical;
  double sigma = 1.0;
};

/// Parse "gaussian", "categorical", "bernoulli", "poisson".
HeadKind parse_head(const std::string& name);
const char* head_name(HeadKind k);
/// Validate sigma (Gaussian) and that the head fits C outputs (categorical needs C >= 2).
void check_head(const Head& head, std::int64_t C);
/// Validate labels: shape N x 1 (categorical, class indices stored as T) or N x C, values
/// in the head's support. Throws Error naming `name` and the first bad row.
template <class T>
void check_labels(const Head& head, MatrixView<const T> y, std::int64_t N, std::int64_t C,
                  const char* name = "y");
/// The shape and layout part of check_labels (any device; values are not read).
template <class T>
void check_label_layout(const Head& head, MatrixView<const T> y, std::int64_t N, std::int64_t C,
                        const char* name = "y");
/// Throws the error check_labels gives for row n of `name` (first: its first value).
[[noreturn]] void fail_label(const Head& head, const char* name, std::int64_t n, double first,
                             std::int64_t C);

// The functions over the rows of H run where H lives (host or GPU; same algorithm, the row
// maths of detail/heads.hpp), and check that H is finite and the labels valid.

/// out[n] = log p(y_n | h_n).
template <class T>
void head_log_likelihood(const Head& head, MatrixView<const T> H, MatrixView<const T> y, VectorView<T> out,
                         Stream stream = nullptr);
/// out (N x C) = E[y | h].
template <class T>
void head_mean(const Head& head, MatrixView<const T> H, MatrixView<T> out, Stream stream = nullptr);
/// out (N x C*C) = Cov(t | h) per row, row-major C x C; with `sqrt`, a factor B per row with
/// B B^T = Cov(t | h) (categorical: column k is sqrt(p_k) (e_k - p); the others diagonal).
template <class T>
void head_covariance(const Head& head, MatrixView<const T> H, MatrixView<T> out, bool sqrt = false,
                     Stream stream = nullptr);
/// out (N*S x label_cols): S draws y ~ p(.|h_n) per row; draw s of row n is row n*S + s.
/// Counter-based: draw (n, s) depends on (seed, index_offset + n, s) only.
template <class T>
void head_sample(const Head& head, MatrixView<const T> H, std::uint64_t seed, std::int64_t S,
                 MatrixView<T> out, std::int64_t index_offset = 0, Stream stream = nullptr);

}  // namespace fisherkit
