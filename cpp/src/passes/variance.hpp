// The closed-form variance sums of variance.hpp written once (docs/maths/variance.rst#variance): per
// input, the backward columns G_l = dh/dz_l of every output and, for the Hessian estimator,
// the output-Hessian diagonals diag(T_l[c]); then per (input, unit) the scalars of
// detail/moments.hpp, accumulated like the Fisher's diagonal (one GEMM) or unit blocks (one
// weighted Gram per unit). Also the per-input Gram J J^T of the output Jacobian.
#pragma once
#include "fisherkit/detail/moments.hpp"
#include "fisherkit/variance.hpp"
#include "fisher.hpp"

namespace fisherkit::passes {

/// Backward columns of every output for a chunk: G[l] (n*C x n_l, row s*C + c) = dh_c/dz_l,
/// and with need_v, V[l] = (G_{l+1} W_{l+1}) o phi''(z_l) (same layout).
template <class X, class T>
struct Columns {
  std::vector<Buf<X, T>> G, V;
  Buf<X, T> gh;
  Columns(X& x, i64 L) : gh(x) {
    for (auto* v : {&G, &V}) {
      v->reserve(static_cast<size_t>(L + 1));
      for (i64 l = 0; l <= L; ++l) v->emplace_back(x);
    }
  }
};

template <class X, class T>
void identity_rows(X& x, T* g, i64 n, i64 C) {
  x.for_2d(n * C, C, [=] FISHERKIT_LAMBDA(i64 r, i64 c) { g[r * C + c] = r % C == c ? T(1) : T(0); });
}

template <class X, class T>
void column_step(X& x, T* G, T* V, const T* gh, const T* d1, const T* d2, i64 n, i64 C, i64 nl) {
  x.for_2d(n * C, nl, [=] FISHERKIT_LAMBDA(i64 r, i64 u) {
    const i64 i = r * nl + u, e = (r / C) * nl + u;
    G[i] = gh[i] * d1[e];
    if (V) V[i] = gh[i] * d2[e];
  });
}

template <class X, class T>
void backward_columns(X& x, const Mlp<T>& mlp, const Forward<X, T>& f, Columns<X, T>& c, bool need_v) {
  const i64 L = mlp.n_layers(), n = f.n, C = mlp.output_dim();
  const auto& w = mlp.widths();
  c.G[L].resize(n * C * C);
  identity_rows(x, c.G[L].data(), n, C);
  for (i64 l = L - 1; l >= 1; --l) {
    const auto& W = mlp.layer(l + 1).weight;
    const i64 nl = w[l];
    c.gh.resize(n * C * nl);
    x.gemm(false, false, n * C, nl, w[l + 1], T(1), static_cast<const T*>(c.G[l + 1].data()), w[l + 1], W.data,
           W.row_stride, T(0), c.gh.data(), nl);
    c.G[l].resize(n * C * nl);
    if (need_v) c.V[l].resize(n * C * nl);
    column_step(x, c.G[l].data(), need_v ? c.V[l].data() : static_cast<T*>(nullptr),
                static_cast<const T*>(c.gh.data()), static_cast<const T*>(f.d1[l].data()),
                need_v ? static_cast<const T*>(f.d2[l].data()) : static_cast<const T*>(nullptr), n, C, nl);
  }
}

/// Td[l] (n*C x n_l) = diag(T_l[c]) for every sample and output, l = 1..L-1:
/// sum_{m >= l} (A_{l->m} o A_{l->m})^T v_m(c) with v_m(c) = V_m[c] (variance.hpp).
template <class X, class T>
struct HessianDiagonals {
  std::vector<Buf<X, T>> Td;
  Buf<X, T> w2, tmp, A, Anext, A2;
  HessianDiagonals(X& x, i64 L) : w2(x), tmp(x), A(x), Anext(x), A2(x) {
    Td.reserve(static_cast<size_t>(L + 1));
    for (i64 l = 0; l <= L; ++l) Td.emplace_back(x);
  }
};

template <class X, class T>
void add_scaled_by_d1_squared(X& x, T* td, const T* tp, const T* d1, i64 n, i64 C, i64 nl) {
  x.for_2d(n * C, nl, [=] FISHERKIT_LAMBDA(i64 r, i64 u) {
    const T g = d1[(r / C) * nl + u];
    td[r * nl + u] += g * g * tp[r * nl + u];
  });
}

template <class X, class T>
void chain_start(X& x, T* ap, MatrixView<const T> W1, const T* d1, i64 n, i64 n1, i64 nl) {
  x.for_2d(n * n1, nl, [=] FISHERKIT_LAMBDA(i64 r, i64 u) {
    ap[r * nl + u] = W1(r % n1, u) * d1[(r / n1) * nl + u];
  });
}

template <class X, class T>
void hessian_diagonals(X& x, const Mlp<T>& mlp, const Forward<X, T>& f, const Columns<X, T>& c,
                       HessianDiagonals<X, T>& h) {
  const i64 L = mlp.n_layers(), n = f.n, C = mlp.output_dim();
  const auto& w = mlp.widths();
  for (i64 l = L - 1; l >= 1; --l) {
    const i64 nl = w[l];
    h.Td[l].resize(n * C * nl);
    T* td = h.Td[l].data();
    const T* vl = c.V[l].data();
    x.for_each(n * C * nl, [=] FISHERKIT_LAMBDA(i64 i) { td[i] = vl[i]; });  // the m = l term
    if (l + 1 <= L - 1) {
      // m = l + 1: A_{l->l+1} = W_{l+1} diag(phi'_l): (A o A)^T v = phi'^2 o (v (W o W))
      const MatrixView<const T> W = mlp.layer(l + 1).weight;
      const i64 nu = w[l + 1];
      h.w2.resize(nu * nl);
      squared_weights(x, h.w2.data(), W);
      h.tmp.resize(n * C * nl);
      x.gemm(false, false, n * C, nl, nu, T(1), static_cast<const T*>(c.V[l + 1].data()), nu,
             static_cast<const T*>(h.w2.data()), nl, T(0), h.tmp.data(), nl);
      add_scaled_by_d1_squared(x, td, static_cast<const T*>(h.tmp.data()), static_cast<const T*>(f.d1[l].data()), n,
                               C, nl);
    }
    if (l + 2 <= L - 1) {
      // m >= l + 2: A_{l->m} per sample, chained by batched GEMMs
      const MatrixView<const T> W1 = mlp.layer(l + 1).weight;
      const i64 n1 = w[l + 1];
      h.A.resize(n * n1 * nl);
      chain_start(x, h.A.data(), W1, static_cast<const T*>(f.d1[l].data()), n, n1, nl);
      for (i64 m = l + 2; m <= L - 1; ++m) {
        const auto& Wm = mlp.layer(m).weight;
        const i64 nm = w[m], np = w[m - 1];
        h.tmp.resize(n * np * nl);
        scale_chain_rows(x, h.tmp.data(), static_cast<const T*>(h.A.data()), static_cast<const T*>(f.d1[m - 1].data()),
                         n, np, nl);
        h.Anext.resize(n * nm * nl);
        x.gemm_batched(false, false, nm, nl, np, T(1), Wm.data, Wm.row_stride, 0, static_cast<const T*>(h.tmp.data()),
                       nl, np * nl, T(0), h.Anext.data(), nl, nm * nl, n);
        h.A.swap(h.Anext);
        h.A2.resize(n * nm * nl);
        elementwise_product(x, h.A2.data(), static_cast<const T*>(h.A.data()), static_cast<const T*>(h.A.data()),
                            n * nm * nl);
        x.gemm_batched(false, false, C, nl, nm, T(1), static_cast<const T*>(c.V[m].data()), nm, C * nm,
                       static_cast<const T*>(h.A2.data()), nl, nm * nl, T(1), td, nl, C * nl, n);
      }
    }
  }
}

/// src (n*C x nl, row s*C + c) into dst (n*nl x C, row s*nl + u): each unit's C values
/// contiguous for the per-unit contractions.
template <class X, class T>
void transpose_columns(X& x, T* dst, const T* src, i64 n, i64 C, i64 nl) {
  x.for_2d(n * nl, C, [=] FISHERKIT_LAMBDA(i64 q, i64 c) {
    const i64 s = q / nl, u = q % nl;
    dst[q * C + c] = src[(s * C + c) * nl + u];
  });
}

template <class X, class T>
void head_row_cache(X& x, const Head& head, const T* h, double* cache, i64 n, i64 C) {
  const HeadKind kind = head.kind;
  const double sigma = head.sigma;
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) {
    detail::make_head_row<T>(kind, sigma, detail::StridedVec<T>(h + s * C), C, cache + s * 2 * C);
  });
}

