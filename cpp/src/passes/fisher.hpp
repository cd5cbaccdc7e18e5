// The Fisher estimators in every shape (accumulate.hpp), and the per-input output Hessians,
// written once. Every shape is built from the backward rows D_l of the estimator's
// pseudo-outputs (docs/maths/variance.rst#variance-per-unit-scalars): diag and unit from the per-unit weights
// q_su = sum_m D_l[s M + m, u]^2 (minus diag(T_l) for the Hessian estimator; with one hidden
// layer the exact and Hessian q come from the head's covariance instead, with no rows:
// covariance_unit_weights), layer and full from the Gram of the pseudo-gradient rows
// D_l[r] (x) abar. The Hessian estimator
// subtracts the output-Hessian term of the contracted output taubar^T h: within each layer
// sum_s T_l[s] (x) abar abar^T (a weighted Gram per pair of units), and for "full" the
// cross-layer blocks of docs/maths/variance.rst#variance-layer-blocks
#pragma once
#include "fisherkit/detail/rng.hpp"
#include "mlp.hpp"

namespace fisherkit::passes {

// ------------------------------------------------------------------ pseudo-outputs

/// Rows of the estimator's pseudo-outputs per sample: C (exact, hessian), samples (score),
/// 1 (empirical).
template <class T>
i64 rows_per_sample(const Mlp<T>& mlp, const FisherOptions& opt) {
  switch (opt.estimator) {
    case Estimator::exact:
    case Estimator::hessian: return mlp.output_dim();
    case Estimator::score: return opt.samples;
    case Estimator::empirical: return 1;
  }
  return 1;
}

/// Top rows of the pseudo-outputs: the estimator's M = rows_per_sample rows of sample s at
/// rows s * Mt + m0 ... of D (n*Mt x C), and taubar (n x C: the sampled t - eta averaged
/// over draws) for the Hessian estimator. Draws are head_sample's: draw j of input idx0 + s
/// from the generator keyed (seed, idx0 + s, j). scr: n * (C*C + 2C) scratch. A null D
/// (the Hessian estimator's taubar alone) skips the exact rows.
template <class X, class T>
void top_rows(X& x, const Head& head, const FisherOptions& opt, i64 idx0, MatrixView<const T> yc, const T* h,
              i64 n, i64 C, i64 Mt, i64 m0, T* Dp, T* sp, T* tb) {
  const i64 per = C * C + 2 * C;
  const HeadKind kind = head.kind;
  const T sig = T(head.sigma);
  const Estimator est = opt.estimator;
  const i64 S = opt.samples;
  const std::uint64_t seed = opt.seed;
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) {
    const T* hs = h + s * C;
    T* Ds = Dp ? Dp + (s * Mt + m0) * C : nullptr;
    T* B = sp + s * per;
    T* yb = B + C * C;
    T* r = yb + C;
    if (est == Estimator::exact || est == Estimator::hessian) {
      if (Ds) {
        detail::head_sqrt_covariance(kind, sig, hs, C, B);
        for (i64 k = 0; k < C; ++k)
          for (i64 a = 0; a < C; ++a) Ds[k * C + a] = B[a * C + k];
      }
      if (est == Estimator::hessian) {
        T* t = tb + s * C;
        for (i64 a = 0; a < C; ++a) t[a] = T(0);
        for (i64 j = 0; j < S; ++j) {
          detail::Philox4x32 rng(seed, static_cast<std::uint64_t>(idx0 + s), static_cast<std::uint32_t>(j), 0);
          detail::head_sample(kind, sig, hs, C, rng, yb);
          detail::head_residual(kind, sig, hs, yb, C, r);
          for (i64 a = 0; a < C; ++a) t[a] -= r[a] / T(S);  // t - eta = -residual
        }
      }
    } else if (est == Estimator::score) {
      const T scale = T(1) / detail::fk_sqrt(T(S));
      for (i64 j = 0; j < S; ++j) {
        detail::Philox4x32 rng(seed, static_cast<std::uint64_t>(idx0 + s), static_cast<std::uint32_t>(j), 0);
        detail::head_sample(kind, sig, hs, C, rng, yb);
        detail::head_residual(kind, sig, hs, yb, C, Ds + j * C);
        for (i64 a = 0; a < C; ++a) Ds[j * C + a] *= scale;
      }
    } else {
      detail::head_residual(kind, sig, hs, yc.row(s), C, Ds);
    }
  });
}

/// The first non-finite top row (a head quantity that overflowed, e.g. exp(h) of a Poisson
/// head) is an error naming the input row.
template <class X, class T>
void check_rows_finite(X& x, const T* D, i64 n, i64 M, i64 C, i64 row0, const char* what) {
  const i64 bad = x.first_if(n * M * C, [=] FISHERKIT_LAMBDA(i64 i) { return !detail::fk_isfinite(D[i]); });
  FISHERKIT_CHECK(bad < 0, what, " is not finite at input row ", row0 + bad / (M * C),
                  " (the head's moments overflow ", sizeof(T) == 4 ? "float32" : "float64",
                  " at this output; rescale the inputs or use float64)");
}

// ------------------------------------------------------------------ the output-Hessian recursion

