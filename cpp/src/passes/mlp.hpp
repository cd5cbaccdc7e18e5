// The per-sample passes of mlp.hpp written once: forward, log-likelihood, per-sample
// gradients, the batch NLL gradient, output Jacobians, JVPs and Fisher-vector products.
#pragma once
#include "fisherkit/detail/heads.hpp"
#include "network.hpp"

namespace fisherkit::passes {

/// Rows of parameter-gradient form: for each of `rows` backward rows r (row r of sample
/// r / M), the layer's block D_l[r] (x) abar_{r / M} written at
/// base + (r / M) ld + (r % M) mstride: weights u * ni + j, then the biases (when `bias`).
/// `stream`: the rows are a result for the caller (not read again by the pass).
/// The outer products D_l[r] (x) abar_{r / M} that outer_rows writes are finite: checked on
/// the factors, not by reading the streamed rows back. Their largest entry is exactly
/// max|D_l[r]| * max|abar| (rounded once, as the product itself is), so it overflows iff
/// one product does. rows = n M rows of D_l (no values each); the input row is row0 + r / M.
template <class X, class T>
void check_outer_rows(X& x, const T* Dl, i64 rows, i64 M, i64 no, const T* A, i64 lda, i64 ni, i64 row0,
                      const char* what) {
  const i64 bad = x.first_if(rows, [=] FISHERKIT_LAMBDA(i64 r) {
    T d = T(0), a = T(1);  // the bias column's input is 1
    for (i64 u = 0; u < no; ++u) {
      const T v = detail::fk_abs(Dl[r * no + u]);
      if (!detail::fk_isfinite(v)) return true;
      d = v > d ? v : d;
    }
    for (i64 j = 0; j < ni; ++j) {
      const T v = detail::fk_abs(A[(r / M) * lda + j]);
      if (!detail::fk_isfinite(v)) return true;
      a = v > a ? v : a;
    }
    return !detail::fk_isfinite(d * a);
  });
  FISHERKIT_CHECK(bad < 0, what, " overflows ", type_name<T>(), " at input row ", row0 + bad / M,
                  " (finite inputs and weights, but too large for this computation; rescale the inputs or the "
                  "weights", sizeof(T) == 4 ? ", or use a float64 model)" : ")");
}

template <class X, class T>
void outer_rows(X& x, T* base, i64 ld, i64 M, i64 mstride, const T* Dl, i64 rows, i64 no, const T* A, i64 lda,
                i64 ni, bool bias, bool stream = false) {
  x.outer_rows(base, ld, M, mstride, Dl, rows, no, A, lda, ni, bias, stream);
}

/// acc (layer l's P_l values, float64) += sum over the n rows r of D_l[r] (x) abar_r: the
/// weights by one GEMM D^T A, the biases as the column sums of D_l (`ones`: n ones, filled
/// once per chunk by the caller).
template <class X, class T>
void accumulate_vjp(X& x, double* acc, const T* Dl, i64 ldd, i64 no, const T* A, i64 lda, i64 n, i64 ni,
                    bool bias, const T* ones, Buf<X, T>& tmp) {
  accumulate<X, T>(x, acc, no, ni, ni, tmp, [&](auto* dst, i64 ld, T beta) {
    x.gemm(true, false, no, ni, n, T(1), Dl, ldd, A, lda, beta, dst, ld);
  });
  if (bias) add_column_sums(x, acc + no * ni, Dl, ldd, n, no, ones, tmp);
}

template <class X, class T>
void copy_rows(X& x, MatrixView<T> out, i64 r0, const T* src, i64 n, i64 C) {
  x.for_2d(n, C, [=] FISHERKIT_LAMBDA(i64 s, i64 c) { out.row(r0 + s)[c] = src[s * C + c]; });
}

template <class X, class T>
void forward_pass(X& x, const Mlp<T>& mlp, MatrixView<const T> Xm, MatrixView<T> out, i64 chunk) {
  check_layout<X>(mlp, Xm, "X");
  check_on<X>(out, "out");
  detail::check_shape(out, Xm.rows, mlp.output_dim(), "out");
  detail::check_rows_unit_stride(out, "out");
  const i64 N = Xm.rows, C = mlp.output_dim(), L = mlp.n_layers();
  chunk = chunk_size<X>(chunk, N, static_cast<i64>(sizeof(T)) * 3 * sum_widths(mlp));
  check_values(x, mlp, Xm);
  Forward<X, T> f(x, L);
  for_chunks<X>(N, chunk, [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, false, false, s0);
    copy_rows(x, out, s0, f.h(), n, C);
  });
}