inline bool needs_hessian(Moment m) {
  return m == Moment::v2 || m == Moment::c12 || m == Moment::v2_lower || m == Moment::v2_upper;
}
inline bool is_bound(Moment m) { return static_cast<int>(m) >= static_cast<int>(Moment::v1_lower); }

/// Per (sample, unit) weights of a moment: wp (n x nl) from the transposed columns gt
/// (and tt, the transposed output-Hessian diagonals, or null). The scalar moments and the
/// bounds are separate loops so that each body inlines its own contractions.
template <class X, class T>
void moment_weights(X& x, const Head& head, Moment which, const T* h, const double* cache, const T* gt, const T* tt,
                    T* wp, i64 n, i64 C, i64 nl) {
  const HeadKind kind = head.kind;
  const double sigma = head.sigma;
  if (!is_bound(which)) {
    const int pick = which == Moment::v1 ? 0 : which == Moment::v2 ? 1 : which == Moment::c12 ? 2 : 3;
    x.for_2d(n, nl, [=] FISHERKIT_LAMBDA(i64 s, i64 u) {
      const auto row = detail::cached_head_row<T>(kind, sigma, detail::StridedVec<T>(h + s * C), C, cache + s * 2 * C);
      const detail::StridedVec<T> g(gt + (s * nl + u) * C, 1);
      const detail::StridedVec<T> td = tt ? detail::StridedVec<T>(tt + (s * nl + u) * C, 1) : detail::StridedVec<T>();
      const auto sc = detail::head_unit_scalars(row, g, td);
      wp[s * nl + u] = T(pick == 0 ? sc.r : pick == 1 ? sc.w : pick == 2 ? sc.c : sc.q * sc.q);
    });
    return;
  }
  x.for_2d(n, nl, [=] FISHERKIT_LAMBDA(i64 s, i64 u) {
    const auto row = detail::cached_head_row<T>(kind, sigma, detail::StridedVec<T>(h + s * C), C, cache + s * 2 * C);
    const detail::StridedVec<T> g(gt + (s * nl + u) * C, 1);
    const detail::StridedVec<T> td = tt ? detail::StridedVec<T>(tt + (s * nl + u) * C, 1) : detail::StridedVec<T>();
    const auto b = detail::head_unit_bounds(row, detail::head_spectral_constants(row), g, td);
    wp[s * nl + u] = T(which == Moment::v1_lower ? b.v1_lower
                       : which == Moment::v1_upper ? b.v1_upper
                       : which == Moment::v2_lower ? b.v2_lower : b.v2_upper);
  });
}