/// Per layer (l = 1..L-1) and sample: e_l = d(taubar^T h)/dz_l, ehat_l = d(taubar^T h)/da_l,
/// the diagonal td_l of T_l and, where kept, the full T_l (n x n_l x n_l).
template <class X, class T>
struct Hessian {
  std::vector<Buf<X, T>> e, ehat, td, Tf;
  Buf<X, T> scratch, w2;
  Hessian(X& x, i64 L) : scratch(x), w2(x) {
    for (auto* v : {&e, &ehat, &td, &Tf}) {
      v->reserve(static_cast<size_t>(L + 1));
      for (i64 l = 0; l <= L; ++l) v->emplace_back(x);
    }
  }
};

/// Whether T_l itself (not only its diagonal) is formed: always with keep_full, and in the
/// general branch of the recursion (1 < l < L-1), where T_l builds T_{l-1}.
inline bool keeps_full_t(i64 l, i64 L, bool keep_full) { return l < L && (keep_full || (l > 1 && l < L - 1)); }

template <class X, class T>
void elementwise_product(X& x, T* out, const T* a, const T* b, i64 n) {
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 i) { out[i] = a[i] * b[i]; });
}

template <class X, class T>
void squared_weights(X& x, T* w2, MatrixView<const T> W) {
  const i64 cols = W.cols;
  x.for_2d(W.rows, cols, [=] FISHERKIT_LAMBDA(i64 r, i64 c) {
    const T v = W(r, c);
    w2[r * cols + c] = v * v;
  });
}

/// T_l = D_l W_{l+1}^T T_{l+1} W_{l+1} D_l + diag(ehat_l o phi''(z_l)) for the contracted
/// output taubar^T h (taubar: n x C), from l = L-1 down to 1 (T_L = 0).
template <class X, class T>
void hessian_recursion(X& x, const Mlp<T>& mlp, const Forward<X, T>& f, const T* taubar, Hessian<X, T>& H,
                       bool keep_full) {
  const i64 L = mlp.n_layers(), n = f.n;
  const auto& w = mlp.widths();
  H.e[L].resize(n * w[L]);
  {
    T* eL = H.e[L].data();
    x.for_each(n * w[L], [=] FISHERKIT_LAMBDA(i64 i) { eL[i] = taubar[i]; });
  }
  for (i64 l = L - 1; l >= 1; --l) {
    const auto& W = mlp.layer(l + 1).weight;
    H.ehat[l].resize(n * w[l]);
    H.e[l].resize(n * w[l]);
    x.gemm(false, false, n, w[l], w[l + 1], T(1), static_cast<const T*>(H.e[l + 1].data()), w[l + 1], W.data,
           W.row_stride, T(0), H.ehat[l].data(), w[l]);
    elementwise_product(x, H.e[l].data(), static_cast<const T*>(H.ehat[l].data()),
                        static_cast<const T*>(f.d1[l].data()), n * w[l]);
  }
  for (i64 l = L - 1; l >= 1; --l) {
    const i64 nl = w[l], nu = w[l + 1];
    const MatrixView<const T> W = mlp.layer(l + 1).weight;
    const bool full = keeps_full_t(l, L, keep_full);
    H.td[l].resize(n * nl);
    if (full) H.Tf[l].resize(n * nl * nl);
    T* td = H.td[l].data();
    T* Tl = full ? H.Tf[l].data() : nullptr;
    if (l + 1 == L) {
      x.for_each(n * nl, [=] FISHERKIT_LAMBDA(i64 i) { td[i] = T(0); });
      if (full) x.for_each(n * nl * nl, [=] FISHERKIT_LAMBDA(i64 i) { Tl[i] = T(0); });
    } else if (l + 1 == L - 1) {
      // T_{l+1} is diagonal: diag(W^T diag(t) W) = t (W o W), one GEMM over the chunk
      H.w2.resize(nu * nl);
      squared_weights(x, H.w2.data(), W);
      x.gemm(false, false, n, nl, nu, T(1), static_cast<const T*>(H.td[l + 1].data()), nu,
             static_cast<const T*>(H.w2.data()), nl, T(0), td, nl);
      if (full) {
        // T_l = W^T diag(t) W per sample, one batched GEMM
        H.scratch.resize(n * nu * nl);
        T* tw = H.scratch.data();
        const T* tn = H.td[l + 1].data();
        x.for_2d(n * nu, nl, [=] FISHERKIT_LAMBDA(i64 r, i64 u) { tw[r * nl + u] = tn[r] * W(r % nu, u); });
        x.gemm_batched(true, false, nl, nl, nu, T(1), W.data, W.row_stride, 0, static_cast<const T*>(tw), nl,
                       nu * nl, T(0), Tl, nl, nl * nl, n);
      }
    } else {
      // general: T_l = W^T T_{l+1} W per sample (two GEMMs, the first over the whole chunk);
      // formed in full even when only its diagonal is kept
      H.scratch.resize(n * nu * nl);
      x.gemm(false, false, n * nu, nl, nu, T(1), static_cast<const T*>(H.Tf[l + 1].data()), nu, W.data,
             W.row_stride, T(0), H.scratch.data(), nl);
      H.Tf[l].resize(n * nl * nl);
      T* Tg = H.Tf[l].data();
      x.gemm_batched(true, false, nl, nl, nu, T(1), W.data, W.row_stride, 0,
                     static_cast<const T*>(H.scratch.data()), nl, nu * nl, T(0), Tg, nl, nl * nl, n);
      x.for_2d(n, nl, [=] FISHERKIT_LAMBDA(i64 s, i64 u) { td[s * nl + u] = Tg[s * nl * nl + u * (nl + 1)]; });
    }
    // scale by phi' on both sides, then + diag(ehat o phi'')
    const T* d1 = f.d1[l].data();
    const T* d2 = f.d2[l].data();
    const T* eh = H.ehat[l].data();
    x.for_each(n * nl, [=] FISHERKIT_LAMBDA(i64 i) { td[i] = td[i] * d1[i] * d1[i] + eh[i] * d2[i]; });
    if (full)
      x.for_2d(n * nl, nl, [=] FISHERKIT_LAMBDA(i64 r, i64 v) {
        const i64 s = r / nl, u = r % nl;
        T t = Tl[r * nl + v] * d1[s * nl + u] * d1[s * nl + v];
        if (u == v) t += eh[s * nl + u] * d2[s * nl + u];
        Tl[r * nl + v] = t;
      });
  }
}

