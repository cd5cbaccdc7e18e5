// Head checks: sigma, output count, label layout and values (heads.hpp). The passes over
// rows of H are passes/heads.hpp.
#include "fisherkit/heads.hpp"

#include <cmath>
#include <string>


namespace fisherkit {

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

#define FISHERKIT_INSTANTIATE_HEADS(T)                                                        \
  template void check_label_layout<T>(const Head&, MatrixView<const T>, std::int64_t,          \
                                      std::int64_t, const char*);                              \
  template void check_labels<T>(const Head&, MatrixView<const T>, std::int64_t, std::int64_t,  \
                                const char*);

FISHERKIT_INSTANTIATE_HEADS(float)
FISHERKIT_INSTANTIATE_HEADS(double)

}  // namespace fisherkit
