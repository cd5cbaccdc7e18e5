// Sherman-Morrison rank-1 and sample-space rank-B damped Fisher solves (rank1.hpp).
#include "fisherkit/rank1.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "linalg_blas.hpp"
#include "parallel.hpp"

namespace fisherkit {

namespace {

void check_damping(double damping) {
  FISHERKIT_CHECK(std::isfinite(damping) && damping > 0.0,
                  "argument 'damping' must be a finite number > 0 (lambda I makes the rank-",
                  "deficient Fisher invertible), got ", damping);
}

template <class T>
void check_finite_rows(MatrixView<const T> m, const char* name) {
  for (std::int64_t i = 0; i < m.rows; ++i) {
    const T* r = m.row(i);
    for (std::int64_t j = 0; j < m.cols; ++j)
      FISHERKIT_CHECK(std::isfinite(static_cast<double>(r[j])), "argument '", name,
                      "' contains NaN or Inf (first at [", i, ", ", j, "])");
  }
}

/// (psi . g, psi . psi) accumulated in double over [0, n).
template <class T>
void dots(const T* psi, const T* g, std::int64_t n, double& pg, double& pp) {
  double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
  for (std::int64_t j = 0; j < n; ++j) {
    const double p = psi[j];
    a += p * static_cast<double>(g[j]);
    b += p * p;
  }
  pg = a;
  pp = b;
}

template <class T>
void axpy_scaled(const T* psi, const T* g, std::int64_t n, double coef, double inv_lambda, T* out) {
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j)
    out[j] = static_cast<T>((static_cast<double>(g[j]) - coef * static_cast<double>(psi[j])) *
                            inv_lambda);
}

/// BLAS leading dimension of a row-major view: a single row may carry any row stride
/// (NumPy gives length-1 axes stride 0), which BLAS rejects.
template <class V>
std::int64_t lead(const V& m) {
  return m.rows <= 1 ? std::max<std::int64_t>(m.cols, 1) : m.row_stride;
}

constexpr std::int64_t kSplit = 1 << 16;  // elements per parallel piece of one long vector

}  // namespace

template <class T>
void rank1_solve(MatrixView<const T> psi, MatrixView<const T> g, double damping,
                 MatrixView<T> out) {
  detail::check_host(psi, "psi");
  detail::check_host(g, "g");
  detail::check_host(out, "out");
  check_damping(damping);
  const std::int64_t m = g.rows, p = g.cols;
  FISHERKIT_CHECK(psi.cols == p, "argument 'psi' must have ", p,
                  " columns (the length of g), got ", psi.cols);
  FISHERKIT_CHECK(psi.rows == m || psi.rows == 1, "argument 'psi' must have 1 or ", m,
                  " rows (one score per gradient), got ", psi.rows);
  detail::check_rows_unit_stride(psi, "psi");
  detail::check_rows_unit_stride(g, "g");
  detail::check_shape(out, m, p, "out");
  detail::check_rows_unit_stride(out, "out");
  const double inv_lambda = 1.0 / damping;
  auto psi_row = [&](std::int64_t i) { return psi.rows == 1 ? psi.row(0) : psi.row(i); };
  std::vector<double> coef(static_cast<size_t>(m));
  if (m == 1 && p > 2 * kSplit) {
    // One long vector: split the dot products over threads, summing the pieces in order.
    const std::int64_t pieces = (p + kSplit - 1) / kSplit;
    std::vector<double> pg(pieces), pp(pieces);
    detail::parallel_for(pieces, kSplit, [&](std::int64_t c) {
      const std::int64_t b = c * kSplit, e = std::min(p, b + kSplit);
      dots(psi.row(0) + b, g.row(0) + b, e - b, pg[c], pp[c]);
    });
    double a = 0, s = 0;
    for (std::int64_t c = 0; c < pieces; ++c) a += pg[c], s += pp[c];
    coef[0] = a / (damping + s);
  } else {
    detail::parallel_for(m, 2 * p, [&](std::int64_t i) {
      double a, s;
      dots(psi_row(i), g.row(i), p, a, s);
      coef[i] = a / (damping + s);
    });
  }
  for (std::int64_t i = 0; i < m; ++i)
    if (!std::isfinite(coef[i])) {
      check_finite_rows(psi, "psi");
      check_finite_rows(g, "g");
      detail::fail("the dot products of row ", i, " overflowed (entries of 'psi' or 'g' too large)");
    }
  if (m == 1 && p > 2 * kSplit) {
    const std::int64_t pieces = (p + kSplit - 1) / kSplit;
    detail::parallel_for(pieces, kSplit, [&](std::int64_t c) {
      const std::int64_t b = c * kSplit, e = std::min(p, b + kSplit);
      axpy_scaled(psi.row(0) + b, g.row(0) + b, e - b, coef[0], inv_lambda, out.row(0) + b);
    });
  } else {
    detail::parallel_for(m, 2 * p, [&](std::int64_t i) {
      axpy_scaled(psi_row(i), g.row(i), p, coef[i], inv_lambda, out.row(i));
    });
  }
}