/// Scatter the per-pair Grams tmp ((u, v) block of k x k, upper triangle) into the rows
/// and columns of a layer's parameters in dst (leading dimension ld), times sign; only
/// dst's upper triangle (local row <= local column) is written.
template <class X, class A>
void scatter_pair_grams(X& x, A* dst, i64 ld, const A* tmp, i64 no, i64 ni, i64 k, double sign) {
  const i64 D = no * k;
  x.for_2d(D, D, [=] FISHERKIT_LAMBDA(i64 a, i64 b) {
    const i64 u = a / k, j = a % k, v = b / k, kk = b % k;
    const i64 ra = Layout::local_index(u, j, no, ni), rb = Layout::local_index(v, kk, no, ni);
    if (ra > rb) return;
    const i64 lo = j < kk ? j : kk, hi = j < kk ? kk : j;
    dst[ra * ld + rb] += A(sign * tmp[((u * no + v) * k + lo) * k + hi]);
  });
}

/// dst (a layer's block, upper triangle) += sign * sum_s T_l[s] (x) abar_s abar_s^T: the
/// within-layer output-Hessian term, as one weighted Gram of abar per pair of units
/// (weights T_l[s, u, v]). pair: no^2 k^2 scratch of the accumulator's type.
template <class X, class T, class A>
void add_within_layer(X& x, const T* Tl, const T* aug, i64 n, i64 no, i64 ni, i64 k, A* dst, i64 ld, double sign,
                      Buf<X, A>& pair) {
  A* tmp = zeroed(x, pair, no * no * k * k);
  x.unit_gram(tmp, Tl, no * no, no * no, aug, n, k);
  scatter_pair_grams(x, dst, ld, static_cast<const A*>(tmp), no, ni, k, sign);
}

/// Cross-layer scratch: the per-sample chain A_{l->m} = dz_m / dz_l and its products.
template <class X, class T>
struct CrossLayer {
  Buf<X, T> A, Anext, scaled, K1;
  explicit CrossLayer(X& x) : A(x), Anext(x), scaled(x), K1(x) {}
};

/// One (l, m) block row update for the samples of the chunk: rows (u, j) of layer l, columns
/// (r, kk) of layer m, += sign sum_s abar_l[s, j] (K1_s[r, u] abar_m[s, kk] + e_m[s, r]
/// phi'_{m-1}[s, kk] A_s[kk, u]), A = A_{l->m-1}, K1 = T_m A_{l->m}.
template <class X, class T, class A>
void cross_rows(X& x, A* mat, i64 P, i64 off_l, i64 off_m, i64 nl, i64 ni_l, bool bias_l, i64 nm, i64 ni_m,
                bool bias_m, const T* al, i64 ldl, const T* am, i64 ldm, const T* K1, const T* em, const T* d1m,
                const T* Aprev, i64 n, double sign) {
  const i64 kl = ni_l + (bias_l ? 1 : 0), km = ni_m + (bias_m ? 1 : 0);
  x.for_each(nl * kl, [=] FISHERKIT_LAMBDA(i64 row) {
    const i64 u = row / kl, j = row % kl;
    A* dst = mat + (off_l + Layout::local_index(u, j, nl, ni_l)) * P + off_m;
    for (i64 s = 0; s < n; ++s) {
      const double aj = sign * (j < ni_l ? double(al[s * ldl + j]) : 1.0);
      if (aj == 0.0) continue;
      const T* k1 = K1 ? K1 + s * nm * nl : nullptr;
      const T* ap = Aprev + s * ni_m * nl;
      for (i64 r = 0; r < nm; ++r) {
        const double kr = k1 ? double(k1[r * nl + u]) : 0.0, er = double(em[s * nm + r]);
        for (i64 kk = 0; kk < km; ++kk) {
          double v = kr * (kk < ni_m ? double(am[s * ldm + kk]) : 1.0);
          if (kk < ni_m) v += er * double(d1m[s * ni_m + kk]) * double(ap[kk * nl + u]);
          dst[Layout::local_index(r, kk, nm, ni_m)] += A(aj * v);
        }
      }
    }
  });
}

