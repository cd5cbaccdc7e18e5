// KFAC and EKFAC written once (kfac.hpp): the Kronecker factors, the EKFAC diagonal, the
// exact distance of both from the layer blocks, and the closed-form variance of the score
// estimator's factor and diagonal. Every pass is the Fisher pass's estimator rows (forward,
// the head's pseudo-outputs, the backward pass of M rows per input: fisher.hpp) followed by
// its own per-layer sums; the variance pass uses the backward columns and head moments of
// variance.hpp. docs/maths/kfac.rst#kfac-factors
#pragma once
#include "fisherkit/kfac.hpp"
#include "natgrad.hpp"
#include "variance.hpp"

namespace fisherkit::passes {

// ------------------------------------------------------------------ the estimator's rows

/// Per-chunk state of estimator_rows (buffers kept between chunks).
template <class X, class T>
struct EstimatorRows {
  Forward<X, T> f;
  Buf<X, T> D, buf, scr, taubar;
  EstimatorRows(X& x, i64 L) : f(x, L), D(x), buf(x), scr(x), taubar(x) {}
};

/// The backward rows of the estimator for the inputs [s0, s0 + n): the forward pass, the
/// pseudo-outputs of top_rows (the draws of fisher() for the same seed and index_offset),
/// then visit(l, D_l) for l = L..1 (D_l: n*M x n_l, row s*M + m of input s0 + s; the layer's
/// inputs are r.f.act(l - 1)).
template <class X, class T, class Visit>
void estimator_rows(X& x, const Mlp<T>& mlp, const Head& head, const FisherOptions& opt, MatrixView<const T> Xm,
                    MatrixView<const T> y, i64 s0, i64 n, EstimatorRows<X, T>& r, Visit&& visit) {
  const i64 C = mlp.output_dim(), M = rows_per_sample(mlp, opt);
  const MatrixView<const T> yc = opt.estimator == Estimator::empirical ? y.rows_slice(s0, n) : y;
  forward(x, mlp, Xm.rows_slice(s0, n), r.f, true, false, s0);
  r.D.resize(n * M * C);
  r.scr.resize(n * (C * C + 2 * C));
  r.taubar.resize(n * C);
  top_rows(x, head, opt, opt.index_offset + s0, yc, r.f.h(), n, C, M, 0, r.D.data(), r.scr.data(), r.taubar.data());
  check_rows_finite(x, static_cast<const T*>(r.D.data()), n, M, C, s0, "the head's pseudo-output");
  backward(x, mlp, r.f, r.D, r.buf, M, visit);
}

/// Per-input workspace of estimator_rows, in values of T.
template <class T>
i64 estimator_rows_per_sample(const Mlp<T>& mlp, const FisherOptions& opt) {
  const i64 C = mlp.output_dim();
  return 4 * sum_widths(mlp) + 2 * rows_per_sample(mlp, opt) * max_width(mlp) + C * C + 3 * C;
}

/// The layout checks shared by the KFAC passes (before any device work).
template <class X, class T>
void check_kfac_call(const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, MatrixView<const T> y,
                     const FisherOptions& opt) {
  FISHERKIT_CHECK(opt.estimator != Estimator::hessian, "the Kronecker-factored Fisher takes the estimators "
                  "'exact', 'score' and 'empirical', not 'hessian' (its output-Hessian term has no Kronecker form)");
  check_estimator_call<X>(mlp, head, Xm, y, opt);
}

template <class X, class V>
void check_size(const V& v, i64 size, const char* name, const char* what) {
  check_on<X>(v, name);
  FISHERKIT_CHECK(v.size == size, "argument '", name, "' must have ", size, " entries (", what, "), got ", v.size);
}

// ------------------------------------------------------------------ factors

template <class X, class T>
void kfac_factors_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, MatrixView<const T> y,
                       const FisherOptions& opt, VectorView<T> out) {
  check_kfac_call<X>(mlp, head, Xm, y, opt);
  const Layout& lay = mlp.layout();
  const i64 size = lay.size(Shape::kfac), N = Xm.rows, L = mlp.n_layers();
  check_size<X>(out, size, "out", "the Kronecker factors of every layer");
  const auto& w = mlp.widths();
  const i64 M = rows_per_sample(mlp, opt);
  const i64 chunk = chunk_size<X>(opt.chunk, N, static_cast<i64>(sizeof(T)) *
                                                    (estimator_rows_per_sample(mlp, opt) + max_width(mlp) + 1));
  check_values(x, mlp, Xm, opt.estimator == Estimator::empirical ? &head : nullptr, y);
  Buf<X, T> own(x);
  T* acc = result_accumulator(x, out, size, own);
  EstimatorRows<X, T> r(x, L);
  Buf<X, T> B(x), tmp(x);
  for_chunks_summed<X, T>(x, N, chunk, acc, size, "the KFAC factors", [&](i64 s0, i64 n) {
    estimator_rows(x, mlp, head, opt, Xm, y, s0, n, r, [&](i64 l, const T* Dl) {
      const i64 no = w[l], k = lay.unit_width(l);
      T* A = acc + lay.offset(Shape::kfac, l);
      augmented(x, r.f.act(l - 1), r.f.act_ld(mlp, l - 1), n, w[l - 1], mlp.has_bias(l), 1, B);
      accumulate<X, T>(x, A, k, k, k, tmp, [&](auto* dst, i64 ld, T beta) {
        x.syrk(k, n, T(1), static_cast<const T*>(B.data()), k, beta, dst, ld);
      }, true);
      accumulate<X, T>(x, A + k * k, no, no, no, tmp, [&](auto* dst, i64 ld, T beta) {
        x.syrk(no, n * M, T(1), Dl, no, beta, dst, ld);
      }, true);
      detail::poll();
    });
  });
  for (i64 l = 1; l <= L; ++l) {
    const i64 off = lay.offset(Shape::kfac, l), k = lay.unit_width(l);
    x.emit_symmetric(acc, 1.0 / double(N), out, off, k, 1);
    x.emit_symmetric(acc, 1.0 / double(N), out, off + k * k, w[l], 1);
  }
}