template <class X, class T>
void log_likelihood_rows(X& x, const Head& head, const T* h, MatrixView<const T> y, VectorView<T> out, i64 s0,
                         i64 n, i64 C) {
  const HeadKind kind = head.kind;
  const T sig = T(head.sigma);
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) {
    out[s0 + s] = detail::head_log_likelihood(kind, sig, h + s * C, y.row(s0 + s), C);
  });
}

template <class X, class T>
void log_likelihood_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm,
                         MatrixView<const T> y, VectorView<T> out, i64 chunk) {
  check_labelled<X>(mlp, head, Xm, y, out);
  FISHERKIT_CHECK(out.size == Xm.rows, "argument 'out' must have ", Xm.rows, " entries, got ", out.size);
  const i64 N = Xm.rows, C = mlp.output_dim(), L = mlp.n_layers();
  chunk = chunk_size<X>(chunk, N, static_cast<i64>(sizeof(T)) * 3 * sum_widths(mlp));
  check_values(x, mlp, Xm, &head, y);
  Forward<X, T> f(x, L);
  for_chunks<X>(N, chunk, [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, false, false, s0);
    log_likelihood_rows(x, head, f.h(), y, out, s0, n, C);
    check_result_rows(x, static_cast<const T*>(out.data) + s0 * out.stride, n, 1, out.stride, s0,
                      "the log-likelihood");
  });
}

/// The NLL residuals eta - t(y) of the chunk's outputs h into rows m0 of M rows per sample
/// of D (n*M x C), and nll (n) = -log p(y|x) when not null.
template <class X, class T>
void residual_rows(X& x, const Head& head, const T* h, MatrixView<const T> yc, T* D, i64 M, i64 m0, T* nll,
                   i64 n, i64 C) {
  const HeadKind kind = head.kind;
  const T sig = T(head.sigma);
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) {
    detail::head_residual(kind, sig, h + s * C, yc.row(s), C, D + (s * M + m0) * C);
    if (nll) nll[s] = -detail::head_log_likelihood(kind, sig, h + s * C, yc.row(s), C);
  });
}

/// Sum of n values of executor memory, in double on the host.
template <class X, class T>
double host_sum(X& x, const T* v, i64 n, std::vector<T>& scratch) {
  scratch.resize(static_cast<size_t>(n));
  x.to_host(scratch.data(), v, n);
  double s = 0.0;
  for (const T e : scratch) s += double(e);
  return s;
}

