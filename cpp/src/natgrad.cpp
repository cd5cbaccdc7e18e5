// The per-unit solvers of the unit-wise natural gradients (natgrad.hpp), on the host in
// float64: batched Cholesky, the sample-space solve, the closed-form mean-field solve (the
// push-through element maths of detail/dpr2.hpp) and the quasi-diagonal update.
#include "fisherkit/natgrad.hpp"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fisherkit/detail/dpr2.hpp"
#include "linalg_blas.hpp"
#include "parallel.hpp"

namespace fisherkit {

namespace {

void check_damping(double damping, bool strict) {
  FISHERKIT_CHECK(std::isfinite(damping) && (strict ? damping > 0.0 : damping >= 0.0), "argument 'damping' must be ",
                  "a finite number ", strict ? "> 0" : ">= 0", ", got ", damping);
}

template <class V>
void check_dense(const V& m, std::int64_t rows, std::int64_t cols, const char* name) {
  detail::check_host(m, name);
  detail::check_shape(m, rows, cols, name);
  FISHERKIT_CHECK(m.rows <= 1 || m.row_stride == cols, "argument '", name, "' must be contiguous");
  FISHERKIT_CHECK(m.cols <= 1 || m.col_stride == 1, "argument '", name, "' must be contiguous");
}

template <class V>
void check_vec(const V& v, std::int64_t n, const char* name) {
  detail::check_host(v, name);
  FISHERKIT_CHECK(v.size == n, "argument '", name, "' must have ", n, " entries, got ", v.size);
}

/// The lowest index some worker reported (OpenMP workers report failures here).
struct FirstBad {
  std::atomic<std::int64_t> at{std::numeric_limits<std::int64_t>::max()};
  void report(std::int64_t i) {
    std::int64_t cur = at.load();
    while (i < cur && !at.compare_exchange_weak(cur, i)) {
    }
  }
  bool any() const { return at.load() != std::numeric_limits<std::int64_t>::max(); }
};

}  // namespace

void unit_block_solve(MatrixView<const double> blocks, MatrixView<const double> rhs, double damping,
                      MatrixView<double> out, std::int64_t nrhs, VectorView<int> status) {
  check_damping(damping, false);
  FISHERKIT_CHECK(nrhs >= 1, "argument 'nrhs' must be >= 1, got ", nrhs);
  const std::int64_t B = blocks.rows;
  const std::int64_t k = static_cast<std::int64_t>(std::llround(std::sqrt(double(blocks.cols))));
  FISHERKIT_CHECK(k * k == blocks.cols && k >= 1, "argument 'blocks' must have k*k columns, got ", blocks.cols);
  check_dense(blocks, B, k * k, "blocks");
  check_dense(rhs, B, k * nrhs, "rhs");
  check_dense(out, B, k * nrhs, "out");
  const bool report = status.size > 0;
  if (report) check_vec(status, B, "status");
  FirstBad bad;
  detail::parallel_for(B, k * k * k, [&](std::int64_t b) {
    std::vector<double> A(blocks.row(b), blocks.row(b) + k * k);
    for (std::int64_t i = 0; i < k; ++i) A[static_cast<size_t>(i * k + i)] += damping;
    double* x = out.row(b);
    const double* r = rhs.row(b);
    for (std::int64_t i = 0; i < k * nrhs; ++i) x[i] = r[i];
    const int info = blas::potrf_upper(k, A.data(), k);
    if (report) status[b] = info;
    if (info == 0 && blas::potrs_upper(k, nrhs, A.data(), k, x, nrhs) == 0) return;
    if (!report) bad.report(b);
  });
  FISHERKIT_CHECK(!bad.any(), "block ", bad.at.load(), " (+ damping I) is not positive definite; pass damping > 0");
}

void unit_sample_space_solve(MatrixView<const double> xt, MatrixView<const double> g2, MatrixView<const double> rhs,
                             double damping, MatrixView<double> out) {
  check_damping(damping, true);
  const std::int64_t N = xt.rows, k = xt.cols, m = g2.cols;
  FISHERKIT_CHECK(N >= 1 && k >= 1, "argument 'xt' must not be empty");
  check_dense(xt, N, k, "xt");
  check_dense(g2, N, m, "g2");
  check_dense(rhs, m, k, "rhs");
  check_dense(out, m, k, "out");
  for (std::int64_t i = 0; i < N * m; ++i)
    FISHERKIT_CHECK(g2.data[i] >= 0.0 && std::isfinite(g2.data[i]), "argument 'g2' must hold finite weights >= 0");
  // the Gram of the inputs, shared by every unit, and xt r_i for all units at once
  std::vector<double> gram(static_cast<size_t>(N * N)), xr(static_cast<size_t>(m * N)), y(static_cast<size_t>(m * N));
  blas::syrk_cols(N, k, 1.0, xt.data, k, 0.0, gram.data(), N);
  blas::gemm(false, true, m, N, k, 1.0, rhs.data, k, xt.data, k, 0.0, xr.data(), N);
  const double invN = 1.0 / double(N);
  FirstBad bad;
  detail::parallel_for(m, N * N * N, [&](std::int64_t i) {
    std::vector<double> M(static_cast<size_t>(N * N)), sw(static_cast<size_t>(N));
    for (std::int64_t s = 0; s < N; ++s) sw[static_cast<size_t>(s)] = std::sqrt(g2(s, i) * invN);
    for (std::int64_t a = 0; a < N; ++a)
      for (std::int64_t c = a; c < N; ++c)
        M[static_cast<size_t>(a * N + c)] = sw[static_cast<size_t>(a)] * gram[static_cast<size_t>(a * N + c)] *
                                            sw[static_cast<size_t>(c)] + (a == c ? damping : 0.0);
    double* yi = y.data() + i * N;
    for (std::int64_t s = 0; s < N; ++s) yi[s] = sw[static_cast<size_t>(s)] * xr[static_cast<size_t>(i * N + s)];
    if (blas::potrf_upper(N, M.data(), N) != 0 || blas::potrs_upper(N, 1, M.data(), N, yi, 1) != 0) {
      bad.report(i);
      return;
    }
    for (std::int64_t s = 0; s < N; ++s) yi[s] *= sw[static_cast<size_t>(s)];
  });
  FISHERKIT_CHECK(!bad.any(), "unit ", bad.at.load(), ": the sample-space system is not positive definite");
  // x_i = (r_i - xt^T (sw o y_i)) / damping, all units by one GEMM
  for (std::int64_t i = 0; i < m * k; ++i) out.data[i] = rhs.data[i];
  blas::gemm(false, false, m, k, N, -1.0, y.data(), N, xt.data, k, 1.0, out.data, k);
  const double inv = 1.0 / damping;
  for (std::int64_t i = 0; i < m * k; ++i) out.data[i] *= inv;
}

void dpr2_rows_solve(VectorView<const double> a, MatrixView<const double> W, MatrixView<const double> S,
                     MatrixView<const double> q, MatrixView<const double> rhs, MatrixView<double> out,
                     MatrixView<double> ux) {
  const std::int64_t B = W.rows, n = W.cols;
  check_vec(a, B, "a");
  detail::check_host(W, "W");
  FISHERKIT_CHECK(W.cols <= 1 || W.col_stride == 1, "argument 'W' must have unit column stride");
  check_dense(S, B, 4, "S");
  check_dense(q, B, 2, "q");
  detail::check_host(rhs, "rhs");
  detail::check_shape(rhs, B, n, "rhs");
  FISHERKIT_CHECK(rhs.cols <= 1 || rhs.col_stride == 1, "argument 'rhs' must have unit column stride");
  detail::check_host(out, "out");
  detail::check_shape(out, B, n, "out");
  FISHERKIT_CHECK(out.cols <= 1 || out.col_stride == 1, "argument 'out' must have unit column stride");
  check_dense(ux, B, 2, "ux");
  FirstBad bad;
  std::vector<int> status(static_cast<size_t>(B), detail::dpr2_ok);
  detail::parallel_for(B, 8 * n, [&](std::int64_t b) {
    const double ab = a[b];
    if (!detail::dpr2_diag_ok(ab)) {
      status[static_cast<size_t>(b)] = detail::dpr2_bad_diagonal;
      bad.report(b);
      return;
    }
    const double* w = W.row(b);
    const double* r = rhs.row(b);
    double sw = 0, ww = 0, sr = 0, wr = 0;
#pragma omp simd reduction(+ : sw, ww, sr, wr)
    for (std::int64_t j = 0; j < n; ++j) {
      sw += w[j];
      ww += w[j] * w[j];
      sr += r[j];
      wr += w[j] * r[j];
    }
    // K = U^T D^-1 U and t = U^T D^-1 (r - U q) with U = [1, w], D = a I
    const double inv = 1.0 / ab, q0 = q(b, 0), q1 = q(b, 1);
    detail::Dpr2Gram g;
    g.k00 = double(n) * inv;
    g.k01 = sw * inv;
    g.k11 = ww * inv;
    const double t0 = (sr - q0 * double(n) - q1 * sw) * inv, t1 = (wr - q0 * sw - q1 * ww) * inv;
    detail::Dpr2Small sm;
    const int st = detail::dpr2_small_setup(sm, S(b, 0), S(b, 1), S(b, 2), S(b, 3), g);
    if (st != detail::dpr2_ok) {
      status[static_cast<size_t>(b)] = st;
      bad.report(b);
      return;
    }
    double y0, y1;
    detail::dpr2_small_solve(sm, t0, t1, y0, y1);
    // x = (r - (q0 + y0) 1 - (q1 + y1) w) / a
    const double c0 = q0 + y0, c1 = q1 + y1;
    double* x = out.row(b);
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) x[j] = (r[j] - c0 - c1 * w[j]) * inv;
    ux(b, 0) = (sr - c0 * double(n) - c1 * sw) * inv;
    ux(b, 1) = (wr - c0 * sw - c1 * ww) * inv;
  });
  if (!bad.any()) return;
  const std::int64_t b = bad.at.load();
  const int st = status[static_cast<size_t>(b)];
  FISHERKIT_CHECK(st != detail::dpr2_bad_diagonal, "unit ", b, ": the diagonal a = ", a[b],
                  " of its block is not a finite positive number (a dead unit or constant inputs); pass damping > 0");
  FISHERKIT_CHECK(st != detail::dpr2_singular, "unit ", b, ": its block is singular to working precision; pass "
                  "damping > 0");
  detail::fail("unit ", b, ": the reductions overflowed (entries of 'W', 'S' or 'rhs' too large)");
}