template <class X, class T>
void identity_chain(X& x, T* A, i64 n, i64 nl) {
  x.for_2d(n * nl, nl, [=] FISHERKIT_LAMBDA(i64 r, i64 u) { A[r * nl + u] = (r % nl) == u ? T(1) : T(0); });
}

template <class X, class T>
void scale_chain_rows(X& x, T* out, const T* A, const T* d1, i64 n, i64 np, i64 nl) {
  x.for_2d(n * np, nl, [=] FISHERKIT_LAMBDA(i64 r, i64 u) { out[r * nl + u] = d1[r] * A[r * nl + u]; });
}

/// The cross-layer output-Hessian blocks (l < m) of docs/maths/variance.rst#variance-output-hessian for the `count`
/// samples of the chunk from s_begin on, times sign, into the upper triangle of the P x P
/// matrix `mat`.
template <class X, class T, class A>
void add_cross_layer(X& x, const Mlp<T>& mlp, const Forward<X, T>& f, const Hessian<X, T>& H, CrossLayer<X, T>& c,
                     A* mat, double sign, i64 s_begin, i64 count) {
  const i64 L = mlp.n_layers(), n = count, P = mlp.n_params();
  const auto& w = mlp.widths();
  for (i64 l = 1; l < L; ++l) {
    const i64 nl = w[l];
    c.A.resize(n * nl * nl);
    identity_chain(x, c.A.data(), n, nl);  // A_{l->l}
    for (i64 m = l + 1; m <= L; ++m) {
      const i64 nm = w[m], np = w[m - 1];
      const auto& Wm = mlp.layer(m).weight;
      const T* d1m = static_cast<const T*>(f.d1[m - 1].data()) + s_begin * np;
      // A_{l->m} = W_m diag(phi'_{m-1}) A_{l->m-1}, per sample
      c.scaled.resize(n * np * nl);
      scale_chain_rows(x, c.scaled.data(), static_cast<const T*>(c.A.data()), d1m, n, np, nl);
      c.Anext.resize(n * nm * nl);
      x.gemm_batched(false, false, nm, nl, np, T(1), Wm.data, Wm.row_stride, 0, static_cast<const T*>(c.scaled.data()),
                     nl, np * nl, T(0), c.Anext.data(), nl, nm * nl, n);
      const T* K1 = nullptr;
      if (m < L) {
        c.K1.resize(n * nm * nl);
        x.gemm_batched(false, false, nm, nl, nm, T(1), static_cast<const T*>(H.Tf[m].data()) + s_begin * nm * nm, nm,
                       nm * nm, static_cast<const T*>(c.Anext.data()), nl, nm * nl, T(0), c.K1.data(), nl, nm * nl, n);
        K1 = c.K1.data();
      }
      const i64 ldl = f.act_ld(mlp, l - 1), ldm = f.act_ld(mlp, m - 1);
      cross_rows(x, mat, P, mlp.param_offset(l), mlp.param_offset(m), nl, w[l - 1], mlp.has_bias(l), nm, np,
                 mlp.has_bias(m), f.act(l - 1) + s_begin * ldl, ldl, f.act(m - 1) + s_begin * ldm, ldm, K1,
                 static_cast<const T*>(H.e[m].data()) + s_begin * nm, d1m, static_cast<const T*>(c.A.data()), n, sign);
      c.A.swap(c.Anext);
    }
    detail::poll();
  }
}

// ------------------------------------------------------------------ the Fisher pass

/// q (n x no) = sum_m D_l[s M + m, u]^2, minus diag(T_l) (tdl, when not null).
template <class X, class T>
void unit_weights(X& x, T* q, const T* Dl, const T* tdl, i64 n, i64 M, i64 no) {
  x.for_2d_sum(
      n, no, M,
      [=] FISHERKIT_LAMBDA(i64 s, i64 m, i64 u) {
        const T d = Dl[(s * M + m) * no + u];
        return d * d;
      },
      [=] FISHERKIT_LAMBDA(i64 s, i64 u, T acc) { q[s * no + u] = tdl ? acc - tdl[s * no + u] : acc; });
}

/// The parts of the head's covariance I_s = diag(d_s) - [centred] d_s d_s^T per input
/// (head_covariance_parts) into d (n x C); returns whether they are centred. Parts that
/// overflow (exp(h) of a Poisson head) are an error naming the input row (row0 + s).
template <class X, class T>
bool covariance_parts(X& x, const Head& head, const T* h, i64 n, i64 C, i64 row0, T* d) {
  const HeadKind kind = head.kind;
  const T sig = T(head.sigma);
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) { detail::head_covariance_parts(kind, sig, h + s * C, C, d + s * C); });
  check_rows_finite(x, static_cast<const T*>(d), n, 1, C, row0, "the head's covariance");
  return detail::head_covariance_centred(kind);
}