template <class T>
void rankb_solve(MatrixView<const T> Psi, MatrixView<const T> g, double damping,
                 MatrixView<T> out) {
  detail::check_host(Psi, "Psi");
  detail::check_host(g, "g");
  detail::check_host(out, "out");
  check_damping(damping);
  const std::int64_t B = Psi.rows, p = Psi.cols, m = g.rows;
  FISHERKIT_CHECK(B >= 1, "argument 'Psi' must have at least one row (one score per sample)");
  FISHERKIT_CHECK(g.cols == p, "argument 'g' must have ", p,
                  " columns (the columns of Psi), got ", g.cols);
  detail::check_rows_unit_stride(Psi, "Psi");
  detail::check_rows_unit_stride(g, "g");
  detail::check_shape(out, m, p, "out");
  detail::check_rows_unit_stride(out, "out");
  FISHERKIT_CHECK(out.data != g.data && out.data != Psi.data,
                  "argument 'out' must not share memory with 'g' or 'Psi'");
  if (m == 0) return;
  check_finite_rows(Psi, "Psi");
  check_finite_rows(g, "g");

  // Gram Psi Psi^T (upper triangle, BLAS in T), then A = lambda I + Gram / B in double.
  std::vector<T> gram(static_cast<size_t>(B * B), T(0));
  blas::syrk_cols(B, p, T(1), Psi.data, lead(Psi), T(0), gram.data(), B);
  std::vector<double> A(static_cast<size_t>(B * B), 0.0);
  for (std::int64_t i = 0; i < B; ++i)
    for (std::int64_t j = i; j < B; ++j) {
      A[i * B + j] = static_cast<double>(gram[i * B + j]) / static_cast<double>(B) +
                     (i == j ? damping : 0.0);
      FISHERKIT_CHECK(std::isfinite(static_cast<double>(gram[i * B + j])),
                      "the Gram matrix Psi Psi^T overflowed (entries of 'Psi' too large for ",
                      sizeof(T) == 4 ? "float32" : "float64", ")");
    }
  const int info = blas::potrf_upper(B, A.data(), B);
  FISHERKIT_CHECK(info == 0, "the sample-space system damping*I + Psi Psi^T / B is not positive "
                  "definite to working precision (leading minor ", info, "); increase 'damping'");

  // V = g Psi^T (m x B, BLAS in T); Y^T = A^-1 V^T solved in double.
  std::vector<T> v(static_cast<size_t>(m * B));
  blas::gemm(false, true, m, B, p, T(1), g.data, lead(g), Psi.data, lead(Psi), T(0),
             v.data(), B);
  std::vector<double> rhs(static_cast<size_t>(B * m));
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t b = 0; b < B; ++b) rhs[b * m + i] = static_cast<double>(v[i * B + b]);
  blas::potrs_upper(B, m, A.data(), B, rhs.data(), m);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t b = 0; b < B; ++b) v[i * B + b] = static_cast<T>(rhs[b * m + i]);

  // out = g / lambda - Y Psi / (B lambda).
  const double inv_lambda = 1.0 / damping;
  for (std::int64_t i = 0; i < m; ++i) {
    const T* gi = g.row(i);
    T* oi = out.row(i);
    for (std::int64_t j = 0; j < p; ++j) oi[j] = static_cast<T>(gi[j] * inv_lambda);
  }
  blas::gemm(false, false, m, p, B, static_cast<T>(-inv_lambda / static_cast<double>(B)),
             v.data(), B, Psi.data, lead(Psi), T(1), out.data, lead(out));
}

#define FISHERKIT_INSTANTIATE_RANK1(T)                                                        \
  template void rank1_solve<T>(MatrixView<const T>, MatrixView<const T>, double, MatrixView<T>); \
  template void rankb_solve<T>(MatrixView<const T>, MatrixView<const T>, double, MatrixView<T>);
FISHERKIT_INSTANTIATE_RANK1(float)
FISHERKIT_INSTANTIATE_RANK1(double)

}  // namespace fisherkit