// ------------------------------------------------------------------ EKFAC diagonal

template <class X, class T>
void square_values(X& x, T* p, i64 n, int power) {
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 i) {
    const T v = p[i] * p[i];
    p[i] = power == 4 ? v * v : v;
  });
}

/// rot (n x k) = (abar Q_A)^power: the layer's augmented inputs in the eigenbasis of A_l.
template <class X, class T>
void rotated_inputs(X& x, const T* A, i64 lda, i64 n, i64 ni, bool bias, const T* QA, int power, Buf<X, T>& B,
                    Buf<X, T>& rot) {
  const i64 k = ni + (bias ? 1 : 0);
  augmented(x, A, lda, n, ni, bias, 1, B);
  rot.resize(n * k);
  x.gemm(false, false, n, k, k, T(1), static_cast<const T*>(B.data()), k, QA, k, T(0), rot.data(), k);
  square_values(x, rot.data(), n * k, power);
}

/// acc (n_out x k, the result's dtype) += q^T (abar Q_A)^2 for the chunk, q[s, i] = sum_m (d_{sm} Q_G)_i^2:
/// one layer's EKFAC diagonal sums, from its augmented inputs B (n x k), its backward rows
/// Dl (n*M x no) and its bases (Q_A then Q_G at qb).
template <class X, class T, class A>
void ekfac_accumulate(X& x, A* acc, const T* B, const T* Dl, const T* qb, i64 n, i64 M, i64 no, i64 k,
                      Buf<X, T>& rot, Buf<X, T>& Dr, Buf<X, T>& q, Buf<X, T>& tmp) {
  rot.resize(n * k);
  x.gemm(false, false, n, k, k, T(1), B, k, qb, k, T(0), rot.data(), k);
  square_values(x, rot.data(), n * k, 2);
  Dr.resize(n * M * no);
  x.gemm(false, false, n * M, no, no, T(1), Dl, no, qb + k * k, no, T(0), Dr.data(), no);
  q.resize(n * no);
  unit_weights(x, q.data(), static_cast<const T*>(Dr.data()), static_cast<const T*>(nullptr), n, M, no);
  accumulate<X, T>(x, acc, no, k, k, tmp, [&](auto* dst, i64 ld, T beta) {
    x.gemm(true, false, no, k, n, T(1), static_cast<const T*>(q.data()), no, static_cast<const T*>(rot.data()), k,
           beta, dst, ld);
  });
}

template <class X, class T>
void check_bases(const Mlp<T>& mlp, VectorView<const T> bases) {
  check_size<X>(bases, mlp.layout().size(Shape::kfac), "bases", "the eigenbases Q_A, Q_G of every layer");
  FISHERKIT_CHECK(bases.stride == 1, "argument 'bases' must be contiguous");
}