template <class X, class T>
void per_sample_grads_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm,
                           MatrixView<const T> y, MatrixView<T> out, i64 chunk) {
  check_labelled<X>(mlp, head, Xm, y, out);
  detail::check_shape(out, Xm.rows, mlp.n_params(), "out");
  detail::check_rows_unit_stride(out, "out");
  const i64 N = Xm.rows, L = mlp.n_layers(), C = mlp.output_dim();
  // the chunk's output rows count too: a chunk of a wide network writes gigabytes otherwise,
  // and Ctrl-C waits for the chunk
  chunk = chunk_size<X>(chunk, N, static_cast<i64>(sizeof(T)) * (3 * sum_widths(mlp) + 2 * max_width(mlp) +
                                                                 mlp.n_params()));
  check_values(x, mlp, Xm, &head, y);
  Forward<X, T> f(x, L);
  Buf<X, T> D(x), buf(x);
  // Where the executor fuses them, the first layer's products X W_1^T of every chunk but the
  // first come with the stores of the chunk before (those of the first layer's rows dominate
  // the pass); a call of one chunk keeps BLAS's GEMM.
  constexpr bool fuse = X::template fuses_products<T>;
  for_chunks<X>(N, chunk, [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, false, s0, fuse && s0 > 0);
    D.resize(n * C);
    residual_rows(x, head, f.h(), y.rows_slice(s0, n), D.data(), 1, 0, static_cast<T*>(nullptr), n, C);
    check_result_rows(x, static_cast<const T*>(D.data()), n, C, C, s0, "the head's residual (mean minus label)");
    const i64 s1 = s0 + n, n1 = std::min(n, N - s1);  // the next chunk (chunks after the first are no larger)
    (void)n1;
    backward(x, mlp, f, D, buf, 1, [&](i64 l, const T* Dl) {
      T* rows = out.row(s0) + mlp.param_offset(l);
      if (fuse && l == 1) {  // into f.z[1]: this chunk no longer needs its own products
        if constexpr (fuse) {
          const MatrixView<const T> next = Xm.rows_slice(s1, n1);
          const auto& W1 = mlp.layer(1).weight;
          x.outer_rows_next(rows, out.row_stride, Dl, n, mlp.widths()[1], f.act(0), f.act_ld(mlp, 0),
                            mlp.widths()[0], mlp.has_bias(1), next.data, row_ld(next), W1.data, W1.row_stride,
                            f.z[1].data(), n1);
        }
      } else {
        outer_rows(x, rows, out.row_stride, 1, 0, Dl, n, mlp.widths()[l], f.act(l - 1), f.act_ld(mlp, l - 1),
                   mlp.widths()[l - 1], mlp.has_bias(l), true);
      }
      check_outer_rows(x, Dl, n, 1, mlp.widths()[l], f.act(l - 1), f.act_ld(mlp, l - 1), mlp.widths()[l - 1], s0,
                       "the per-sample gradient");
      detail::poll();
    });
  });
}

template <class X, class T>
double nll_gradient_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm,
                         MatrixView<const T> y, VectorView<T> out, i64 chunk) {
  check_labelled<X>(mlp, head, Xm, y, out);
  const i64 P = mlp.n_params(), N = Xm.rows, L = mlp.n_layers(), C = mlp.output_dim();
  FISHERKIT_CHECK(out.size == P, "argument 'out' must have ", P, " entries (the MLP's parameters), got ", out.size);
  chunk = chunk_size<X>(chunk, N, static_cast<i64>(sizeof(T)) * (3 * sum_widths(mlp) + 2 * max_width(mlp)));
  check_values(x, mlp, Xm, &head, y);
  Forward<X, T> f(x, L);
  Buf<X, T> D(x), buf(x), nll(x), tmp(x), ones(x);
  Buf<X, double> accb(x);
  double* acc = zeroed(x, accb, P);
  std::vector<T> host;
  double loss = 0.0;
  for_chunks_summed<X, T>(x, N, chunk, acc, P, "the gradient", [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, false, s0);
    D.resize(n * C);
    nll.resize(n);
    residual_rows(x, head, f.h(), y.rows_slice(s0, n), D.data(), 1, 0, nll.data(), n, C);
    check_result_rows(x, static_cast<const T*>(D.data()), n, C, C, s0, "the head's residual (mean minus label)");
    check_result_rows(x, static_cast<const T*>(nll.data()), n, 1, 1, s0, "the negative log-likelihood");
    loss += host_sum(x, static_cast<const T*>(nll.data()), n, host);
    fill_ones<X, T>(x, ones, n);
    backward(x, mlp, f, D, buf, 1, [&](i64 l, const T* Dl) {
      accumulate_vjp(x, acc + mlp.param_offset(l), Dl, mlp.widths()[l], mlp.widths()[l], f.act(l - 1),
                     f.act_ld(mlp, l - 1), n, mlp.widths()[l - 1], mlp.has_bias(l),
                     static_cast<const T*>(ones.data()), tmp);
    });
  });
  emit_scaled(x, acc, 1.0 / double(N), out, P);
  check_emitted(x, static_cast<const T*>(out.data), P, 1, out.stride, 1, "the gradient");
  FISHERKIT_CHECK(detail::fk_isfinite(loss), "the mean negative log-likelihood overflows float64 summed over the ",
                  N, " inputs");
  return loss / double(N);
}

