// The statistics of the unit-wise natural gradients (natgrad.hpp unit_statistics), written
// once: a forward pass, the metric's backward rows (and, fused, the gradient's residual row),
// the per-sample unit weights g2 (pre-activation) and b2 (activity), and the sums each
// method needs, by GEMM, SYRK or the unit-block Gram of the Fisher pass.
#pragma once
#include "fisherkit/natgrad.hpp"
#include "fisher.hpp"

namespace fisherkit::passes {

/// out (n x no) = sum over the Mm rows m0 .. m0 + Mm - 1 of each sample of D^2 (D: n*Mt x no).
template <class X, class T>
void row_group_squares(X& x, T* out, const T* D, i64 n, i64 Mt, i64 m0, i64 Mm, i64 no) {
  x.for_2d(n, no, [=] FISHERKIT_LAMBDA(i64 s, i64 u) {
    T acc = T(0);
    for (i64 m = m0; m < m0 + Mm; ++m) {
      const T d = D[(s * Mt + m) * no + u];
      acc += d * d;
    }
    out[s * no + u] = acc;
  });
}

/// rows (N x Mm no) from s0 on: the metric rows m0 .. m0 + Mm - 1 of each sample of D (n*Mt x no).
template <class X, class T>
void copy_metric_rows(X& x, MatrixView<T> rows, i64 s0, const T* D, i64 n, i64 Mt, i64 m0, i64 Mm, i64 no) {
  x.for_2d(n * Mm, no, [=] FISHERKIT_LAMBDA(i64 r, i64 u) {
    const i64 s = r / Mm, m = r % Mm;
    rows.row(s0 + s)[m * no + u] = D[(s * Mt + m0 + m) * no + u];
  });
}

template <class X, class T>
void scale_by_d1_squared(X& x, T* out, const T* in, const T* d1, i64 n) {
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 i) { out[i] = in[i] * d1[i] * d1[i]; });
}

template <class X, class T>
void copy_strided_rows(X& x, MatrixView<T> out, i64 r0, const T* src, i64 ld, i64 n, i64 cols) {
  x.for_2d(n, cols, [=] FISHERKIT_LAMBDA(i64 s, i64 j) { out.row(r0 + s)[j] = src[s * ld + j]; });
}

template <class X, class V>
void check_stats_out(const V& v, const char* what, std::int64_t l) {
  if (v.data == nullptr) return;
  FISHERKIT_CHECK(v.device == X::device, "unit statistics output '", what, "' of layer ", l - 1,
                  " is not in the memory of the computation");
}

/// After a chunk, every float64 sum of the statistics is finite (one pass over them); an
/// overflow names the layer and the chunk's input rows, never a step of NaN.
template <class X, class T>
void check_statistics(X& x, const std::vector<UnitStats<T>>& stats, i64 L, i64 s0, i64 n) {
  for (i64 l = 1; l <= L; ++l) {
    const UnitStats<T>& st = stats[static_cast<size_t>(l - 1)];
    bool bad = false;
    const VectorView<double> sums[] = {st.g2_sum, st.b2_sum, st.x_sum, st.x_sq, st.blocks};
    const MatrixView<double> mats[] = {st.x_gram, st.qd1, st.qd2};
    for (const auto& v : sums)
      bad = bad || (v.data && first_nonfinite(x, static_cast<const double*>(v.data), v.size * v.stride) >= 0);
    for (const auto& m : mats)
      bad = bad || (m.data && first_nonfinite(x, static_cast<const double*>(m.data), m.rows * m.row_stride) >= 0);
    FISHERKIT_CHECK(!bad, "the unit statistics of layer ", l - 1, " overflow float64 at input row",
                    n == 1 ? " " : "s ", s0, n == 1 ? "" : " to " + std::to_string(s0 + n - 1),
                    " (finite inputs and weights, but too large for this computation; rescale the inputs or "
                    "the weights)");
  }
}

