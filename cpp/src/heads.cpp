// Heads vectorised over rows (host). The per-row maths is detail/heads.hpp.
#include "fisherkit/heads.hpp"

#include <cmath>
#include <string>

#include "parallel.hpp"
#include "validate.hpp"

namespace fisherkit {

HeadKind parse_head(const std::string& name) {
  if (name == "gaussian" || name == "normal") return HeadKind::gaussian;
  if (name == "categorical" || name == "softmax") return HeadKind::categorical;
  if (name == "bernoulli") return HeadKind::bernoulli;
  if (name == "poisson") return HeadKind::poisson;
  detail::fail("unknown head '", name, "'; expected one of gaussian, categorical, bernoulli, poisson");
}

const char* head_name(HeadKind k) {
  switch (k) {
    case HeadKind::gaussian: return "gaussian";
    case HeadKind::categorical: return "categorical";
    case HeadKind::bernoulli: return "bernoulli";
    case HeadKind::poisson: return "poisson";
  }
  return "?";
}

void check_head(const Head& head, std::int64_t C) {
  FISHERKIT_CHECK(C >= 1, "the MLP must have at least one output");
  if (head.kind == HeadKind::gaussian)
    FISHERKIT_CHECK(std::isfinite(head.sigma) && head.sigma > 0, "argument 'sigma' must be a "
                    "finite positive standard deviation, got ", head.sigma);
  if (head.kind == HeadKind::categorical)
    FISHERKIT_CHECK(C >= 2, "the categorical head needs at least 2 outputs (logits), got ", C);
}

void fail_label(const Head& head, const char* name, std::int64_t n, double first, std::int64_t C) {
  switch (head.kind) {
    case HeadKind::categorical:
      detail::fail("argument '", name, "' row ", n, " is not a class index in [0, ", C, "): ", first);
    case HeadKind::bernoulli:
      detail::fail("argument '", name, "' row ", n, " has a value other than 0 or 1");
    case HeadKind::poisson:
      detail::fail("argument '", name, "' row ", n, " has a value that is not a count (integer >= 0)");
    case HeadKind::gaussian:
      break;
  }
  detail::fail("argument '", name, "' row ", n, " contains NaN or Inf");
}

template <class T>
void check_label_layout(const Head& head, MatrixView<const T> y, std::int64_t N, std::int64_t C,
                        const char* name) {
  const std::int64_t cols = detail::head_label_cols(head.kind, C);
  FISHERKIT_CHECK(y.rows == N && y.cols == cols, "argument '", name, "' must have shape (", N, ", ",
                  cols, ") for the ", head_name(head.kind), " head, got (", y.rows, ", ", y.cols,
                  ")");
  FISHERKIT_CHECK(y.cols <= 1 || y.col_stride == 1, "argument '", name, "' must have unit column stride");
}

template <class T>
void check_labels(const Head& head, MatrixView<const T> y, std::int64_t N, std::int64_t C,
                  const char* name) {
  detail::check_host(y, name);
  check_label_layout(head, y, N, C, name);
  for (std::int64_t n = 0; n < N; ++n)
    if (!detail::head_label_valid(head.kind, y.row(n), C)) fail_label(head, name, n, double(y(n, 0)), C);
}

namespace {
template <class T>
void check_H(const Head& head, MatrixView<const T> H) {
  detail::check_host(H, "H");
  FISHERKIT_CHECK(H.rows >= 0 && H.cols >= 1, "argument 'H' must have at least one column");
  FISHERKIT_CHECK(H.cols == 1 || H.col_stride == 1, "argument 'H' must have unit column stride");
  check_head(head, H.cols);
  detail::check_finite(H, "H");
}
template <class T>
void check_out(MatrixView<T> out, std::int64_t rows, std::int64_t cols) {
  detail::check_host(out, "out");
  detail::check_shape(out, rows, cols, "out");
  detail::check_rows_unit_stride(out, "out");
}
}  // namespace

template <class T>
void head_log_likelihood(const Head& head, MatrixView<const T> H, MatrixView<const T> y,
                         VectorView<T> out) {
  check_H(head, H);
  check_labels(head, y, H.rows, H.cols, "y");
  detail::check_host(out, "out");
  FISHERKIT_CHECK(out.size == H.rows, "argument 'out' must have ", H.rows, " entries");
  detail::parallel_for(H.rows, H.cols * 16, [&](std::int64_t n) {
    out[n] = detail::head_log_likelihood(head.kind, T(head.sigma), H.row(n), y.row(n), H.cols);
  });
}

template <class T>
void head_mean(const Head& head, MatrixView<const T> H, MatrixView<T> out) {
  check_H(head, H);
  check_out(out, H.rows, H.cols);
  detail::parallel_for(H.rows, H.cols * 16,
                       [&](std::int64_t n) { detail::head_mean(head.kind, H.row(n), H.cols, out.row(n)); });
}

template <class T>
void head_covariance(const Head& head, MatrixView<const T> H, MatrixView<T> out) {
  check_H(head, H);
  check_out(out, H.rows, H.cols * H.cols);
  detail::parallel_for(H.rows, H.cols * H.cols * 4, [&](std::int64_t n) {
    detail::head_covariance(head.kind, T(head.sigma), H.row(n), H.cols, out.row(n));
  });
}

template <class T>
void head_sqrt_covariance(const Head& head, MatrixView<const T> H, MatrixView<T> out) {
  check_H(head, H);
  check_out(out, H.rows, H.cols * H.cols);
  detail::parallel_for(H.rows, H.cols * H.cols * 4, [&](std::int64_t n) {
    detail::head_sqrt_covariance(head.kind, T(head.sigma), H.row(n), H.cols, out.row(n));
  });
}

template <class T>
void head_sample(const Head& head, MatrixView<const T> H, std::uint64_t seed, std::int64_t S,
                 MatrixView<T> out, std::int64_t index_offset) {
  check_H(head, H);
  FISHERKIT_CHECK(S >= 1, "argument 'samples' must be >= 1, got ", S);
  check_out(out, H.rows * S, detail::head_label_cols(head.kind, H.cols));
  detail::parallel_for(H.rows * S, H.cols * 32, [&](std::int64_t r) {
    const std::int64_t n = r / S, s = r % S;
    detail::Philox4x32 rng(seed, static_cast<std::uint64_t>(index_offset + n),
                           static_cast<std::uint32_t>(s), 0);
    detail::head_sample(head.kind, T(head.sigma), H.row(n), H.cols, rng, out.row(r));
  });
}

#define FISHERKIT_INSTANTIATE_HEADS(T)                                                        \
  template void check_label_layout<T>(const Head&, MatrixView<const T>, std::int64_t,          \
                                      std::int64_t, const char*);                              \
  template void check_labels<T>(const Head&, MatrixView<const T>, std::int64_t, std::int64_t,  \
                                const char*);                                                 \
  template void head_log_likelihood<T>(const Head&, MatrixView<const T>, MatrixView<const T>,  \
                                       VectorView<T>);                                        \
  template void head_mean<T>(const Head&, MatrixView<const T>, MatrixView<T>);                 \
  template void head_covariance<T>(const Head&, MatrixView<const T>, MatrixView<T>);           \
  template void head_sqrt_covariance<T>(const Head&, MatrixView<const T>, MatrixView<T>);      \
  template void head_sample<T>(const Head&, MatrixView<const T>, std::uint64_t, std::int64_t,  \
                               MatrixView<T>, std::int64_t);

FISHERKIT_INSTANTIATE_HEADS(float)
FISHERKIT_INSTANTIATE_HEADS(double)

}  // namespace fisherkit