template <class X, class T>
void ekfac_diagonal_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, MatrixView<const T> y,
                         const FisherOptions& opt, VectorView<const T> bases, VectorView<T> out) {
  check_kfac_call<X>(mlp, head, Xm, y, opt);
  check_bases<X>(mlp, bases);
  const Layout& lay = mlp.layout();
  const i64 P = mlp.n_params(), N = Xm.rows, L = mlp.n_layers();
  check_size<X>(out, P, "out", "the EKFAC diagonal of every layer");
  const auto& w = mlp.widths();
  const i64 M = rows_per_sample(mlp, opt);
  const i64 chunk = chunk_size<X>(opt.chunk, N, static_cast<i64>(sizeof(T)) *
      (estimator_rows_per_sample(mlp, opt) + 2 * (max_width(mlp) + 1) + (M + 1) * max_width(mlp)));
  check_values(x, mlp, Xm, opt.estimator == Estimator::empirical ? &head : nullptr, y);
  Buf<X, T> own(x);
  T* acc = result_accumulator(x, out, P, own);
  EstimatorRows<X, T> r(x, L);
  Buf<X, T> B(x), rot(x), Dr(x), q(x), tmp(x);
  for_chunks_summed<X, T>(x, N, chunk, acc, P, "the EKFAC diagonal", [&](i64 s0, i64 n) {
    estimator_rows(x, mlp, head, opt, Xm, y, s0, n, r, [&](i64 l, const T* Dl) {
      augmented(x, r.f.act(l - 1), r.f.act_ld(mlp, l - 1), n, w[l - 1], mlp.has_bias(l), 1, B);
      ekfac_accumulate(x, acc + mlp.param_offset(l), static_cast<const T*>(B.data()), Dl,
                       bases.data + lay.offset(Shape::kfac, l), n, M, w[l], lay.unit_width(l), rot, Dr, q, tmp);
      detail::poll();
    });
  });
  emit_scaled(x, acc, 1.0 / double(N), out, P);
}

// ------------------------------------------------------------------ distance from the layer blocks

/// How a layer's tr(Gamma_n Gamma_m) is formed: from the Gram of the M backward rows per
/// input (M^2 n_out per pair) or of the packed Gamma_n (n_out (n_out + 1) / 2 per pair).
inline bool packs_gamma(i64 no, i64 M) { return no + 1 <= 2 * M * M; }
constexpr i64 kGammaGroup = 32;  // inputs whose full Gamma_n are formed at once before packing
inline i64 packed_size(i64 no) { return no * (no + 1) / 2; }

/// gam (no(no+1)/2 x n, column s for input s): the upper triangle of Gamma_s = sum_m d d^T
/// (gfull: n x no x no), the off-diagonal entries times sqrt(2), so that
/// gam[:, s] . gam[:, t] = tr(Gamma_s Gamma_t). Stored by columns, so that the Gram of a
/// chunk with itself is one SYRK.
template <class X, class T>
void pack_gamma(X& x, T* gam, i64 ld, const T* gfull, i64 n, i64 no) {
  const T r2 = T(1.4142135623730951);
  x.for_2d(no, n, [=] FISHERKIT_LAMBDA(i64 i, i64 s) {
    const T* src = gfull + (s * no + i) * no;
    T* dst = gam + (i * no - i * (i - 1) / 2) * ld + s;
    dst[0] = src[i];
    for (i64 j = i + 1; j < no; ++j) dst[(j - i) * ld] = r2 * src[j];
  });
}

/// The packed Gamma of n inputs' backward rows Dl (n*M x no) into gam (per x n), formed in
/// groups of `group` inputs (gfull: group x no x no scratch).
template <class X, class T>
void packed_gammas(X& x, T* gam, const T* Dl, i64 n, i64 M, i64 no, i64 group, Buf<X, T>& gfull) {
  gfull.resize(std::min(group, n) * no * no);
  for (i64 g0 = 0; g0 < n; g0 += group) {
    const i64 ng = std::min(group, n - g0);
    x.gemm_batched(true, false, no, no, M, T(1), Dl + g0 * M * no, no, M * no, Dl + g0 * M * no, no, M * no, T(0),
                   gfull.data(), no, no * no, ng);
    pack_gamma(x, gam + g0, n, static_cast<const T*>(gfull.data()), ng, no);
  }
}

