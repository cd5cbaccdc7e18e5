// Batched diagonal-plus-rank-2 solve and inverse on the CPU (see dpr2.hpp and
// detail/dpr2.hpp for the maths). One block per loop iteration, OpenMP over blocks.
#include "fisherkit/dpr2.hpp"

#include "passes/table.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>

#include "fisherkit/detail/dpr2.hpp"
#include "parallel.hpp"

namespace fisherkit {

namespace {

using detail::Dpr2Gram;
using detail::Dpr2Small;

constexpr std::int64_t kChunk = 8;  // right-hand sides handled per sweep when k > 1

/// Lowest failing block and its status, shared by the OpenMP workers.
struct FirstFailure {
  std::atomic<std::int64_t> block{std::numeric_limits<std::int64_t>::max()};
  std::atomic<int> status{detail::dpr2_ok};
  void report(std::int64_t b, int st) {
    std::int64_t cur = block.load();
    while (b < cur) {
      if (block.compare_exchange_weak(cur, b)) {
        status.store(st);
        return;
      }
    }
  }
};

template <class T>
void check_common(MatrixView<const T> d, MatrixView<const T> U, MatrixView<const T> S,
                  double damping) {
  detail::check_host(d, "d");
  detail::check_host(U, "U");
  detail::check_host(S, "S");
  FISHERKIT_CHECK(d.cols >= 1, "argument 'd' must have at least one column (block size n >= 1)");
  detail::check_rows_unit_stride(d, "d");
  detail::check_shape(U, d.rows, 2 * d.cols, "U");
  detail::check_rows_unit_stride(U, "U");
  detail::check_shape(S, d.rows, 4, "S");
  FISHERKIT_CHECK(std::isfinite(damping) && damping >= 0.0,
                  "argument 'damping' must be a finite number >= 0, got ", damping);
}

/// Pass 1 over a block: K = U^T D^-1 U and, for k == 1, t = U^T D^-1 r. Returns false when a
/// damped diagonal entry is not finite and positive.
template <class T>
bool gram_pass(const T* d, const T* U, const T* r, std::int64_t n, double eps, Dpr2Gram& g,
               double& t0, double& t1) {
  double k00 = 0, k01 = 0, k11 = 0, s0 = 0, s1 = 0;
  int bad = 0;
  if (r != nullptr) {
#pragma omp simd reduction(+ : k00, k01, k11, s0, s1) reduction(| : bad)
    for (std::int64_t j = 0; j < n; ++j) {
      const double dj = static_cast<double>(d[j]) + eps;
      bad |= !detail::dpr2_diag_ok(dj);
      const double u0 = U[2 * j], u1 = U[2 * j + 1];
      const double inv = 1.0 / dj;  // one division per element, not two
      const double a = u0 * inv, b = u1 * inv;
      k00 += a * u0;
      k01 += a * u1;
      k11 += b * u1;
      const double rj = r[j];
      s0 += a * rj;
      s1 += b * rj;
    }
  } else {
#pragma omp simd reduction(+ : k00, k01, k11) reduction(| : bad)
    for (std::int64_t j = 0; j < n; ++j) {
      const double dj = static_cast<double>(d[j]) + eps;
      bad |= !detail::dpr2_diag_ok(dj);
      const double u0 = U[2 * j], u1 = U[2 * j + 1];
      const double inv = 1.0 / dj;  // one division per element, not two
      const double a = u0 * inv, b = u1 * inv;
      k00 += a * u0;
      k01 += a * u1;
      k11 += b * u1;
    }
  }
  g.k00 = k00;
  g.k01 = k01;
  g.k11 = k11;
  t0 = s0;
  t1 = s1;
  return bad == 0;
}

template <class T>
int setup_block(MatrixView<const T> S, std::int64_t b, const Dpr2Gram& g, Dpr2Small& m) {
  return detail::dpr2_small_setup(m, S(b, 0), S(b, 1), S(b, 2), S(b, 3), g);
}

inline bool finite2(double a, double b) { return std::isfinite(a) && std::isfinite(b); }

/// Solve one block; returns its Dpr2Status.
template <class T>
int solve_block(const T* d, const T* U, MatrixView<const T> S, std::int64_t b, const T* r,
                std::int64_t n, std::int64_t k, double eps, T* x) {
  Dpr2Gram g;
  Dpr2Small m;
  if (k == 1) {
    double t0, t1;
    if (!gram_pass(d, U, r, n, eps, g, t0, t1)) return detail::dpr2_bad_diagonal;
    const int st = setup_block(S, b, g, m);
    if (st != detail::dpr2_ok) return st;
    double y0, y1;
    detail::dpr2_small_solve(m, t0, t1, y0, y1);
    if (!finite2(y0, y1)) return detail::dpr2_non_finite;
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j)
      x[j] = detail::dpr2_apply<T>(r[j], U[2 * j], U[2 * j + 1], static_cast<double>(d[j]) + eps,
                                   y0, y1);
    return detail::dpr2_ok;
  }
  double t0, t1;
  if (!gram_pass<T>(d, U, nullptr, n, eps, g, t0, t1)) return detail::dpr2_bad_diagonal;
  const int st = setup_block(S, b, g, m);
  if (st != detail::dpr2_ok) return st;
  double s0[kChunk], s1[kChunk], y0[kChunk], y1[kChunk];
  for (std::int64_t c0 = 0; c0 < k; c0 += kChunk) {
    const std::int64_t kc = std::min(kChunk, k - c0);
    std::fill(s0, s0 + kChunk, 0.0);
    std::fill(s1, s1 + kChunk, 0.0);
    for (std::int64_t j = 0; j < n; ++j) {
      const double dj = static_cast<double>(d[j]) + eps;
      const double a = U[2 * j] / dj, bb = U[2 * j + 1] / dj;
      const T* rj = r + j * k + c0;
      for (std::int64_t c = 0; c < kc; ++c) {
        s0[c] += a * rj[c];
        s1[c] += bb * rj[c];
      }
    }
    for (std::int64_t c = 0; c < kc; ++c) {
      detail::dpr2_small_solve(m, s0[c], s1[c], y0[c], y1[c]);
      if (!finite2(y0[c], y1[c])) return detail::dpr2_non_finite;
    }
    for (std::int64_t j = 0; j < n; ++j) {
      const double dj = static_cast<double>(d[j]) + eps;
      const T* rj = r + j * k + c0;
      T* xj = x + j * k + c0;
      for (std::int64_t c = 0; c < kc; ++c)
        xj[c] = detail::dpr2_apply<T>(rj[c], U[2 * j], U[2 * j + 1], dj, y0[c], y1[c]);
    }
  }
  return detail::dpr2_ok;
}

/// Turn the first failing block into an Error naming the argument, block and entry.
template <class T>
[[noreturn]] void raise_failure(MatrixView<const T> d, MatrixView<const T> U,
                                MatrixView<const T> S, const MatrixView<const T>* rhs,
                                double eps, std::int64_t b, int status) {
  const std::int64_t n = d.cols;
  if (status == detail::dpr2_bad_diagonal) {
    for (std::int64_t j = 0; j < n; ++j) {
      const double dj = static_cast<double>(d(b, j)) + eps;
      if (!detail::dpr2_diag_ok(dj)) {
        if (!std::isfinite(static_cast<double>(d(b, j))))
          detail::fail("argument 'd' contains NaN or Inf (block ", b, ", entry ", j, ")");
        detail::fail("argument 'd' must be positive (after adding damping=", eps,
                     "): block ", b, ", entry ", j, " is ", static_cast<double>(d(b, j)));
      }
    }
  }
  for (std::int64_t j = 0; j < 2 * n; ++j)
    FISHERKIT_CHECK(std::isfinite(static_cast<double>(U(b, j))),
                    "argument 'U' contains NaN or Inf (block ", b, ", entry [", j / 2, ", ",
                    j % 2, "])");
  for (std::int64_t j = 0; j < 4; ++j)
    FISHERKIT_CHECK(std::isfinite(static_cast<double>(S(b, j))),
                    "argument 'S' contains NaN or Inf (block ", b, ")");
  if (rhs != nullptr)
    for (std::int64_t j = 0; j < rhs->cols; ++j)
      FISHERKIT_CHECK(std::isfinite(static_cast<double>((*rhs)(b, j))),
                      "argument 'rhs' contains NaN or Inf (block ", b, ", flat entry ", j, ")");
  if (status == detail::dpr2_singular)
    detail::fail("block ", b, " is singular to working precision: diag(d + damping) + U S U^T "
                 "has no inverse (I + S U^T D^-1 U is singular); add damping or check S");
  detail::fail("the 2 x 2 reductions of block ", b,
               " overflowed (entries of 'U', 'S' or 'rhs' too large for the solve)");
}

}  // namespace