/// The output layer's unit weights (unit_weights of the top rows B_s^T, B_s B_s^T = I_s)
/// from the parts d: the diagonal of I_s.
template <class X, class T>
void covariance_diagonal(X& x, T* q, bool centred, const T* d, i64 n, i64 C) {
  x.for_2d(n, C, [=] FISHERKIT_LAMBDA(i64 s, i64 c) {
    q[s * C + c] = detail::head_covariance_diagonal(centred, d + s * C, C, c);
  });
}

/// unit_weights of the last hidden layer (l = L - 1) for the exact and Hessian estimators,
/// from the parts d of the head's covariance (covariance_parts) instead of its n C backward
/// rows: q_su = phi'(z_su)^2 sum_c d_sc (W_cu - m_su)^2 with m_s = d_s^T W (W: the output
/// layer's C x no weights) when centred (then sum_c d_sc = 1), else 0; minus diag(T_l) (tdl,
/// when not null). These are phi'^2 (W^T I_s W)_uu, the sum unit_weights takes over the rows
/// (B_s^T W) o phi', for a GEMM of inner dimension C instead of one over n C rows.
template <class X, class T>
void covariance_unit_weights(X& x, T* q, bool centred, const T* d, MatrixView<const T> W, const T* d1,
                             const T* tdl, i64 n, Buf<X, T>& m) {
  const i64 C = W.rows, no = W.cols, ldw = W.row_stride;
  m.resize(n * no);
  if (centred)
    x.gemm(false, false, n, no, C, T(1), d, C, W.data, ldw, T(0), m.data(), no);
  else
    zero(x, m.data(), n * no);  // one loop for both: a branch inside it kept it from vectorising
  const T* mp = m.data();
  const T* Wp = W.data;
  x.for_2d_sum(
      n, no, C,
      [=] FISHERKIT_LAMBDA(i64 s, i64 c, i64 u) {
        const T e = Wp[c * ldw + u] - mp[s * no + u];
        return d[s * C + c] * e * e;
      },
      [=] FISHERKIT_LAMBDA(i64 s, i64 u, T acc) {
        const T g = d1[s * no + u];
        q[s * no + u] = tdl ? g * g * acc - tdl[s * no + u] : g * g * acc;
      });
}

/// Per-sample workspace of the Fisher pass, in values of T.
template <class T>
i64 fisher_per_sample(const Mlp<T>& mlp, const FisherOptions& opt) {
  const i64 L = mlp.n_layers(), C = mlp.output_dim(), P = mlp.n_params(), M = rows_per_sample(mlp, opt);
  const auto& w = mlp.widths();
  i64 backprop = 0;  // D and its backpropagated copy: M rows of the widths after the input
  for (i64 l = 1; l <= L; ++l) backprop = std::max(backprop, w[l]);
  i64 b = 4 * sum_widths(mlp) + 2 * M * backprop + C * C + 3 * C;
  i64 widest = 0;
  for (i64 l = 1; l <= L; ++l) widest = std::max(widest, mlp.layout().layer_params(l));
  if (opt.shape == Shape::full) b += M * P;
  if (opt.shape == Shape::layer) b += M * widest;
  if (opt.shape == Shape::diag || opt.shape == Shape::unit) b += 2 * (max_width(mlp) + 1);
  if (opt.estimator == Estimator::hessian) {
    const bool blocks = opt.shape == Shape::layer || opt.shape == Shape::full;
    for (i64 l = 1; l < L; ++l) {
      b += 3 * w[l];
      if (keeps_full_t(l, L, blocks)) b += w[l] * (w[l] + w[l + 1]);
    }
    if (opt.shape == Shape::full)
      for (i64 l = 1; l < L; ++l)
        for (i64 m = l + 1; m <= L; ++m) b = std::max(b, b + 4 * w[m] * w[l]);
  }
  return b;
}

/// The accumulator of a result, in the result's dtype: `out` itself when it has unit stride
/// (the emission is then in place), else `own`. Zeroed unless `zero_fill` is false (a body
/// of for_chunks_emitted overwrites it). Chunks add their BLAS sums into it, so a float32
/// result sums its chunks in float32 (no full-size float64 shadow; the accuracy against
/// float64 is measured in tests/python/test_fisher.py).
template <class X, class T>
T* result_accumulator(X& x, VectorView<T> out, i64 size, Buf<X, T>& own, bool zero_fill = true) {
  if (out.stride != 1) {
    if (zero_fill) return zeroed(x, own, size);
    own.resize(size);
    return own.data();
  }
  T* p = out.data;
  if (zero_fill) x.for_each(size, [=] FISHERKIT_LAMBDA(i64 i) { p[i] = T(0); });
  return p;
}

/// out = scale * acc in the layout of `shape`, each symmetric block mirrored from its upper
/// triangle (acc may be out's own storage).
template <class X, class T>
void emit_result(X& x, const Mlp<T>& mlp, Shape shape, const T* acc, double scale, VectorView<T> out) {
  const Layout& lay = mlp.layout();
  switch (shape) {
    case Shape::diag:
      emit_scaled(x, acc, scale, out, lay.size(shape));
      return;
    case Shape::full:
      x.emit_symmetric(acc, scale, out, 0, lay.n_params(), 1);
      return;
    case Shape::layer:
      for (i64 l = 1; l <= mlp.n_layers(); ++l)
        x.emit_symmetric(acc, scale, out, lay.offset(shape, l), lay.layer_params(l), 1);
      return;
    case Shape::unit:
      for (i64 l = 1; l <= mlp.n_layers(); ++l)
        x.emit_symmetric(acc, scale, out, lay.offset(shape, l), lay.unit_width(l), lay.dims(l).n_out);
      return;
    case Shape::kfac:
      break;
  }
  FISHERKIT_CHECK(false, "shape '", shape_name(shape), "' is not a Fisher-matrix layout");
}