/// tm (ni x nj) = sum over the M x M block (s, t) of kr (ni M x nj M) of the squares.
template <class X, class T>
void block_square_sums(X& x, T* tm, const T* kr, i64 ni, i64 nj, i64 M) {
  x.for_2d(ni, nj, [=] FISHERKIT_LAMBDA(i64 s, i64 t) {
    T acc = T(0);
    for (i64 a = 0; a < M; ++a) {
      const T* row = kr + (s * M + a) * (nj * M) + t * M;
      for (i64 b = 0; b < M; ++b) acc += row[b] * row[b];
    }
    tm[s * nj + t] = acc;
  });
}

/// sa (ni x nj) = weight * tm o sa o sa: the pair terms tr(Gamma Gamma') (abar . abar')^2.
/// With `upper` (a chunk with itself, tm from a SYRK): the upper triangle counted twice,
/// the diagonal once, the lower triangle not at all.
template <class X, class T>
void pair_terms(X& x, T* sa, const T* tm, i64 ni, i64 nj, T weight, bool upper) {
  x.for_2d(ni, nj, [=] FISHERKIT_LAMBDA(i64 s, i64 t) {
    const i64 i = s * nj + t;
    const T wt = upper ? (t > s ? T(2) : t == s ? T(1) : T(0)) : weight;
    sa[i] = wt == T(0) ? T(0) : wt * tm[i] * sa[i] * sa[i];
  });
}

/// acc[s] += (sum_m d_{sm}^T G d_{sm}) (abar_s^T A abar_s): the cross term of one input, from
/// dg = D G (n*M x no), D, ba = abar A (n x k) and abar.
template <class X, class T>
void cross_terms(X& x, double* acc, const T* dg, const T* D, const T* ba, const T* abar, i64 n, i64 M, i64 no,
                 i64 k) {
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) {
    double c = 0.0, e = 0.0;
    for (i64 i = 0; i < M * no; ++i) c += double(dg[s * M * no + i]) * double(D[s * M * no + i]);
    for (i64 j = 0; j < k; ++j) e += double(ba[s * k + j]) * double(abar[s * k + j]);
    acc[s] += c * e;
  });
}

/// out[0] = sum_t acc[t] (t < n), on the executor.
template <class X>
void reduce_into(X& x, double* out, const double* acc, i64 n) {
  x.for_each(1, [=] FISHERKIT_LAMBDA(i64) {
    double s = 0.0;
    for (i64 t = 0; t < n; ++t) s += acc[t];
    out[0] = s;
  });
}

/// dst (rows x cols, leading dimension ldd) = src (rows x cols, leading dimension lds).
template <class X, class T>
void copy_block(X& x, T* dst, i64 ldd, const T* src, i64 lds, i64 rows, i64 cols) {
  x.for_2d(rows, cols, [=] FISHERKIT_LAMBDA(i64 r, i64 c) { dst[r * ldd + c] = src[r * lds + c]; });
}

/// One layer's summaries of the kept inputs: per input the backward rows (M n_out values,
/// row-major by input) or the packed Gamma (n_out (n_out + 1) / 2, by columns: one column per
/// input), and the augmented input (k values, row-major by input).
template <class X, class T>
struct LayerSummary {
  Buf<X, T> rows, abar;
  explicit LayerSummary(X& x) : rows(x), abar(x) {}
};