template <class X, class T>
void output_jacobian_pass(X& x, const Mlp<T>& mlp, MatrixView<const T> Xm, MatrixView<T> out, i64 chunk) {
  check_layout<X>(mlp, Xm, "X");
  const i64 N = Xm.rows, C = mlp.output_dim(), P = mlp.n_params(), L = mlp.n_layers();
  check_on<X>(out, "out");
  detail::check_shape(out, N, C * P, "out");
  detail::check_rows_unit_stride(out, "out");
  chunk = chunk_size<X>(chunk, N, static_cast<i64>(sizeof(T)) * (3 * sum_widths(mlp) + 2 * C * max_width(mlp) +
                                                                 C * mlp.n_params()));
  check_values(x, mlp, Xm);
  Forward<X, T> f(x, L);
  Buf<X, T> D(x), buf(x);
  for_chunks<X>(N, chunk, [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, false, s0);
    D.resize(n * C * C);
    T* dp = D.data();
    x.for_2d(n * C, C, [=] FISHERKIT_LAMBDA(i64 r, i64 c) { dp[r * C + c] = r % C == c ? T(1) : T(0); });
    backward(x, mlp, f, D, buf, C, [&](i64 l, const T* Dl) {
      outer_rows(x, out.row(s0) + mlp.param_offset(l), out.row_stride, C, P, Dl, n * C, mlp.widths()[l],
                 f.act(l - 1), f.act_ld(mlp, l - 1), mlp.widths()[l - 1], mlp.has_bias(l), true);
      check_outer_rows(x, Dl, n * C, C, mlp.widths()[l], f.act(l - 1), f.act_ld(mlp, l - 1), mlp.widths()[l - 1], s0,
                       "the output Jacobian");
    });
  });
}

/// A direction v (P values, contiguous, finite) for the tangent passes.
template <class X, class T>
void check_direction(X& x, const Mlp<T>& mlp, MatrixView<const T> V, const char* name) {
  check_on<X>(V, name);
  FISHERKIT_CHECK(V.rows == mlp.n_params(), "argument '", name, "' must have ", mlp.n_params(),
                  " rows (one per parameter), got ", V.rows);
  FISHERKIT_CHECK(V.cols >= 1, "argument '", name, "' must have at least one column");
  check_finite(x, V, name);
}

template <class X, class T>
void jvp_pass(X& x, const Mlp<T>& mlp, MatrixView<const T> Xm, VectorView<const T> v, MatrixView<T> out1,
              MatrixView<T> out2, i64 chunk) {
  check_layout<X>(mlp, Xm, "X");
  const i64 N = Xm.rows, C = mlp.output_dim(), P = mlp.n_params(), L = mlp.n_layers();
  const bool second = out2.data != nullptr;
  check_on<X>(out1, "out1");
  detail::check_shape(out1, N, C, "out1");
  detail::check_rows_unit_stride(out1, "out1");
  if (second) {
    check_on<X>(out2, "out2");
    detail::check_shape(out2, N, C, "out2");
    detail::check_rows_unit_stride(out2, "out2");
  }
  FISHERKIT_CHECK(v.size == P, "argument 'v' must have ", P, " entries (one per parameter), got ", v.size);
  FISHERKIT_CHECK(v.stride == 1, "argument 'v' must be contiguous");
  chunk = chunk_size<X>(chunk, N, static_cast<i64>(sizeof(T)) * 8 * sum_widths(mlp));
  check_values(x, mlp, Xm);
  check_direction(x, mlp, MatrixView<const T>{v.data, P, 1, 1, 1, v.device}, "v");
  Forward<X, T> f(x, L);
  Tangent<X, T> t(x);
  Buf<X, T> d(x), dd(x);
  for_chunks<X>(N, chunk, [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, second, s0);
    tangent(x, mlp, f, v.data, 1, t, d, second ? &dd : static_cast<Buf<X, T>*>(nullptr));
    copy_rows(x, out1, s0, static_cast<const T*>(d.data()), n, C);
    check_result_rows(x, static_cast<const T*>(d.data()), n, C, C, s0, "the Jacobian-vector product");
    if (second) {
      copy_rows(x, out2, s0, static_cast<const T*>(dd.data()), n, C);
      check_result_rows(x, static_cast<const T*>(dd.data()), n, C, C, s0, "the second directional derivative");
    }
  });
}