/// Where each layer's block starts in the flat result of the options (-1: not computed):
/// the layout's offsets, or for a layer subset the selected blocks packed in order. Checks
/// the subset.
template <class T>
std::vector<i64> result_offsets(const Mlp<T>& mlp, const FisherOptions& opt, i64* size) {
  const Layout& lay = mlp.layout();
  const i64 L = mlp.n_layers();
  std::vector<i64> off(static_cast<size_t>(L + 1), -1);
  if (opt.layers.empty()) {
    for (i64 l = 1; l <= L; ++l) off[static_cast<size_t>(l)] = lay.offset(opt.shape, l);
    *size = lay.size(opt.shape);
    return off;
  }
  FISHERKIT_CHECK(opt.shape == Shape::layer, "argument 'layers' selects blocks of shape 'layer', not '",
                  shape_name(opt.shape), "'");
  i64 o = 0, prev = -1;
  for (i64 l : opt.layers) {
    FISHERKIT_CHECK(l > prev && l < L, "argument 'layers' must hold ascending layer indices in [0, ", L, "), got ", l,
                    l <= prev ? " after a larger or equal one" : "");
    prev = l;
    off[static_cast<size_t>(l + 1)] = o;
    o += lay.layer_params(l + 1) * lay.layer_params(l + 1);
  }
  *size = o;
  return off;
}

template <class T>
i64 fisher_result_size_of(const Mlp<T>& mlp, const FisherOptions& opt) {
  i64 size = 0;
  result_offsets(mlp, opt, &size);
  return size;
}

/// The layout checks of a pass over an estimator's rows (before any device work): X with
/// the weights, the head, the draws and, for the empirical estimator, the labels.
template <class X, class T>
void check_estimator_call(const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, MatrixView<const T> y,
                          const FisherOptions& opt) {
  check_layout<X>(mlp, Xm, "X");
  check_head(head, mlp.output_dim());
  check_draws(opt.samples, opt.index_offset);
  if (opt.estimator == Estimator::empirical) {
    FISHERKIT_CHECK(y.data != nullptr && y.rows > 0, "the empirical estimator needs labels: argument 'y' is missing");
    check_label_layout<X>(head, y, Xm.rows, mlp.output_dim(), "y");
  }
}