template <class X, class T>
void kfac_error_sums_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, MatrixView<const T> y,
                          const FisherOptions& opt, VectorView<const T> factors, VectorView<const T> bases,
                          i64 keep_bytes, VectorView<double> sq, VectorView<double> cross, VectorView<T> diag) {
  check_kfac_call<X>(mlp, head, Xm, y, opt);
  const Layout& lay = mlp.layout();
  const i64 N = Xm.rows, L = mlp.n_layers(), P = mlp.n_params();
  check_size<X>(sq, L, "sq", "one sum per layer");
  FISHERKIT_CHECK(sq.stride == 1, "argument 'sq' must be contiguous");
  const bool want_cross = cross.data != nullptr, want_diag = diag.data != nullptr;
  if (want_cross) {
    check_size<X>(cross, L, "cross", "one sum per layer");
    FISHERKIT_CHECK(cross.stride == 1, "argument 'cross' must be contiguous");
    check_size<X>(factors, lay.size(Shape::kfac), "factors", "the Kronecker factors of every layer");
    FISHERKIT_CHECK(factors.stride == 1, "argument 'factors' must be contiguous");
  }
  if (want_diag) {
    check_bases<X>(mlp, bases);
    check_size<X>(diag, P, "diag", "the EKFAC diagonal of every layer");
  }
  FISHERKIT_CHECK(keep_bytes >= 0, "argument 'keep_bytes' must be >= 0, got ", keep_bytes);
  const auto& w = mlp.widths();
  const i64 M = rows_per_sample(mlp, opt);
  // per-input summary values, and the widest per-pair buffers
  i64 summary = 0, widest_rows = 1, widest_gamma = 0;
  for (i64 l = 1; l <= L; ++l) {
    const bool pk = packs_gamma(w[l], M);
    summary += (pk ? packed_size(w[l]) : M * w[l]) + lay.unit_width(l);
    if (pk) widest_gamma = std::max(widest_gamma, packed_size(w[l]));
    else widest_rows = std::max(widest_rows, M * M);
  }
  const i64 sz = static_cast<i64>(sizeof(T));
  // chunk: linear workspace (rows, summaries, packed Gamma, rotations) within 4 budgets
  // (the pair GEMMs want tall chunks), and the quadratic pair buffers (row Gram n M x n M,
  // two n x n) within one
  i64 chunk = chunk_size<X>(opt.chunk, N, sz * (estimator_rows_per_sample(mlp, opt) + summary + widest_gamma +
                                                (M + 1) * max_width(mlp) + 3 * (max_width(mlp) + 1)), 4);
  if (opt.chunk <= 0) {
    const double quad = std::sqrt(double(X::chunk_budget) / double(sz * (widest_rows + 2)));
    chunk = std::min(N, std::max<i64>(16, std::min<i64>(chunk, static_cast<i64>(quad))));
  }
  // inputs whose summaries are kept (a whole number of chunks): the whole data when it fits
  // keep_bytes (default 8 workspace budgets), else blocks
  const i64 kb = keep_bytes > 0 ? keep_bytes : 8 * X::chunk_budget;
  i64 keep = std::min<i64>(N, kb / std::max<i64>(sz * summary, 1));
  keep = std::max(chunk, keep / chunk * chunk);
  check_values(x, mlp, Xm, opt.estimator == Estimator::empirical ? &head : nullptr, y);

  std::vector<LayerSummary<X, T>> kept;
  for (i64 l = 0; l <= L; ++l) kept.emplace_back(x);
  for (i64 l = 1; l <= L; ++l) {
    const i64 per = packs_gamma(w[l], M) ? packed_size(w[l]) : M * w[l];
    kept[l].rows.resize(keep * per);
    kept[l].abar.resize(keep * lay.unit_width(l));
  }
  Buf<X, double> sqb(x), crb(x);  // per layer `chunk` partial sums of ||F||^2 and the cross term
  Buf<X, T> own(x);
  double* sqp = zeroed(x, sqb, (L + 1) * chunk);
  double* crp = want_cross ? zeroed(x, crb, (L + 1) * chunk) : nullptr;
  T* dacc = want_diag ? result_accumulator(x, diag, P, own) : nullptr;
  EstimatorRows<X, T> r(x, L);
  Buf<X, T> B(x), gfull(x), gam(x), kr(x), tm(x), sa(x), dg(x), ba(x), ones(x), tmp(x), rot(x), Dr(x), q(x);
  fill_ones<X, T>(x, ones, chunk);
  // progress: every block visits the inputs from its start on
  i64 total = 0;
  for (i64 b0 = 0; b0 < N; b0 += keep) total += N - b0;
  i64 done = 0;
  detail::checkpoint(0, total);
  for (i64 b0 = 0; b0 < N; b0 += keep) {
    const i64 nb = std::min(keep, N - b0);
    for (i64 s0 = b0; s0 < N; s0 += chunk) {
      const i64 n = std::min(chunk, N - s0);
      const bool inside = s0 < b0 + nb;  // this chunk belongs to the kept block
      estimator_rows(x, mlp, head, opt, Xm, y, s0, n, r, [&](i64 l, const T* Dl) {
        const i64 no = w[l], k = lay.unit_width(l);
        const bool pk = packs_gamma(no, M);
        const i64 per = pk ? packed_size(no) : M * no;
        augmented(x, r.f.act(l - 1), r.f.act_ld(mlp, l - 1), n, w[l - 1], mlp.has_bias(l), 1, B);
        const T* sj = Dl;  // this chunk's summary: rows (n M x no) or packed Gamma (per x n)
        if (pk) {
          gam.resize(per * n);
          packed_gammas(x, gam.data(), Dl, n, M, no, kGammaGroup, gfull);
          sj = gam.data();
        }
        const T* aj = B.data();
        double* acc = sqp + l * chunk;
        // the pairs (kept inputs before this chunk, this chunk), counted twice
        const i64 before = inside ? s0 - b0 : nb;
        for (i64 i0 = 0; i0 < before; i0 += chunk) {
          const i64 ni = std::min(chunk, before - i0);
          tm.resize(ni * n);
          if (pk) {
            x.gemm(true, false, ni, n, per, T(1), static_cast<const T*>(kept[l].rows.data()) + i0, keep, sj, n, T(0),
                   tm.data(), n);
          } else {
            kr.resize(ni * M * n * M);
            x.gemm(false, true, ni * M, n * M, no, T(1), static_cast<const T*>(kept[l].rows.data()) + i0 * per, no,
                   sj, no, T(0), kr.data(), n * M);
            block_square_sums(x, tm.data(), static_cast<const T*>(kr.data()), ni, n, M);
          }
          sa.resize(ni * n);
          x.gemm(false, true, ni, n, k, T(1), static_cast<const T*>(kept[l].abar.data()) + i0 * k, k, aj, k, T(0),
                 sa.data(), n);
          pair_terms(x, sa.data(), static_cast<const T*>(tm.data()), ni, n, T(2), false);
          add_column_sums(x, acc, static_cast<const T*>(sa.data()), n, ni, n, static_cast<const T*>(ones.data()),
                          tmp);
          detail::poll();
        }
        if (!inside) return;
        // the pairs within this chunk (a SYRK when Gamma is packed)
        tm.resize(n * n);
        if (pk) {
          x.syrk(n, per, T(1), sj, n, T(0), tm.data(), n);
        } else {
          kr.resize(n * M * n * M);
          x.gemm(false, true, n * M, n * M, no, T(1), sj, no, sj, no, T(0), kr.data(), n * M);
          block_square_sums(x, tm.data(), static_cast<const T*>(kr.data()), n, n, M);
        }
        sa.resize(n * n);
        x.gemm(false, true, n, n, k, T(1), aj, k, aj, k, T(0), sa.data(), n);
        pair_terms(x, sa.data(), static_cast<const T*>(tm.data()), n, n, T(1), pk);
        add_column_sums(x, acc, static_cast<const T*>(sa.data()), n, n, n, static_cast<const T*>(ones.data()), tmp);
        // keep this chunk's summaries
        if (pk)
          copy_block(x, kept[l].rows.data() + (s0 - b0), keep, sj, n, per, n);
        else
          copy_values(x, kept[l].rows.data() + (s0 - b0) * per, sj, n * per);
        copy_values(x, kept[l].abar.data() + (s0 - b0) * k, aj, n * k);
        if (want_cross) {  // <F, G (x) A> from abar A and D G
          const T* Af = factors.data + lay.offset(Shape::kfac, l);
          dg.resize(n * M * no);
          x.gemm(false, false, n * M, no, no, T(1), Dl, no, Af + k * k, no, T(0), dg.data(), no);
          ba.resize(n * k);
          x.gemm(false, false, n, k, k, T(1), aj, k, Af, k, T(0), ba.data(), k);
          cross_terms(x, crp + l * chunk, static_cast<const T*>(dg.data()), Dl, static_cast<const T*>(ba.data()), aj,
                      n, M, no, k);
        }
        if (want_diag)
          ekfac_accumulate(x, dacc + mlp.param_offset(l), aj, Dl, bases.data + lay.offset(Shape::kfac, l), n, M, no,
                           k, rot, Dr, q, tmp);
        detail::poll();
      });
      done += n;
      detail::checkpoint(done, total);
    }
  }
  const double inv = 1.0 / double(N);
  for (i64 l = 1; l <= L; ++l) {
    reduce_into(x, sq.data + (l - 1), static_cast<const double*>(sqp + l * chunk), chunk);
    if (want_cross) reduce_into(x, cross.data + (l - 1), static_cast<const double*>(crp + l * chunk), chunk);
  }
  double* o = sq.data;
  x.for_each(L, [=] FISHERKIT_LAMBDA(i64 i) { o[i] *= inv * inv; });
  if (want_cross) {
    double* c = cross.data;
    x.for_each(L, [=] FISHERKIT_LAMBDA(i64 i) { c[i] *= inv; });
  }
  if (want_diag) emit_scaled(x, static_cast<const T*>(dacc), inv, diag, P);
}