void quasi_diagonal_solve(VectorView<const double> m00, MatrixView<const double> m0i, MatrixView<const double> mii,
                          MatrixView<const double> gW, VectorView<const double> gb, double damping,
                          MatrixView<double> dW, VectorView<double> db) {
  check_damping(damping, false);
  const std::int64_t m = gW.rows, n = gW.cols;
  const bool diag = m0i.data == nullptr;
  check_vec(m00, m, "m00");
  check_vec(gb, m, "gb");
  check_vec(db, m, "db");
  if (!diag) check_dense(m0i, m, n, "m0i");
  check_dense(mii, m, n, "mii");
  check_dense(gW, m, n, "gW");
  check_dense(dW, m, n, "dW");
  FirstBad zero, singular;
  detail::parallel_for(m, 8 * n, [&](std::int64_t i) {
    const double M00 = m00[i] + damping;
    const double* Mii = mii.row(i);
    const double* g = gW.row(i);
    double* d = dW.row(i);
    bool ok = M00 > 0.0;
    for (std::int64_t j = 0; j < n; ++j) ok = ok && Mii[j] + damping > 0.0;
    if (!ok) {
      zero.report(i);
      return;
    }
    if (diag) {
      for (std::int64_t j = 0; j < n; ++j) d[j] = g[j] / (Mii[j] + damping);
      db[i] = gb[i] / M00;
      return;
    }
    const double* M0 = m0i.row(i);
    double corr = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      const double den = (Mii[j] + damping) * M00 - M0[j] * M0[j];
      if (!(den > 0.0)) {
        singular.report(i);
        return;
      }
      d[j] = (g[j] * M00 - gb[i] * M0[j]) / den;
      corr += M0[j] * d[j];
    }
    db[i] = gb[i] / M00 - corr / M00;
  });
  FISHERKIT_CHECK(!zero.any(), "unit ", zero.at.load(), ": a metric statistic is zero (dead unit or input); pass "
                  "damping > 0");
  FISHERKIT_CHECK(!singular.any(), "unit ", singular.at.load(), ": a quasi-diagonal 2x2 system is singular; pass "
                  "damping > 0");
}

}  // namespace fisherkit