template <class X, class T>
void fisher_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, MatrixView<const T> y,
                 const FisherOptions& opt, VectorView<T> out) {
  check_estimator_call<X>(mlp, head, Xm, y, opt);
  FISHERKIT_CHECK(opt.shape != Shape::kfac, "shape 'kfac' is computed by kfac_factors");
  const bool empirical = opt.estimator == Estimator::empirical;
  check_on<X>(out, "out");
  const Layout& lay = mlp.layout();
  i64 size = 0;
  const std::vector<i64> boff = result_offsets(mlp, opt, &size);
  FISHERKIT_CHECK(out.size == size, "argument 'out' must have ", size, " entries for shape '",
                  shape_name(opt.shape), "'", opt.layers.empty() ? "" : " (the selected layers)", ", got ", out.size);
  const i64 N = Xm.rows, L = mlp.n_layers(), C = mlp.output_dim(), P = mlp.n_params();
  const auto& w = mlp.widths();
  const i64 M = rows_per_sample(mlp, opt);
  const Shape shape = opt.shape;
  const bool hess = opt.estimator == Estimator::hessian;
  const bool blocks = shape == Shape::layer || shape == Shape::full;
  // unit blocks: tall SYRKs pay (4x the budget); the diagonal: its GEMM operands stay in
  // cache (half the budget measured 4% faster on 784-128-10)
  const i64 chunk = chunk_size<X>(opt.chunk, N, fisher_per_sample(mlp, opt) * static_cast<i64>(sizeof(T)) *
                                                    (shape == Shape::diag ? 2 : 1),
                                  shape == Shape::unit ? 4 : 1);
  check_values(x, mlp, Xm, empirical ? &head : nullptr, y);
  // The symmetric shapes are emitted by the last chunk, block by block as their sums
  // complete (for_chunks_emitted): no zero fill, and no scan or emission pass of their own.
  const bool emitted = shape != Shape::diag;
  Buf<X, T> own(x), pair(x);
  T* acc = result_accumulator(x, out, size, own, !emitted);
  const double scale = 1.0 / double(N);
  Forward<X, T> f(x, L);
  Hessian<X, T> H(x, hess ? L : 0);
  CrossLayer<X, T> cross(x);
  Buf<X, T> D(x), buf(x), scr(x), taubar(x), q(x), B(x), rows(x), tmp(x), cov_d(x), cov_m(x);
  // exact and Hessian diag and unit with one hidden layer: its unit weights need no
  // backward rows (covariance_unit_weights)
  const bool direct = L == 2 && (shape == Shape::diag || shape == Shape::unit) &&
                      (opt.estimator == Estimator::exact || hess);
  auto body = [&](i64 s0, i64 n, ChunkRole role) {
    const T beta = role.first ? T(0) : T(1);
    bool finite = true;
    const MatrixView<const T> yc = empirical ? y.rows_slice(s0, n) : y;
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, hess, s0);
    bool centred = false;
    if (direct) {
      cov_d.resize(n * C);
      centred = covariance_parts(x, head, f.h(), n, C, s0, cov_d.data());
    }
    if (!direct || hess) {  // the top rows (direct: none) and, for the Hessian estimator, taubar
      if (!direct) D.resize(n * M * C);
      scr.resize(n * (C * C + 2 * C));
      taubar.resize(n * C);
      top_rows(x, head, opt, opt.index_offset + s0, yc, f.h(), n, C, M, 0, direct ? nullptr : D.data(), scr.data(),
               taubar.data());
      if (!direct) check_rows_finite(x, static_cast<const T*>(D.data()), n, M, C, s0, "the head's pseudo-output");
    }
    if (hess) hessian_recursion(x, mlp, f, static_cast<const T*>(taubar.data()), H, blocks);
    if (shape == Shape::full) rows.resize(n * M * P);
    // diag and unit: layer l's sums from its unit weights q (n x n_l)
    auto from_unit_weights = [&](i64 l) {
      const i64 no = w[l], ni = w[l - 1], k = lay.unit_width(l);
      augmented(x, f.act(l - 1), f.act_ld(mlp, l - 1), n, ni, mlp.has_bias(l), shape == Shape::diag ? 2 : 1, B);
      if (shape == Shape::diag) {
        accumulate_diag(x, acc + lay.offset(shape, l), static_cast<const T*>(q.data()), no, no,
                        static_cast<const T*>(B.data()), n, ni, k, tmp);
      } else {
        // emitting: groups of units small enough to be in cache when their blocks are mirrored
        const i64 group = role.emit ? std::max<i64>(1, X::emit_group_bytes / (k * k * i64(sizeof(T)))) : no;
        for (i64 u0 = 0; u0 < no; u0 += group) {
          const i64 nb = std::min(group, no - u0), off = lay.offset(shape, l) + u0 * k * k;
          x.unit_gram(acc + off, static_cast<const T*>(q.data()) + u0, no, nb, static_cast<const T*>(B.data()), n, k,
                      role.first);
          if (role.emit) finite = x.emit_symmetric(static_cast<const T*>(acc), scale, out, off, k, nb) && finite;
        }
      }
      detail::poll();
    };
    if (direct) {  // both layers' unit weights from the head's covariance (T_L = 0)
      q.resize(n * C);
      covariance_diagonal(x, q.data(), centred, static_cast<const T*>(cov_d.data()), n, C);
      from_unit_weights(L);
      q.resize(n * w[1]);
      covariance_unit_weights(x, q.data(), centred, static_cast<const T*>(cov_d.data()), mlp.layer(L).weight,
                              static_cast<const T*>(f.d1[1].data()),
                              hess ? static_cast<const T*>(H.td[1].data()) : nullptr, n, cov_m);
      from_unit_weights(1);
    } else backward(x, mlp, f, D, buf, M, [&](i64 l, const T* Dl) {
      const i64 no = w[l], ni = w[l - 1], k = lay.unit_width(l);
      const bool bias = mlp.has_bias(l);
      const T* A = f.act(l - 1);
      const i64 lda = f.act_ld(mlp, l - 1);
      if (shape == Shape::diag || shape == Shape::unit) {
        q.resize(n * no);
        unit_weights(x, q.data(), Dl, hess && l < L ? static_cast<const T*>(H.td[l].data()) : nullptr, n, M, no);
        from_unit_weights(l);
        return;
      }
      // layer / full: the Gram of the pseudo-gradient rows D_l (x) abar
      if (boff[static_cast<size_t>(l)] < 0) return;  // a layer outside the selected subset
      const i64 Dw = lay.layer_params(l);
      const i64 ldr = shape == Shape::full ? P : Dw;
      if (shape == Shape::layer) rows.resize(n * M * Dw);
      T* base = rows.data() + (shape == Shape::full ? mlp.param_offset(l) : 0);
      outer_rows(x, base, M * ldr, M, ldr, Dl, n * M, no, A, lda, ni, bias);
      if (shape == Shape::layer) {
        T* blk = acc + boff[static_cast<size_t>(l)];
        x.syrk(Dw, n * M, T(1), static_cast<const T*>(rows.data()), Dw, beta, blk, Dw);
        if (hess && l < L) {
          augmented(x, A, lda, n, ni, bias, 1, B);
          add_within_layer(x, static_cast<const T*>(H.Tf[l].data()), static_cast<const T*>(B.data()), n, no, ni, k,
                           blk, Dw, -1.0, pair);
        }
        if (role.emit)
          finite = x.emit_symmetric(static_cast<const T*>(acc), scale, out, boff[static_cast<size_t>(l)], Dw, 1) &&
                   finite;
      }
      detail::poll();
    });
    if (shape == Shape::full) {
      x.syrk(P, n * M, T(1), static_cast<const T*>(rows.data()), P, beta, acc, P);
      if (hess) {
        for (i64 l = 1; l < L; ++l) {
          augmented(x, f.act(l - 1), f.act_ld(mlp, l - 1), n, w[l - 1], mlp.has_bias(l), 1, B);
          const i64 off = mlp.param_offset(l);
          add_within_layer(x, static_cast<const T*>(H.Tf[l].data()), static_cast<const T*>(B.data()), n, w[l],
                           w[l - 1], lay.unit_width(l), acc + off * P + off, P, -1.0, pair);
        }
        add_cross_layer(x, mlp, f, H, cross, acc, -1.0, 0, n);
      }
      if (role.emit) finite = x.emit_symmetric(static_cast<const T*>(acc), scale, out, 0, P, 1);
    }
    return finite;
  };
  if (emitted) {
    for_chunks_emitted<X, T>(x, N, chunk, acc, size, "the Fisher sum", body);
  } else {
    for_chunks_summed<X, T>(x, N, chunk, acc, size, "the Fisher sum",
                            [&](i64 s0, i64 n) { body(s0, n, ChunkRole{false, false}); });
    emit_result(x, mlp, shape, acc, scale, out);  // finite: the accumulator (in T) is, scaled by 1 / N
  }
}