// ------------------------------------------------------------------ variance of the sampled parts

/// Per (input, output) weights kappa, omega of head_pair_gram_weights (n x C each), and
/// the backward columns bc (n*C x no, row s*C + c = dh_c/dz at input s) centred in place
/// for the categorical head.
template <class X, class T>
void pair_gram_weights(X& x, const Head& head, const double* cache, const T* h, T* bc, T* kap, T* om, i64 n, i64 C,
                       i64 no) {
  const HeadKind kind = head.kind;
  const double sigma = head.sigma;
  x.for_2d(n, C, [=] FISHERKIT_LAMBDA(i64 s, i64 c) {
    const auto row = detail::cached_head_row<T>(kind, sigma, h + s * C, C, cache + s * 2 * C);
    const detail::PairGramWeights g = detail::head_pair_gram_weights(row, c);
    kap[s * C + c] = T(g.kappa);
    om[s * C + c] = T(g.omega);
  });
  if (!detail::head_pair_centred(kind)) return;
  x.for_2d(n, no, [=] FISHERKIT_LAMBDA(i64 s, i64 u) {
    double m = 0.0;
    for (i64 c = 0; c < C; ++c) m += double(om[s * C + c]) * double(bc[(s * C + c) * no + u]);
    for (i64 c = 0; c < C; ++c) bc[(s * C + c) * no + u] = T(double(bc[(s * C + c) * no + u]) - m);
  });
}

