// The heads over the rows of H (heads.hpp) written once: log-likelihood, mean, covariance
// (or its square root), counter-based sampling. One loop iteration per row calls the row
// maths of detail/heads.hpp.
#pragma once
#include "common.hpp"
#include "fisherkit/detail/heads.hpp"
#include "fisherkit/detail/rng.hpp"

namespace fisherkit::passes {

/// H (N x C): on the executor's device, unit column stride, finite; the head fits C.
template <class X, class T>
void check_head_rows(X& x, const Head& head, MatrixView<const T> H) {
  check_on<X>(H, "H");
  FISHERKIT_CHECK(H.rows >= 0 && H.cols >= 1, "argument 'H' must have at least one column");
  FISHERKIT_CHECK(H.cols == 1 || H.col_stride == 1, "argument 'H' must have unit column stride");
  check_head(head, H.cols);
  x.start();
  x.check_device_of(H.data, "H");
  check_finite(x, H, "H");
}

template <class X, class T>
void check_head_out(MatrixView<T> out, i64 rows, i64 cols) {
  check_on<X>(out, "out");
  detail::check_shape(out, rows, cols, "out");
  detail::check_rows_unit_stride(out, "out");
}

template <class X, class T>
void head_log_likelihood_pass(X& x, const Head& head, MatrixView<const T> H, MatrixView<const T> y, VectorView<T> out) {
  check_head_rows(x, head, H);
  check_label_layout<X>(head, y, H.rows, H.cols, "y");
  check_on<X>(out, "out");
  FISHERKIT_CHECK(out.size == H.rows, "argument 'out' must have ", H.rows, " entries, got ", out.size);
  const HeadKind kind = head.kind;
  const i64 C = H.cols;
  const i64 bad = x.first_if(y.rows, [=] FISHERKIT_LAMBDA(i64 n) { return !detail::head_label_valid(kind, y.row(n), C); });
  if (bad >= 0) {
    T first;
    x.to_host(&first, y.row(bad), 1);
    fail_label(head, "y", bad, double(first), C);
  }
  const T sig = T(head.sigma);
  x.for_each(H.rows, [=] FISHERKIT_LAMBDA(i64 n) {
    out[n] = detail::head_log_likelihood(kind, sig, H.row(n), y.row(n), C);
  });
  check_result_rows(x, static_cast<const T*>(out.data), H.rows, 1, out.stride, 0, "the log-likelihood", "row of H");
}

template <class X, class T>
void head_mean_pass(X& x, const Head& head, MatrixView<const T> H, MatrixView<T> out) {
  check_head_rows(x, head, H);
  check_head_out<X>(out, H.rows, H.cols);
  const HeadKind kind = head.kind;
  const i64 C = H.cols;
  x.for_each(H.rows, [=] FISHERKIT_LAMBDA(i64 n) { detail::head_mean(kind, H.row(n), C, out.row(n)); });
  check_result_rows(x, static_cast<const T*>(out.data), H.rows, C, out.row_stride, 0, "the head's mean", "row of H");
}

template <class X, class T>
void head_covariance_pass(X& x, const Head& head, MatrixView<const T> H, MatrixView<T> out, bool sqrt) {
  check_head_rows(x, head, H);
  check_head_out<X>(out, H.rows, H.cols * H.cols);
  const HeadKind kind = head.kind;
  const T sig = T(head.sigma);
  const i64 C = H.cols;
  x.for_each(H.rows, [=] FISHERKIT_LAMBDA(i64 n) {
    if (sqrt)
      detail::head_sqrt_covariance(kind, sig, H.row(n), C, out.row(n));
    else
      detail::head_covariance(kind, sig, H.row(n), C, out.row(n));
  });
  check_result_rows(x, static_cast<const T*>(out.data), H.rows, C * C, out.row_stride, 0, "the head's covariance",
                    "row of H");
}

template <class X, class T>
void head_sample_pass(X& x, const Head& head, MatrixView<const T> H, std::uint64_t seed, i64 S, MatrixView<T> out,
                      i64 index_offset) {
  check_draws(S, index_offset);
  check_head_rows(x, head, H);
  check_head_out<X>(out, H.rows * S, detail::head_label_cols(head.kind, H.cols));
  const HeadKind kind = head.kind;
  const T sig = T(head.sigma);
  const i64 C = H.cols;
  x.for_each(H.rows * S, [=] FISHERKIT_LAMBDA(i64 r) {
    const i64 n = r / S, s = r % S;
    detail::Philox4x32 rng(seed, static_cast<std::uint64_t>(index_offset + n), static_cast<std::uint32_t>(s), 0);
    detail::head_sample(kind, sig, H.row(n), C, rng, out.row(r));
  });
}

}  // namespace fisherkit::passes