template <class X, class T>
void variance_sum_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, Moment which, Shape shape,
                   VectorView<T> out, i64 chunk) {
  check_layout<X>(mlp, Xm, "X");
  check_head(head, mlp.output_dim());
  FISHERKIT_CHECK(shape == Shape::diag || shape == Shape::unit, "variance_sum computes the 'diag' and 'unit' "
                  "shapes in the core; got '", shape_name(shape), "'");
  FISHERKIT_CHECK(!is_bound(which) || shape == Shape::diag, "the variance bounds are per parameter: shape 'diag'");
  check_on<X>(out, "out");
  const Layout& lay = mlp.layout();
  const i64 size = lay.size(shape), N = Xm.rows, L = mlp.n_layers(), C = mlp.output_dim();
  FISHERKIT_CHECK(out.size == size, "argument 'out' must have ", size, " entries for shape '", shape_name(shape),
                  "', got ", out.size);
  const auto& w = mlp.widths();
  const bool need_t = needs_hessian(which);
  const i64 mw = max_width(mlp);
  chunk = chunk_size<X>(chunk, N, static_cast<i64>(sizeof(T)) *
      (4 * sum_widths(mlp) + (need_t ? 3 : 1) * C * sum_widths(mlp) + 4 * C * mw + 3 * mw +
       (need_t ? 3 * mw * mw : 0) + 4 * C), shape == Shape::unit ? 4 : 1);
  check_values(x, mlp, Xm);
  Buf<X, T> own(x);
  Buf<X, double> cache(x);
  T* acc = result_accumulator(x, out, size, own);
  Forward<X, T> f(x, L);
  Columns<X, T> cols(x, L);
  HessianDiagonals<X, T> hd(x, need_t ? L : 0);
  Buf<X, T> gt(x), tt(x), weights(x), B(x), tmp(x);
  for_chunks_summed<X, T>(x, N, chunk, acc, size, "the variance sum", [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, need_t, s0);
    backward_columns(x, mlp, f, cols, need_t);
    if (need_t) hessian_diagonals(x, mlp, f, cols, hd);
    cache.resize(n * 2 * C);
    head_row_cache(x, head, f.h(), cache.data(), n, C);
    for (i64 l = 1; l <= L; ++l) {
      const i64 nl = w[l], ni = w[l - 1], k = lay.unit_width(l);
      gt.resize(n * nl * C);
      transpose_columns(x, gt.data(), static_cast<const T*>(cols.G[l].data()), n, C, nl);
      const bool with_t = need_t && l < L;
      if (with_t) {
        tt.resize(n * nl * C);
        transpose_columns(x, tt.data(), static_cast<const T*>(hd.Td[l].data()), n, C, nl);
      }
      weights.resize(n * nl);
      moment_weights(x, head, which, f.h(), static_cast<const double*>(cache.data()), static_cast<const T*>(gt.data()),
                     with_t ? static_cast<const T*>(tt.data()) : static_cast<const T*>(nullptr), weights.data(), n, C,
                     nl);
      augmented(x, f.act(l - 1), f.act_ld(mlp, l - 1), n, ni, mlp.has_bias(l), shape == Shape::diag ? 4 : 2, B);
      if (shape == Shape::diag)
        accumulate_diag(x, acc + lay.offset(shape, l), static_cast<const T*>(weights.data()), nl, nl,
                        static_cast<const T*>(B.data()), n, ni, k, tmp);
      else
        x.unit_gram(acc + lay.offset(shape, l), static_cast<const T*>(weights.data()), nl, nl,
                    static_cast<const T*>(B.data()), n, k);
      detail::poll();
    }
  });
  emit_result(x, mlp, shape, acc, 1.0, out);  // finite: the accumulator (in T) is, and is not scaled
}