/// The rows of the three Gram terms of U1 summed over inputs: sq (n*C x no) = bc^2 with
/// weights kap; q (n x no) = sum_c omega bc^2 (its Gram times qq); kr (n*C(C+1)/2 x no) the
/// Khatri-Rao rows bc_c o bc_c' (c <= c') with weights wk = sign omega_c omega_c' (2 for c < c').
template <class X, class T>
void pair_gram_rows(X& x, HeadKind kind, const T* bc, const T* om, T* sq, T* q, T* kr, T* wk, i64 n, i64 C, i64 no) {
  const i64 pairs = C * (C + 1) / 2;
  const T sign = T(detail::head_pair_sign(kind));
  x.for_2d(n * C, no, [=] FISHERKIT_LAMBDA(i64 r, i64 u) { sq[r * no + u] = bc[r * no + u] * bc[r * no + u]; });
  x.for_2d(n, no, [=] FISHERKIT_LAMBDA(i64 s, i64 u) {
    T acc = T(0);
    for (i64 c = 0; c < C; ++c) acc += om[s * C + c] * bc[(s * C + c) * no + u] * bc[(s * C + c) * no + u];
    q[s * no + u] = acc;
  });
  x.for_2d(n * pairs, no, [=] FISHERKIT_LAMBDA(i64 r, i64 u) {
    const i64 s = r / pairs;
    i64 p = r % pairs, c = 0;
    while (p >= C - c) {  // the p-th pair (c, c') with c <= c', row-major over the upper triangle
      p -= C - c;
      ++c;
    }
    const i64 c2 = c + p;
    kr[r * no + u] = bc[(s * C + c) * no + u] * bc[(s * C + c2) * no + u];
    if (u == 0) wk[r] = sign * om[s * C + c] * om[s * C + c2] * T(c == c2 ? 1 : 2);
  });
}

