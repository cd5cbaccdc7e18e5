// Row kernels of the O(n) unit-wise natural gradient (see natgrad.hpp).
#include "fisherkit/natgrad.hpp"

#include <cstdint>

#include "fisherkit/error.hpp"
#include "parallel.hpp"

namespace fisherkit {

namespace {

template <class T>
void check_rows(MatrixView<const T> A, const char* a, MatrixView<const T> B, const char* b) {
  FISHERKIT_CHECK(A.device == Device::host && B.device == Device::host,
                  "unit row kernels run on host arrays");
  FISHERKIT_CHECK(A.rows == B.rows && A.cols == B.cols, "argument '", b, "' has shape (", B.rows,
                  ", ", B.cols, ") but '", a, "' has (", A.rows, ", ", A.cols, ")");
  FISHERKIT_CHECK(A.col_stride == 1 || A.cols <= 1, "argument '", a, "' needs unit column stride");
  FISHERKIT_CHECK(B.col_stride == 1 || B.cols <= 1, "argument '", b, "' needs unit column stride");
}

}  // namespace

template <class T>
void unit_row_reductions(MatrixView<const T> W, MatrixView<const T> G, MatrixView<double> out) {
  check_rows(W, "W", G, "G");
  FISHERKIT_CHECK(out.rows == W.rows && out.cols == 4, "argument 'out' must have shape (", W.rows,
                  ", 4), got (", out.rows, ", ", out.cols, ")");
  const std::int64_t n = W.cols;
  detail::parallel_for(W.rows, 6 * n, [&](std::int64_t i) {
    const T* w = W.row(i);
    const T* g = G.row(i);
    double ww = 0, sw = 0, wg = 0, sg = 0;
#pragma omp simd reduction(+ : ww, sw, wg, sg)
    for (std::int64_t j = 0; j < n; ++j) {
      const double a = w[j], c = g[j];
      ww += a * a;
      sw += a;
      wg += a * c;
      sg += c;
    }
    out(i, 0) = ww;
    out(i, 1) = sw;
    out(i, 2) = wg;
    out(i, 3) = sg;
  });
}

template <class T>
void unit_row_combine(MatrixView<const T> G, MatrixView<const T> W, MatrixView<const double> coef,
                      MatrixView<T> out) {
  check_rows(G, "G", W, "W");
  FISHERKIT_CHECK(out.rows == G.rows && out.cols == G.cols && (out.col_stride == 1 || out.cols <= 1),
                  "argument 'out' must have shape (", G.rows, ", ", G.cols,
                  ") with unit column stride");
  FISHERKIT_CHECK(coef.rows == G.rows && coef.cols == 3, "argument 'coef' must have shape (", G.rows,
                  ", 3), got (", coef.rows, ", ", coef.cols, ")");
  const std::int64_t n = G.cols;
  detail::parallel_for(G.rows, 4 * n, [&](std::int64_t i) {
    const T a = static_cast<T>(coef(i, 0)), b = static_cast<T>(coef(i, 1)),
            c = static_cast<T>(coef(i, 2));
    const T* g = G.row(i);
    const T* w = W.row(i);
    T* o = out.row(i);
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) o[j] = a * g[j] + b * w[j] + c;
  });
}

template void unit_row_reductions<float>(MatrixView<const float>, MatrixView<const float>,
                                         MatrixView<double>);
template void unit_row_reductions<double>(MatrixView<const double>, MatrixView<const double>,
                                          MatrixView<double>);
template void unit_row_combine<float>(MatrixView<const float>, MatrixView<const float>,
                                      MatrixView<const double>, MatrixView<float>);
template void unit_row_combine<double>(MatrixView<const double>, MatrixView<const double>,
                                       MatrixView<const double>, MatrixView<double>);

}  // namespace fisherkit
