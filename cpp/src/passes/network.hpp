// The MLP over one chunk of inputs, written once: forward (keeping z, phi', phi''), the
// backward pass of M rows per sample, and forward-mode tangents along k directions.
#pragma once
#include "common.hpp"
#include "fisherkit/detail/activations.hpp"

namespace fisherkit::passes {

/// The leading dimension of a view's rows for BLAS: a single row may come with any row
/// stride (NumPy gives x[None] stride 0), and BLAS needs one >= the row length.
template <class T>
i64 row_ld(MatrixView<const T> v) {
  return v.rows <= 1 ? v.cols : v.row_stride;
}

/// Per-chunk forward state, l = 1..L (z) and l = 1..L-1 (a, phi', phi''). Buffers are kept
/// between chunks (allocated once per call, grown when a chunk is larger).
template <class X, class T>
struct Forward {
  i64 n = 0;
  MatrixView<const T> x0;
  std::vector<Buf<X, T>> z, a, d1, d2;
  Forward(X& ex, i64 L) {
    for (auto* v : {&z, &a, &d1, &d2}) {
      v->reserve(static_cast<size_t>(L + 1));
      for (i64 l = 0; l <= L; ++l) v->emplace_back(ex);
    }
  }
  /// a_l (l = 0..L-1) as a pointer with leading dimension act_ld(l).
  const T* act(i64 l) const { return l == 0 ? x0.data : a[l].data(); }
  i64 act_ld(const Mlp<T>& m, i64 l) const {
    if (l == 0) return row_ld(x0);
    return m.widths()[l];
  }
  const T* h() const { return z.back().data(); }
};

/// Forward pass over the chunk Xc. need_d1 / need_d2: also keep phi' / phi''. Overflow in
/// the pass (inputs or weights too large) is an error naming the first input row. With
/// `z1_given`, f.z[1] already holds the first layer's products Xc W_1^T (n x n_1, computed by
/// the caller into the buffer of an earlier chunk at least as large), which the pass then
/// takes instead of its GEMM.
template <class X, class T>
void forward(X& x, const Mlp<T>& mlp, MatrixView<const T> Xc, Forward<X, T>& f, bool need_d1, bool need_d2,
             i64 row0 = 0, bool z1_given = false) {
  const i64 L = mlp.n_layers(), n = Xc.rows;
  const auto& w = mlp.widths();
  f.n = n;
  f.x0 = Xc;
  for (i64 l = 1; l <= L; ++l) {
    const i64 no = w[l], ni = w[l - 1];
    const auto& layer = mlp.layer(l);
    f.z[l].resize(n * no);
    if (l > 1 || !z1_given)
      x.gemm(false, true, n, no, ni, T(1), f.act(l - 1), f.act_ld(mlp, l - 1), layer.weight.data,
             layer.weight.row_stride, T(0), f.z[l].data(), no);
    const bool hidden = l < L;
    if (hidden) {
      f.a[l].resize(n * no);
      if (need_d1) f.d1[l].resize(n * no);
      if (need_d2) f.d2[l].resize(n * no);
    }
    x.bias_activation(hidden ? mlp.activation(l) : Activation::identity, f.z[l].data(),
                      mlp.has_bias(l) ? layer.bias.data : static_cast<const T*>(nullptr), layer.bias.stride,
                      hidden ? f.a[l].data() : nullptr, hidden && need_d1 ? f.d1[l].data() : nullptr,
                      hidden && need_d2 ? f.d2[l].data() : nullptr, n, no);
  }
  const T* h = f.h();
  const i64 C = w[L];
  const i64 bad = x.first_if(n * C, [=] FISHERKIT_LAMBDA(i64 i) { return !detail::fk_isfinite(h[i]); });
  FISHERKIT_CHECK(bad < 0, "the network output is not finite at input row ", row0 + bad / C,
                  " (overflow in the forward pass: inputs or weights too large for ",
                  sizeof(T) == 4 ? "float32" : "float64", ")");
}

/// rows x ni values B[r, j] *= d1[(r / M), j].
template <class X, class T>
void scale_rows(X& x, T* bp, const T* d1, i64 rows, i64 ni, i64 M) {
  x.for_2d(rows, ni, [=] FISHERKIT_LAMBDA(i64 r, i64 j) { bp[r * ni + j] *= d1[(r / M) * ni + j]; });
}

/// Backward pass of M rows per sample. On entry D holds n*M rows of C = n_L values (row
/// s*M + m belongs to sample s). For l = L..stop: visit(l, D_l) with D_l the (n*M x n_l)
/// derivatives with respect to z_l; then D_{l-1} = (D_l W_l) o phi'(z_{l-1}), and before the
/// product with phi', pre(l - 1, D_l W_l) (derivatives with respect to a_{l-1}). D and buf
/// are consumed.
template <class X, class T, class Visit, class Pre>
void backward(X& x, const Mlp<T>& mlp, const Forward<X, T>& f, Buf<X, T>& D, Buf<X, T>& buf, i64 M,
              Visit&& visit, Pre&& pre, i64 stop = 1) {
  const i64 L = mlp.n_layers(), rows = f.n * M;
  const auto& w = mlp.widths();
  for (i64 l = L; l >= stop; --l) {
    visit(l, static_cast<const T*>(D.data()));
    if (l == stop) break;
    const i64 no = w[l], ni = w[l - 1];
    const auto& W = mlp.layer(l).weight;
    buf.resize(rows * ni);
    x.gemm(false, false, rows, ni, no, T(1), D.data(), no, W.data, W.row_stride, T(0), buf.data(), ni);
    pre(l - 1, static_cast<const T*>(buf.data()));
    scale_rows(x, buf.data(), static_cast<const T*>(f.d1[l - 1].data()), rows, ni, M);
    D.swap(buf);
  }
}

template <class X, class T, class Visit>
void backward(X& x, const Mlp<T>& mlp, const Forward<X, T>& f, Buf<X, T>& D, Buf<X, T>& buf, i64 M,
              Visit&& visit, i64 stop = 1) {
  backward(x, mlp, f, D, buf, M, visit, [](i64, const T*) {}, stop);
}

/// Forward-mode tangents along K directions for one chunk whose forward state f holds phi'
/// (and phi'' when dd is wanted). Vt: the directions as K rows of P values (flat order).
/// On return d (K*n x C, row j*n + s) holds J_s v_j and, when dd is not null, dd the second
/// directional derivatives v_j^T H_{s,c} v_j.
template <class X, class T>
struct Tangent {
  Buf<X, T> da, dda, dz, ddz;
  explicit Tangent(X& x) : da(x), dda(x), dz(x), ddz(x) {}
};

template <class X, class T>
void tangent_bias(X& x, T* dz, const T* db, i64 P, i64 K, i64 n, i64 no) {
  x.for_2d(K * n, no, [=] FISHERKIT_LAMBDA(i64 r, i64 u) { dz[r * no + u] += db[(r / n) * P + u]; });
}

template <class X, class T>
void tangent_act(X& x, T* da, T* dda, const T* dz, const T* ddz, const T* g1, const T* g2, i64 K, i64 n, i64 no) {
  x.for_2d(K * n, no, [=] FISHERKIT_LAMBDA(i64 r, i64 u) {
    const i64 i = r * no + u, e = (r % n) * no + u;
    da[i] = g1[e] * dz[i];
    if (dda) dda[i] = g2[e] * dz[i] * dz[i] + g1[e] * ddz[i];
  });
}

template <class X, class T>
void tangent(X& x, const Mlp<T>& mlp, const Forward<X, T>& f, const T* Vt, i64 K, Tangent<X, T>& t,
             Buf<X, T>& d, Buf<X, T>* dd) {
  const i64 L = mlp.n_layers(), n = f.n, P = mlp.n_params();
  const auto& w = mlp.widths();
  bool first = true;  // the tangent of a_0 (the inputs) is zero
  for (i64 l = 1; l <= L; ++l) {
    const i64 no = w[l], ni = w[l - 1], off = mlp.param_offset(l);
    const auto& W = mlp.layer(l).weight;
    const T* dW = Vt + off;  // direction j: dW_l at Vt + j P + off, row-major no x ni
    Buf<X, T>& dz = l == L ? d : t.dz;
    dz.resize(K * n * no);
    // dz_j = a_{l-1} dW_j^T + da_j W^T + db_j
    x.gemm_batched(false, true, n, no, ni, T(1), f.act(l - 1), f.act_ld(mlp, l - 1), 0, dW, ni, P, T(0),
                   dz.data(), no, n * no, K);
    if (!first)
      x.gemm(false, true, K * n, no, ni, T(1), t.da.data(), ni, W.data, W.row_stride, T(1), dz.data(), no);
    if (mlp.has_bias(l)) tangent_bias(x, dz.data(), dW + no * ni, P, K, n, no);
    Buf<X, T>* ddz = dd ? (l == L ? dd : &t.ddz) : nullptr;
    if (ddz) {
      // ddz_j = 2 da_j dW_j^T + dda_j W^T
      ddz->resize(K * n * no);
      if (first) {
        T* p = ddz->data();
        x.for_each(K * n * no, [=] FISHERKIT_LAMBDA(i64 i) { p[i] = T(0); });
      } else {
        x.gemm_batched(false, true, n, no, ni, T(2), t.da.data(), ni, n * ni, dW, ni, P, T(0), ddz->data(), no,
                       n * no, K);
        x.gemm(false, true, K * n, no, ni, T(1), t.dda.data(), ni, W.data, W.row_stride, T(1), ddz->data(), no);
      }
    }
    if (l == L) break;
    // da = phi' o dz, dda = phi'' o dz^2 + phi' o ddz (into the buffers read by the next layer)
    t.da.resize(K * n * no);
    if (ddz) t.dda.resize(K * n * no);
    tangent_act(x, t.da.data(), ddz ? t.dda.data() : static_cast<T*>(nullptr), static_cast<const T*>(dz.data()),
                ddz ? static_cast<const T*>(ddz->data()) : static_cast<const T*>(nullptr),
                static_cast<const T*>(f.d1[l].data()),
                ddz ? static_cast<const T*>(f.d2[l].data()) : static_cast<const T*>(nullptr), K, n, no);
    first = false;
  }
}

}  // namespace fisherkit::passes