template <class X, class T>
void kfac_variance_sum_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm,
                            VectorView<const T> bases, VectorView<T> out, i64 chunk) {
  check_layout<X>(mlp, Xm, "X");
  check_head(head, mlp.output_dim());
  const bool ekfac = bases.data != nullptr;
  if (ekfac) check_bases<X>(mlp, bases);
  const Layout& lay = mlp.layout();
  const i64 N = Xm.rows, L = mlp.n_layers(), C = mlp.output_dim();
  const i64 size = ekfac ? mlp.n_params() : lay.size(Shape::kfac);
  check_size<X>(out, size, "out", ekfac ? "the EKFAC diagonal of every layer" : "the Kronecker factors of every layer");
  const auto& w = mlp.widths();
  const i64 mw = max_width(mlp);
  const i64 pairs = C * (C + 1) / 2;
  chunk = chunk_size<X>(chunk, N, static_cast<i64>(sizeof(T)) *
      (4 * sum_widths(mlp) + C * sum_widths(mlp) + 3 * C * mw + 3 * (mw + 1) + 4 * C +
       (ekfac ? 0 : (3 * pairs + 2 * C + 1) * mw + pairs + 2 * C)));
  check_values(x, mlp, Xm);
  Buf<X, T> own(x);
  Buf<X, double> cache(x);
  T* acc = result_accumulator(x, out, size, own);
  Forward<X, T> f(x, L);
  Columns<X, T> cols(x, L);
  Buf<X, T> gr(x), gt(x), wts(x), B(x), rot(x), tmp(x), kap(x), om(x), sq(x), q(x), kr(x), wk(x);
  for_chunks_summed<X, T>(x, N, chunk, acc, size, "the KFAC variance sum", [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, false, s0);
    backward_columns(x, mlp, f, cols, false);
    cache.resize(n * 2 * C);
    head_row_cache(x, head, f.h(), cache.data(), n, C);
    for (i64 l = 1; l <= L; ++l) {
      const i64 nl = w[l], k = lay.unit_width(l);
      const T* G = cols.G[l].data();
      const T* QA = ekfac ? bases.data + lay.offset(Shape::kfac, l) : nullptr;
      if (ekfac) {  // the columns in the eigenbasis of G_l: (B Q_G)
        gr.resize(n * C * nl);
        x.gemm(false, false, n * C, nl, nl, T(1), G, nl, QA + k * k, nl, T(0), gr.data(), nl);
        G = gr.data();
      }
      const double* cp = cache.data();
      if (!ekfac) {
        // sum_n U1 = three weighted Grams over (input, output) rows (detail/moments.hpp)
        T* bc = cols.G[l].data();
        kap.resize(n * C);
        om.resize(n * C);
        pair_gram_weights(x, head, cp, f.h(), bc, kap.data(), om.data(), n, C, nl);
        sq.resize(n * C * nl);
        q.resize(n * nl);
        kr.resize(n * pairs * nl);
        wk.resize(n * pairs);
        pair_gram_rows(x, head.kind, static_cast<const T*>(bc), static_cast<const T*>(om.data()), sq.data(), q.data(),
                       kr.data(), wk.data(), n, C, nl);
        T* Gacc = acc + lay.offset(Shape::kfac, l) + k * k;
        x.unit_gram(Gacc, static_cast<const T*>(kap.data()), 1, 1, static_cast<const T*>(sq.data()), n * C, nl);
        if (detail::head_pair_qq(head.kind) != 0.0)
          accumulate<X, T>(x, Gacc, nl, nl, nl, tmp, [&](auto* dst, i64 ld, T beta) {
            x.syrk(nl, n, T(1), static_cast<const T*>(q.data()), nl, beta, dst, ld);
          }, true);
        x.unit_gram(Gacc, static_cast<const T*>(wk.data()), 1, 1, static_cast<const T*>(kr.data()), n * pairs, nl);
      } else {
        gt.resize(n * nl * C);
        transpose_columns(x, gt.data(), G, n, C, nl);
        wts.resize(n * nl);
        moment_weights(x, head, Moment::v1, f.h(), cp, static_cast<const T*>(gt.data()),
                       static_cast<const T*>(nullptr), wts.data(), n, C, nl);
        rotated_inputs(x, f.act(l - 1), f.act_ld(mlp, l - 1), n, w[l - 1], mlp.has_bias(l), QA, 4, B, rot);
        accumulate<X, T>(x, acc + mlp.param_offset(l), nl, k, k, tmp, [&](auto* dst, i64 ld, T beta) {
          x.gemm(true, false, nl, k, n, T(1), static_cast<const T*>(wts.data()), nl,
                 static_cast<const T*>(rot.data()), k, beta, dst, ld);
        });
      }
      detail::poll();
    }
  });
  if (ekfac) {
    emit_scaled(x, acc, 1.0, out, size);
    return;
  }
  for (i64 l = 1; l <= L; ++l) {
    const i64 off = lay.offset(Shape::kfac, l), k = lay.unit_width(l);
    x.emit_symmetric(acc, 1.0, out, off, k, 1);  // zeros: A_l does not depend on the labels
    x.emit_symmetric(acc, 1.0, out, off + k * k, w[l], 1);
  }
}

}  // namespace fisherkit::passes