// ------------------------------------------------------------------ output Hessians

/// dst (rows of the P x P matrix of one sample, leading dimension P) += T_s (x) abar abar^T
/// over layer l's parameters: the within-layer block of one output Hessian.
template <class X, class T>
void within_layer_one(X& x, double* dst, i64 P, const T* Ts, const T* a, i64 no, i64 ni, bool bias) {
  const i64 k = ni + (bias ? 1 : 0), D = no * k;
  x.for_2d(D, D, [=] FISHERKIT_LAMBDA(i64 ra, i64 rb) {
    const i64 u = ra / k, j = ra % k, v = rb / k, kk = rb % k;
    const double aj = j < ni ? double(a[j]) : 1.0, ak = kk < ni ? double(a[kk]) : 1.0;
    dst[Layout::local_index(u, j, no, ni) * P + Layout::local_index(v, kk, no, ni)] +=
        double(Ts[u * no + v]) * aj * ak;
  });
}

template <class X, class T>
void unit_rows(X& x, T* taubar, i64 n, i64 C, i64 c) {
  x.for_2d(n, C, [=] FISHERKIT_LAMBDA(i64 s, i64 a) { taubar[s * C + a] = a == c ? T(1) : T(0); });
}

template <class X, class T>
void output_hessians_pass(X& x, const Mlp<T>& mlp, MatrixView<const T> Xm, MatrixView<T> out, i64 chunk) {
  check_layout<X>(mlp, Xm, "X");
  const i64 N = Xm.rows, C = mlp.output_dim(), P = mlp.n_params(), L = mlp.n_layers();
  check_on<X>(out, "out");
  detail::check_shape(out, N, C * P * P, "out");
  detail::check_rows_unit_stride(out, "out");
  FisherOptions opt;
  opt.estimator = Estimator::hessian;
  opt.shape = Shape::full;
  chunk = chunk_size<X>(chunk, N, fisher_per_sample(mlp, opt) * static_cast<i64>(sizeof(T)));
  check_values(x, mlp, Xm);
  const auto& w = mlp.widths();
  Forward<X, T> f(x, L);
  Hessian<X, T> H(x, L);
  CrossLayer<X, T> cross(x);
  Buf<X, T> taubar(x);
  Buf<X, double> mat(x);
  for_chunks<X>(N, chunk, [&](i64 s0, i64 n) {
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, true, s0);
    for (i64 c = 0; c < C; ++c) {
      // H_c is the Hessian of psi = e_c^T h: the recursion with taubar = e_c
      taubar.resize(n * C);
      unit_rows(x, taubar.data(), n, C, c);
      hessian_recursion(x, mlp, f, static_cast<const T*>(taubar.data()), H, true);
      for (i64 s = 0; s < n; ++s) {
        double* m = zeroed(x, mat, P * P);
        for (i64 l = 1; l < L; ++l) {
          const i64 off = mlp.param_offset(l);
          within_layer_one(x, m + off * P + off, P, static_cast<const T*>(H.Tf[l].data()) + s * w[l] * w[l],
                           f.act(l - 1) + s * f.act_ld(mlp, l - 1), w[l], w[l - 1], mlp.has_bias(l));
        }
        add_cross_layer(x, mlp, f, H, cross, m, 1.0, s, 1);
        x.emit_symmetric(static_cast<const double*>(m), 1.0,
                         VectorView<T>{out.row(s0 + s) + c * P * P, P * P, 1, out.device}, 0, P, 1);
      }
      detail::poll();
    }
    check_result_rows(x, static_cast<const T*>(out.row(s0)), n, C * P * P, out.row_stride, s0, "the output Hessian");
  });
}

}  // namespace fisherkit::passes