/// norms[s] = |abar_s|^2 of a layer's augmented inputs.
template <class X, class T>
void augmented_norms(X& x, T* norms, const T* A, i64 lda, i64 n, i64 ni, bool bias) {
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) {
    T acc = bias ? T(1) : T(0);
    for (i64 j = 0; j < ni; ++j) acc += A[s * lda + j] * A[s * lda + j];
    norms[s] = acc;
  });
}

template <class X, class T>
void add_gram(X& x, MatrixView<T> out, i64 s0, const T* gram, const T* norms, i64 n, i64 CC, bool first) {
  x.for_2d(n, CC, [=] FISHERKIT_LAMBDA(i64 s, i64 i) {
    const T v = norms[s] * gram[s * CC + i];
    out.row(s0 + s)[i] = first ? v : out.row(s0 + s)[i] + v;
  });
}

template <class X, class T>
void output_gram_pass(X& x, const Mlp<T>& mlp, MatrixView<const T> Xm, MatrixView<T> out, i64 chunk) {
  check_layout<X>(mlp, Xm, "X");
  const i64 N = Xm.rows, C = mlp.output_dim(), L = mlp.n_layers();
  check_on<X>(out, "out");
  detail::check_shape(out, N, C * C, "out");
  detail::check_rows_unit_stride(out, "out");
  chunk = chunk_size<X>(chunk, N, static_cast<i64>(sizeof(T)) * (4 * sum_widths(mlp) + 2 * C * sum_widths(mlp) +
                                                                 2 * C * C));
  check_values(x, mlp, Xm);
  const auto& w = mlp.widths();
  Forward<X, T> f(x, L);
  Columns<X, T> cols(x, L);
  Buf<X, T> gram(x), norms(x);
  for_chunks<X>(N, chunk, [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, false, s0);
    backward_columns(x, mlp, f, cols, false);
    gram.resize(n * C * C);
    norms.resize(n);
    for (i64 l = 1; l <= L; ++l) {
      const i64 nl = w[l];
      const T* G = cols.G[l].data();
      x.gemm_batched(false, true, C, C, nl, T(1), G, nl, C * nl, G, nl, C * nl, T(0), gram.data(), C, C * C, n);
      augmented_norms(x, norms.data(), f.act(l - 1), f.act_ld(mlp, l - 1), n, w[l - 1], mlp.has_bias(l));
      add_gram(x, out, s0, static_cast<const T*>(gram.data()), static_cast<const T*>(norms.data()), n, C * C, l == 1);
    }
    check_result_rows(x, static_cast<const T*>(out.row(s0)), n, C * C, out.row_stride, s0, "the output Gram J J^T");
  });
}

}  // namespace fisherkit::passes