template <class T>
void dpr2_solve_cpu(MatrixView<const T> d, MatrixView<const T> U, MatrixView<const T> S, MatrixView<const T> rhs,
                    std::int64_t k, double damping, MatrixView<T> out, VectorView<int> status, Stream) {
  check_common(d, U, S, damping);
  detail::check_host(rhs, "rhs");
  detail::check_host(out, "out");
  FISHERKIT_CHECK(k >= 1, "argument 'k' (right-hand sides per block) must be >= 1, got ", k);
  const std::int64_t B = d.rows, n = d.cols;
  detail::check_shape(rhs, B, n * k, "rhs");
  detail::check_rows_unit_stride(rhs, "rhs");
  detail::check_shape(out, B, n * k, "out");
  detail::check_rows_unit_stride(out, "out");
  const bool report = status.size > 0;
  if (report) {
    detail::check_host(status, "status");
    FISHERKIT_CHECK(status.size == B, "argument 'status' must have ", B, " entries or none, got ", status.size);
  }
  FirstFailure fail;
  detail::parallel_for(B, 6 * n * k, [&](std::int64_t b) {
    const int st = solve_block<T>(d.row(b), U.row(b), S, b, rhs.row(b), n, k, damping, out.row(b));
    if (report) {
      // with a status array (as on the GPU) a failed block is reported there and filled with NaN
      status[b] = st;
      if (st != detail::dpr2_ok)
        for (std::int64_t j = 0; j < n * k; ++j) out.row(b)[j] = std::numeric_limits<T>::quiet_NaN();
    } else if (st != detail::dpr2_ok) {
      fail.report(b, st);
    }
  });
  const std::int64_t bad = fail.block.load();
  if (bad < B) raise_failure(d, U, S, &rhs, damping, bad, fail.status.load());
}