/// D (n*K x C), row s*K + j = I(h_s) d[j*n + s]: the head's covariance applied to the
/// tangents of direction j (cov: n x C*C scratch).
template <class X, class T>
void covariance_times(X& x, const Head& head, const T* h, const T* d, T* D, T* cov, i64 n, i64 K, i64 C) {
  const HeadKind kind = head.kind;
  const T sig = T(head.sigma);
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) { detail::head_covariance(kind, sig, h + s * C, C, cov + s * C * C); });
  x.for_2d(n * K, C, [=] FISHERKIT_LAMBDA(i64 r, i64 a) {
    const i64 s = r / K, j = r % K;
    const T* I = cov + s * C * C + a * C;
    const T* dj = d + (j * n + s) * C;
    T acc = T(0);
    for (i64 b = 0; b < C; ++b) acc += I[b] * dj[b];
    D[r * C + a] = acc;
  });
}

template <class X, class T>
void fisher_vector_product_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, MatrixView<const T> V,
              MatrixView<T> out, i64 chunk) {
  check_layout<X>(mlp, Xm, "X");
  check_head(head, mlp.output_dim());
  const i64 N = Xm.rows, C = mlp.output_dim(), P = mlp.n_params(), L = mlp.n_layers(), K = V.cols;
  check_on<X>(out, "out");
  detail::check_shape(out, P, K, "out");
  check_values(x, mlp, Xm);
  check_direction(x, mlp, V, "v");  // the directions: fisher_vector_product's argument v
  chunk = chunk_size<X>(chunk, N, static_cast<i64>(sizeof(T)) * (3 * sum_widths(mlp) + 6 * K * max_width(mlp) +
                                                                 C * C));
  // the directions as K contiguous rows of P values
  Buf<X, T> Vt(x);
  Vt.resize(K * P);
  {
    T* vt = Vt.data();
    x.for_2d(K, P, [=] FISHERKIT_LAMBDA(i64 j, i64 i) { vt[j * P + i] = V(i, j); });
  }
  Forward<X, T> f(x, L);
  Tangent<X, T> t(x);
  Buf<X, T> d(x), D(x), buf(x), cov(x), tmp(x), ones(x);
  Buf<X, double> accb(x);
  double* acc = zeroed(x, accb, K * P);  // row j: the product with direction j
  for_chunks_summed<X, T>(x, N, chunk, acc, K * P, "the Fisher-vector product", [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, false, s0);
    tangent(x, mlp, f, static_cast<const T*>(Vt.data()), K, t, d, static_cast<Buf<X, T>*>(nullptr));
    D.resize(n * K * C);
    cov.resize(n * C * C);
    covariance_times(x, head, f.h(), static_cast<const T*>(d.data()), D.data(), cov.data(), n, K, C);
    check_result_rows(x, static_cast<const T*>(D.data()), n, K * C, K * C, s0,
                      "the head's covariance times the Jacobian-vector products");
    fill_ones<X, T>(x, ones, n);
    backward(x, mlp, f, D, buf, K, [&](i64 l, const T* Dl) {
      const i64 no = mlp.widths()[l];
      for (i64 j = 0; j < K; ++j)
        accumulate_vjp(x, acc + j * P + mlp.param_offset(l), Dl + j * no, K * no, no, f.act(l - 1),
                       f.act_ld(mlp, l - 1), n, mlp.widths()[l - 1], mlp.has_bias(l),
                       static_cast<const T*>(ones.data()), tmp);
      detail::poll();
    });
  });
  const double scale = 1.0 / double(N);
  const double* a = acc;
  x.for_2d(P, K, [=] FISHERKIT_LAMBDA(i64 i, i64 j) { out(i, j) = T(a[j * P + i] * scale); });
  check_emitted(x, static_cast<const T*>(out.data), P, K, out.row_stride, out.col_stride, "the Fisher-vector product");
}

}  // namespace fisherkit::passes