template <class X, class T>
double unit_statistics_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm,
                            MatrixView<const T> y, const UnitStatsOptions& opt,
                            const std::vector<UnitStats<T>>& stats, VectorView<T> grad) {
  check_layout<X>(mlp, Xm, "X");
  check_head(head, mlp.output_dim());
  const i64 N = Xm.rows, L = mlp.n_layers(), C = mlp.output_dim(), P = mlp.n_params();
  const auto& w = mlp.widths();
  const Layout& lay = mlp.layout();
  const bool want_grad = grad.data != nullptr;
  const bool empirical = opt.metric == Metric::empirical;
  check_draws(opt.samples, opt.index_offset);
  FISHERKIT_CHECK(static_cast<i64>(stats.size()) == L, "argument 'stats' must have one entry per layer (", L,
                  "), got ", stats.size());
  if (want_grad || empirical) {
    FISHERKIT_CHECK(y.data != nullptr && y.rows > 0, "argument 'y' is required (",
                    want_grad ? "for the gradient" : "by the empirical metric", ")");
    check_label_layout<X>(head, y, N, C, "y");
  }
  if (want_grad) {
    check_on<X>(grad, "grad");
    FISHERKIT_CHECK(grad.size == P, "argument 'grad' must have ", P, " entries, got ", grad.size);
  }
  for (i64 l = 1; l <= L; ++l) {
    const UnitStats<T>& st = stats[static_cast<size_t>(l - 1)];
    const i64 no = w[l], ni = w[l - 1], k = lay.unit_width(l);
    auto shape = [&](auto& v, i64 r, i64 c, const char* what) {
      if (v.data == nullptr) return;
      check_stats_out<X>(v, what, l);
      detail::check_shape(v, r, c, what);
      detail::check_rows_unit_stride(v, what);
    };
    auto size = [&](auto& v, i64 n, const char* what) {
      if (v.data == nullptr) return;
      check_stats_out<X>(v, what, l);
      FISHERKIT_CHECK(v.size == n && v.stride == 1, "unit statistics output '", what, "' of layer ", l - 1,
                      " must have ", n, " contiguous entries, got ", v.size);
    };
    shape(st.inputs, N, ni, "inputs");
    shape(st.g2, N, no, "g2");
    shape(st.b2, N, no, "b2");
    size(st.g2_sum, no, "g2_sum");
    size(st.b2_sum, no, "b2_sum");
    size(st.x_sum, ni, "x_sum");
    size(st.x_sq, ni, "x_sq");
    shape(st.x_gram, ni, ni, "x_gram");
    shape(st.qd1, no, k, "qd1");
    shape(st.qd2, no, k, "qd2");
    size(st.blocks, no * k * k, "blocks");
    FISHERKIT_CHECK(st.x_gram.data == nullptr || st.x_gram.row_stride == ni, "unit statistics output 'x_gram' "
                    "must be contiguous");
    FISHERKIT_CHECK((st.qd1.data == nullptr || st.qd1.row_stride == k) && (st.qd2.data == nullptr ||
                    st.qd2.row_stride == k), "unit statistics outputs 'qd1', 'qd2' must be contiguous");
  }
  // rows per sample: the gradient's residual (row 0), then the metric's rows; the empirical
  // metric reuses the residual row when the gradient is wanted
  FisherOptions fo;
  fo.estimator = opt.metric == Metric::exact ? Estimator::exact
                 : opt.metric == Metric::score ? Estimator::score : Estimator::empirical;
  fo.samples = opt.samples;
  fo.seed = opt.seed;
  const bool bpm = opt.metric == Metric::bpm;
  const i64 Mm = bpm ? 0 : rows_per_sample(mlp, fo);
  const bool shared_row = want_grad && empirical;
  const i64 Mt = (want_grad ? 1 : 0) + (shared_row ? 0 : Mm);
  const i64 m0 = shared_row ? 0 : (want_grad ? 1 : 0);
  for (i64 l = 1; l <= L; ++l) {
    const MatrixView<T>& r = stats[static_cast<size_t>(l - 1)].rows;
    if (r.data == nullptr) continue;
    FISHERKIT_CHECK(!bpm, "the bpm metric has no backward rows: unit statistics output 'rows' is not available");
    check_stats_out<X>(r, "rows", l);
    detail::check_shape(r, N, Mm * w[l], "rows");
    detail::check_rows_unit_stride(r, "rows");
  }
  const i64 per_sample = static_cast<i64>(sizeof(T)) *
      (4 * sum_widths(mlp) + 2 * std::max<i64>(Mt, 1) * max_width(mlp) + C * C + 3 * C + 2 * sum_widths(mlp) +
       4 * (max_width(mlp) + 1));
  const i64 chunk = chunk_size<X>(opt.chunk, N, per_sample);
  check_values(x, mlp, Xm, want_grad || empirical ? &head : nullptr, y);

  for (i64 l = 1; l <= L; ++l) {  // sums start at zero
    const UnitStats<T>& st = stats[static_cast<size_t>(l - 1)];
    const i64 no = w[l], ni = w[l - 1], k = lay.unit_width(l);
    zero(x, st.g2_sum.data, no);
    zero(x, st.b2_sum.data, no);
    zero(x, st.x_sum.data, ni);
    zero(x, st.x_sq.data, ni);
    zero(x, st.x_gram.data, ni * ni);
    zero(x, st.qd1.data, no * k);
    zero(x, st.qd2.data, no * k);
    zero(x, st.blocks.data, no * k * k);
  }
  Buf<X, double> gradb(x);
  double* gacc = want_grad ? zeroed(x, gradb, P) : nullptr;
  Forward<X, T> f(x, L);
  std::vector<Buf<X, T>> G2, B2;
  for (auto* v : {&G2, &B2}) {
    v->reserve(static_cast<size_t>(L + 1));
    for (i64 l = 0; l <= L; ++l) v->emplace_back(x);
  }
  Buf<X, T> D(x), buf(x), scr(x), taubar(x), nll(x), tmp(x), ones(x), B(x), w2(x);
  std::vector<T> host;
  double loss = 0.0;
  for_chunks<X>(N, chunk, [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, false, s0);
    fill_ones<X, T>(x, ones, n);  // the column sums of the gradient's biases and of the statistics
    const MatrixView<const T> yc = want_grad || empirical ? y.rows_slice(s0, n) : y;
    for (i64 l = 1; l <= L; ++l) {
      G2[l].resize(n * w[l]);
      B2[l].resize(n * w[l]);
    }
    if (Mt > 0) {
      D.resize(n * Mt * C);
      if (want_grad) {
        nll.resize(n);
        residual_rows(x, head, f.h(), yc, D.data(), Mt, 0, nll.data(), n, C);
        loss += host_sum(x, static_cast<const T*>(nll.data()), n, host);
      }
      if (!bpm && !shared_row) {
        scr.resize(n * (C * C + 2 * C));
        taubar.resize(n * C);
        top_rows(x, head, fo, opt.index_offset + s0, yc, f.h(), n, C, Mt, m0, D.data(), scr.data(), taubar.data());
      }
      check_rows_finite(x, static_cast<const T*>(D.data()), n, Mt, C, s0, "the head's pseudo-output");
      backward(x, mlp, f, D, buf, Mt,
               [&](i64 l, const T* Dl) {
                 const i64 no = w[l];
                 if (want_grad)
                   accumulate_vjp(x, gacc + mlp.param_offset(l), Dl, Mt * no, no, f.act(l - 1), f.act_ld(mlp, l - 1), n,
                                  w[l - 1], mlp.has_bias(l), static_cast<const T*>(ones.data()), tmp);
                 if (!bpm) {
                   const MatrixView<T>& rows = stats[static_cast<size_t>(l - 1)].rows;
                   if (rows.data) copy_metric_rows(x, rows, s0, Dl, n, Mt, m0, Mm, no);
                   row_group_squares(x, G2[l].data(), Dl, n, Mt, m0, Mm, no);
                   if (l == L) copy_values(x, B2[L].data(), static_cast<const T*>(G2[L].data()), n * no);
                 }
               },
               [&](i64 l, const T* Dx) {
                 if (!bpm) row_group_squares(x, B2[l].data(), Dx, n, Mt, m0, Mm, w[l]);
               });
    }
    if (bpm) {
      // g2_L = diag Cov(t | h); b2_l = g2_{l+1} (W_{l+1} o W_{l+1}); g2_l = b2_l phi'(z_l)^2
      scr.resize(n * C);
      const bool centred = covariance_parts(x, head, f.h(), n, C, s0, scr.data());
      covariance_diagonal(x, G2[L].data(), centred, static_cast<const T*>(scr.data()), n, C);
      copy_values(x, B2[L].data(), static_cast<const T*>(G2[L].data()), n * C);
      for (i64 l = L - 1; l >= 1; --l) {
        const MatrixView<const T> W = mlp.layer(l + 1).weight;
        w2.resize(w[l + 1] * w[l]);
        squared_weights(x, w2.data(), W);
        x.gemm(false, false, n, w[l], w[l + 1], T(1), static_cast<const T*>(G2[l + 1].data()), w[l + 1],
               static_cast<const T*>(w2.data()), w[l], T(0), B2[l].data(), w[l]);
        scale_by_d1_squared(x, G2[l].data(), static_cast<const T*>(B2[l].data()),
                            static_cast<const T*>(f.d1[l].data()), n * w[l]);
      }
    }
    for (i64 l = 1; l <= L; ++l) {
      const UnitStats<T>& st = stats[static_cast<size_t>(l - 1)];
      const i64 no = w[l], ni = w[l - 1], k = lay.unit_width(l);
      const bool bias = mlp.has_bias(l);
      const T* A = f.act(l - 1);
      const i64 lda = f.act_ld(mlp, l - 1);
      const T* g2 = G2[l].data();
      const T* b2 = B2[l].data();
      const T* on = ones.data();
      if (st.inputs.data) copy_strided_rows(x, st.inputs, s0, A, lda, n, ni);
      if (st.g2.data) copy_strided_rows(x, st.g2, s0, g2, no, n, no);
      if (st.b2.data) copy_strided_rows(x, st.b2, s0, b2, no, n, no);
      if (st.g2_sum.data) add_column_sums(x, st.g2_sum.data, g2, no, n, no, on, tmp);
      if (st.b2_sum.data) add_column_sums(x, st.b2_sum.data, b2, no, n, no, on, tmp);
      if (st.x_sum.data) add_column_sums(x, st.x_sum.data, A, lda, n, ni, on, tmp);
      if (st.x_sq.data) {
        augmented(x, A, lda, n, ni, false, 2, B);
        add_column_sums(x, st.x_sq.data, static_cast<const T*>(B.data()), ni, n, ni, on, tmp);
      }
      if (st.x_gram.data)
        accumulate<X, T>(x, st.x_gram.data, ni, ni, ni, tmp, [&](auto* dst, i64 ld, T beta) {
          x.syrk(ni, n, T(1), A, lda, beta, dst, ld);
        }, true);
      for (int power = 1; power <= 2; ++power) {
        double* dst = power == 1 ? st.qd1.data : st.qd2.data;
        if (!dst) continue;
        augmented(x, A, lda, n, ni, bias, power, B);
        accumulate<X, T>(x, dst, no, k, k, tmp, [&](auto* d, i64 ld, T beta) {
          x.gemm(true, false, no, k, n, T(1), g2, no, static_cast<const T*>(B.data()), k, beta, d, ld);
        });
      }
      if (st.blocks.data) {
        augmented(x, A, lda, n, ni, bias, 1, B);
        x.unit_gram(st.blocks.data, g2, no, no, static_cast<const T*>(B.data()), n, k);
      }
      detail::poll();
    }
    check_statistics(x, stats, L, s0, n);
  });
  for (i64 l = 1; l <= L; ++l) {  // the symmetric sums were accumulated in their upper triangles
    const UnitStats<T>& st = stats[static_cast<size_t>(l - 1)];
    if (st.x_gram.data)
      x.emit_symmetric(st.x_gram.data, 1.0, VectorView<double>{st.x_gram.data, w[l - 1] * w[l - 1], 1, X::device}, 0,
                       w[l - 1], 1);
    if (st.blocks.data)
      x.emit_symmetric(st.blocks.data, 1.0, st.blocks, 0, lay.unit_width(l), w[l]);
  }
  if (!want_grad) return 0.0;
  emit_scaled(x, gacc, 1.0 / double(N), grad, P);
  check_emitted(x, static_cast<const T*>(grad.data), P, 1, grad.stride, 1, "the gradient");
  FISHERKIT_CHECK(detail::fk_isfinite(loss), "the mean negative log-likelihood overflows float64 summed over the ",
                  N, " inputs");
  return loss / double(N);
}

}  // namespace fisherkit::passes