template <class T>
void dpr2_inverse(MatrixView<const T> d, MatrixView<const T> U, MatrixView<const T> S,
                  double damping, MatrixView<T> out) {
  check_common(d, U, S, damping);
  detail::check_host(out, "out");
  const std::int64_t B = d.rows, n = d.cols;
  detail::check_shape(out, B, n * n, "out");
  detail::check_rows_unit_stride(out, "out");
  FirstFailure fail;
  detail::parallel_for(B, 4 * n * n, [&](std::int64_t b) {
    const T* db = d.row(b);
    const T* ub = U.row(b);
    Dpr2Gram g;
    Dpr2Small m;
    double t0, t1;
    if (!gram_pass<T>(db, ub, nullptr, n, damping, g, t0, t1)) {
      fail.report(b, detail::dpr2_bad_diagonal);
      return;
    }
    const int st = setup_block(S, b, g, m);
    if (st != detail::dpr2_ok) {
      fail.report(b, st);
      return;
    }
    double z00, z01, z10, z11;
    detail::dpr2_small_coupling(m, z00, z01, z10, z11);
    T* o = out.row(b);
    for (std::int64_t i = 0; i < n; ++i) {
      const double di = static_cast<double>(db[i]) + damping;
      const double a0 = ub[2 * i] / di, a1 = ub[2 * i + 1] / di;
      T* oi = o + i * n;
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) {
        const double dj = static_cast<double>(db[j]) + damping;
        oi[j] = static_cast<T>(detail::dpr2_inverse_entry(false, 0.0, a0, a1, ub[2 * j] / dj,
                                                          ub[2 * j + 1] / dj, z00, z01, z10, z11));
      }
      oi[i] = static_cast<T>(static_cast<double>(oi[i]) + 1.0 / di);
    }
  });
  const std::int64_t bad = fail.block.load();
  if (bad < B) raise_failure<T>(d, U, S, nullptr, damping, bad, fail.status.load());
}

#define FISHERKIT_INSTANTIATE_DPR2(T)                                                          \
  template void dpr2_solve_cpu<T>(MatrixView<const T>, MatrixView<const T>, MatrixView<const T>, \
                                  MatrixView<const T>, std::int64_t, double, MatrixView<T>,      \
                                  VectorView<int>, Stream);                                      \
  template void dpr2_inverse<T>(MatrixView<const T>, MatrixView<const T>, MatrixView<const T>, \
                                double, MatrixView<T>);
FISHERKIT_INSTANTIATE_DPR2(float)
FISHERKIT_INSTANTIATE_DPR2(double)

}  // namespace fisherkit

