// The portable passes: forward, backward, per-sample gradients, Fisher estimators and the
// closed-form variances written once against an executor X (host_exec.hpp for the CPU,
// cuda/exec.cuh for the GPU). An executor gives workspace buffers, element loops
// (for_each), GEMMs (gemm, gemm_batched), a search (first_if) and small copies to the
// host. Every loop body is a FISHERKIT_LAMBDA that captures only values and pointers
// (never `this`), and its element maths is the detail/*.hpp host-and-device code, so the
// host run of these passes (fisherkit::portable, tested against the CPU engine and the
// NumPy references) checks the GPU algorithms except for the executor's few primitives.
//
// Layout and normalisation are the CPU engine's (accumulate.hpp, variance.hpp); sums are
// accumulated in float64 in executor memory. Private to the core library.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../validate.hpp"
#include "fisherkit/accumulate.hpp"
#include "fisherkit/detail/activations.hpp"
#include "fisherkit/detail/heads.hpp"
#include "fisherkit/detail/hd.hpp"
#include "fisherkit/detail/math.hpp"
#include "fisherkit/detail/moments.hpp"
#include "fisherkit/detail/rng.hpp"
#include "fisherkit/variance.hpp"

namespace fisherkit::xpu {

using i64 = std::int64_t;

template <class X, class T>
using Buf = typename X::template Buf<T>;

// ------------------------------------------------------------------ checks

template <class X, class T>
void check_finite(X& x, MatrixView<const T> m, const char* name) {
  const i64 cols = m.cols;
  if (m.rows == 0 || cols == 0) return;
  const i64 bad = x.first_if(m.rows * cols, [=] FISHERKIT_LAMBDA(i64 i) {
    return !detail::fk_isfinite(m(i / cols, i % cols));
  });
  FISHERKIT_CHECK(bad < 0, "argument '", name, "' contains NaN or Inf (first at [", bad / cols, ", ",
                  bad % cols, "])");
}

template <class X, class V>
void check_on(const V& v, const char* name) {
  FISHERKIT_CHECK(v.device == X::device, "argument '", name, "' is in ",
                  v.device == Device::cuda ? "GPU" : "host", " memory, but this entry point takes ",
                  X::device == Device::cuda ? "GPU" : "host", " memory");
}

/// Inputs X: on the executor's device with the weights, shape and layout (no device work).
template <class X, class T>
void check_layout(const Mlp<T>& mlp, MatrixView<const T> Xm, const char* name) {
  check_on<X>(Xm, name);
  detail::check_input_layout(mlp, Xm, name);
}

template <class X, class T>
void check_label_layout(const Head& head, MatrixView<const T> y, i64 N, i64 C, const char* name) {
  check_on<X>(y, name);
  fisherkit::check_label_layout(head, y, N, C, name);
}

/// After every layout check: start the executor, then check values on the device: X and
/// the weights finite, and (labels != nullptr) the labels in the head's support.
template <class X, class T>
void check_values(X& x, const Mlp<T>& mlp, MatrixView<const T> Xm, const Head* labels_of = nullptr,
                  MatrixView<const T> y = {}) {
  x.start();
  x.check_device_of(Xm.data, "X");
  x.check_device_of(mlp.layer(1).weight.data, "layers[0].weight");
  check_finite(x, Xm, "X");
  for (i64 l = 1; l <= mlp.n_layers(); ++l) {
    const auto& W = mlp.layer(l).weight;
    const auto& b = mlp.layer(l).bias;
    const std::string wn = "layers[" + std::to_string(l - 1) + "].weight";
    const std::string bn = "layers[" + std::to_string(l - 1) + "].bias";
    check_finite(x, W, wn.c_str());
    check_finite(x, MatrixView<const T>{b.data, b.size, 1, b.stride, 1, b.device}, bn.c_str());
  }
  if (!labels_of) return;
  const HeadKind kind = labels_of->kind;
  const i64 C = mlp.output_dim();
  const i64 bad = x.first_if(y.rows, [=] FISHERKIT_LAMBDA(i64 n) {
    return !detail::head_label_valid(kind, y.row(n), C);
  });
  if (bad >= 0) {
    T first;
    x.to_host(&first, y.row(bad), 1);
    fail_label(*labels_of, "y", bad, double(first), C);
  }
}

template <class X, class V>
void check_out(const V& v, const char* name) {
  check_on<X>(v, name);
}

// ------------------------------------------------------------------ forward / backward

inline i64 pick_chunk(i64 requested, i64 n, i64 per_sample, i64 budget = i64(64) << 20) {
  if (requested > 0) return std::max<i64>(1, std::min(requested, std::max<i64>(n, 1)));
  const i64 c = budget / std::max<i64>(per_sample, 1);
  return std::max<i64>(16, std::min<i64>({c, 8192, std::max<i64>(n, 1)}));
}

template <class T>
i64 sum_widths(const Mlp<T>& m) {
  i64 s = 0;
  for (auto w : m.widths()) s += w;
  return s;
}
template <class T>
i64 max_width(const Mlp<T>& m) {
  return *std::max_element(m.widths().begin(), m.widths().end());
}

/// Per-chunk forward state, l = 1..L (z) and l = 1..L-1 (a, phi', phi'').
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
  const T* act(i64 l) const { return l == 0 ? x0.data : a[l].data(); }
  i64 act_ld(const Mlp<T>& m, i64 l) const {
    if (l == 0) return x0.rows <= 1 ? x0.cols : x0.row_stride;
    return m.widths()[l];
  }
};

template <class X, class T>
void forward(X& x, const Mlp<T>& mlp, MatrixView<const T> Xc, Forward<X, T>& f, bool need_d1,
             bool need_d2) {
  const i64 L = mlp.n_layers(), n = Xc.rows;
  const auto& w = mlp.widths();
  f.n = n;
  f.x0 = Xc;
  for (i64 l = 1; l <= L; ++l) {
    const i64 no = w[l], ni = w[l - 1];
    const auto& layer = mlp.layer(l);
    f.z[l].resize(n * no);
    x.gemm(false, true, n, no, ni, T(1), f.act(l - 1), f.act_ld(mlp, l - 1), layer.weight.data,
           layer.weight.row_stride, T(0), f.z[l].data(), no);
    const bool hidden = l < L;
    if (hidden) {
      f.a[l].resize(n * no);
      if (need_d1) f.d1[l].resize(n * no);
      if (need_d2) f.d2[l].resize(n * no);
    }
    const Activation act = hidden ? mlp.activation(l) : Activation::identity;
    T* zp = f.z[l].data();
    T* ap = hidden ? f.a[l].data() : nullptr;
    T* d1p = hidden && need_d1 ? f.d1[l].data() : nullptr;
    T* d2p = hidden && need_d2 ? f.d2[l].data() : nullptr;
    const T* bp = layer.bias.data;
    const i64 bs = layer.bias.stride;
    x.for_each(n * no, [=] FISHERKIT_LAMBDA(i64 i) {
      const T zi = zp[i] + bp[(i % no) * bs];
      zp[i] = zi;
      if (ap) {
        T fv, g1, g2;
        detail::activation_eval(act, zi, &fv, &g1, &g2);
        ap[i] = fv;
        if (d1p) d1p[i] = g1;
        if (d2p) d2p[i] = g2;
      }
    });
  }
  const T* h = f.z[L].data();
  const i64 bad = x.first_if(n * w[L], [=] FISHERKIT_LAMBDA(i64 i) { return !detail::fk_isfinite(h[i]); });
  FISHERKIT_CHECK(bad < 0, "the network output is not finite (overflow in the forward pass: inputs "
                  "or weights too large for ", sizeof(T) == 4 ? "float32" : "float64", ")");
}

/// rows x ni values B[r, j] *= d1[r / M, j] (nvcc: no extended lambda may live in a template
/// instantiated with a local lambda type, so the loop bodies of backward and
/// gemm_accumulate live in these helpers).
template <class X, class T>
void scale_rows(X& x, T* bp, const T* d1, i64 rows, i64 ni, i64 M) {
  x.for_each(rows * ni, [=] FISHERKIT_LAMBDA(i64 i) {
    const i64 r = i / ni, j = i % ni;
    bp[i] *= d1[(r / M) * ni + j];
  });
}

/// acc[i / cols, i % cols] (leading dimension ld_acc) += t[i], i < rows * cols.
template <class X, class T>
void add_into(X& x, double* acc, const T* t, i64 rows, i64 cols, i64 ld_acc) {
  x.for_each(rows * cols, [=] FISHERKIT_LAMBDA(i64 i) {
    acc[(i / cols) * ld_acc + i % cols] += double(t[i]);
  });
}

/// Backward pass of M rows per sample (engine.hpp's backward_chunk): visit(l, D_l) for
/// l = L..stop, D_{l-1} = (D_l W_l) o phi'(z_{l-1}).
template <class X, class T, class Visit>
void backward(X& x, const Mlp<T>& mlp, const Forward<X, T>& f, Buf<X, T>& D, Buf<X, T>& buf, i64 M,
              Visit&& visit, i64 stop = 1) {
  const i64 L = mlp.n_layers(), rows = f.n * M;
  const auto& w = mlp.widths();
  for (i64 l = L; l >= stop; --l) {
    visit(l, static_cast<const T*>(D.data()));
    if (l == stop) break;
    const i64 no = w[l], ni = w[l - 1];
    const auto& W = mlp.layer(l).weight;
    buf.resize(rows * ni);
    x.gemm(false, false, rows, ni, no, T(1), D.data(), no, W.data, W.row_stride, T(0), buf.data(), ni);
    scale_rows(x, buf.data(), static_cast<const T*>(f.d1[l - 1].data()), rows, ni, M);
    D.swap(buf);
  }
}

// ------------------------------------------------------------------ accumulation helpers

/// acc (float64, executor memory) += the rows x cols result of `call(dst, ld, beta)` computed
/// in T: straight into acc for double, through the T scratch for float.
template <class X, class T, class Call>
void gemm_accumulate(X& x, double* acc, i64 rows, i64 cols, i64 ld_acc, Buf<X, T>& tmp, Call&& call) {
  if constexpr (std::is_same_v<T, double>) {
    call(acc, ld_acc, T(1));
  } else {
    tmp.resize(rows * cols);
    call(tmp.data(), cols, T(0));
    add_into(x, acc, static_cast<const T*>(tmp.data()), rows, cols, ld_acc);
  }
}

/// B (n x (ni+1)) = abar^power with abar = [a, 1] the augmented input (power 1, 2 or 4).
template <class X, class T>
void augmented(X& x, const T* A, i64 lda, i64 n, i64 ni, int power, Buf<X, T>& B) {
  const i64 k = ni + 1;
  B.resize(n * k);
  T* bp = B.data();
  x.for_each(n * k, [=] FISHERKIT_LAMBDA(i64 i) {
    const i64 s = i / k, j = i % k;
    T v = j < ni ? A[s * lda + j] : T(1);
    if (power >= 2) v = v * v;
    if (power == 4) v = v * v;
    bp[i] = v;
  });
}

/// Diagonal of one layer: acc[u ni + j] += sum_s w[s,u] B[s,j], acc[no ni + u] += sum_s w[s,u]
/// (B's last column is 1) — one GEMM of the per-unit weights against B.
template <class X, class T>
void accumulate_diag(X& x, double* acc, const T* w, i64 no, const T* B, i64 n, i64 ni, Buf<X, T>& tmp) {
  const i64 k = ni + 1;
  tmp.resize(no * k);
  T* t = tmp.data();
  x.gemm(true, false, no, k, n, T(1), w, no, B, k, T(0), t, k);
  x.for_each(no * k, [=] FISHERKIT_LAMBDA(i64 i) {
    const i64 u = i / k, j = i % k;
    acc[j < ni ? u * ni + j : no * ni + u] += double(t[i]);
  });
}

/// Unit blocks of one layer: acc + u k^2 += sum_s w[s,u] B_s B_s^T, as strided-batched GEMMs
/// B^T (w_u o B) over groups of units whose weighted copies fit in `budget` bytes.
template <class X, class T>
void accumulate_unit(X& x, double* acc, const T* w, i64 no, const T* B, i64 n, i64 k, Buf<X, T>& wb,
                     Buf<X, T>& tmp, i64 budget = i64(256) << 20) {
  const i64 per_unit = n * k * static_cast<i64>(sizeof(T));
  const i64 ub = std::max<i64>(1, std::min<i64>(no, budget / std::max<i64>(per_unit, 1)));
  for (i64 u0 = 0; u0 < no; u0 += ub) {
    const i64 nb = std::min(ub, no - u0);
    wb.resize(nb * n * k);
    T* wp = wb.data();
    const i64 nk = n * k;
    x.for_each(nb * nk, [=] FISHERKIT_LAMBDA(i64 i) {
      const i64 b = i / nk, r = i % nk;
      wp[i] = w[(r / k) * no + u0 + b] * B[r];
    });
    double* dst = acc + u0 * k * k;
    gemm_accumulate<X, T>(x, dst, nb * k, k, k, tmp, [&](auto* out, i64 ld, T beta) {
      x.gemm_batched(true, false, k, k, n, T(1), B, k, 0, static_cast<const T*>(wp), k, nk, beta, out,
                     ld, k * ld, nb);
    });
  }
}

/// out[off + i m + j] = scale * acc[off + min(i,j) m + max(i,j)]: a block mirrored from its
/// upper triangle, converted to T.
template <class X, class T>
void emit_symmetric(X& x, const double* acc, double scale, VectorView<T> out, i64 off, i64 m, i64 count = 1) {
  const i64 mm = m * m;
  x.for_each(count * mm, [=] FISHERKIT_LAMBDA(i64 i) {
    const i64 b = i / mm, r = i % mm, ii = r / m, jj = r % m;
    const i64 src = off + b * mm + (ii <= jj ? ii * m + jj : jj * m + ii);
    out[off + i] = T(acc[src] * scale);
  });
}

/// Zeroed float64 accumulator of `size` values in executor memory.
template <class X>
double* zeroed(X& x, Buf<X, double>& acc, i64 size) {
  acc.resize(size);
  double* p = acc.data();
  x.for_each(size, [=] FISHERKIT_LAMBDA(i64 i) { p[i] = 0.0; });
  return p;
}

// ------------------------------------------------------------------ MLP passes

/// The layout checks of a pass over labelled data: X with the weights, the head, y, out.
template <class X, class T, class Out>
void check_labelled(const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, MatrixView<const T> y,
                    const Out& out) {
  check_layout<X>(mlp, Xm, "X");
  check_head(head, mlp.output_dim());
  check_label_layout<X>(head, y, Xm.rows, mlp.output_dim(), "y");
  check_out<X>(out, "out");
}


template <class X, class T>
void forward_pass(X& x, const Mlp<T>& mlp, MatrixView<const T> Xm, MatrixView<T> out, i64 chunk) {
  check_layout<X>(mlp, Xm, "X");
  check_out<X>(out, "out");
  detail::check_shape(out, Xm.rows, mlp.output_dim(), "out");
  const i64 N = Xm.rows, C = mlp.output_dim(), L = mlp.n_layers();
  chunk = pick_chunk(chunk, N, static_cast<i64>(sizeof(T)) * 3 * sum_widths(mlp));
  check_values(x, mlp, Xm);
  Forward<X, T> f(x, L);
  for (i64 s0 = 0; s0 < N; s0 += chunk) {
    const i64 n = std::min(chunk, N - s0);
    forward(x, mlp, Xm.rows_slice(s0, n), f, false, false);
    const T* h = f.z[L].data();
    x.for_each(n * C, [=] FISHERKIT_LAMBDA(i64 i) { out(s0 + i / C, i % C) = h[i]; });
  }
}

template <class X, class T>
void log_likelihood_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm,
                         MatrixView<const T> y, VectorView<T> out, i64 chunk) {
  check_labelled<X>(mlp, head, Xm, y, out);
  FISHERKIT_CHECK(out.size == Xm.rows, "argument 'out' must have ", Xm.rows, " entries, got ", out.size);
  const i64 N = Xm.rows, C = mlp.output_dim(), L = mlp.n_layers();
  chunk = pick_chunk(chunk, N, static_cast<i64>(sizeof(T)) * 3 * sum_widths(mlp));
  check_values(x, mlp, Xm, &head, y);
  Forward<X, T> f(x, L);
  const HeadKind kind = head.kind;
  const T sig = T(head.sigma);
  for (i64 s0 = 0; s0 < N; s0 += chunk) {
    const i64 n = std::min(chunk, N - s0);
    forward(x, mlp, Xm.rows_slice(s0, n), f, false, false);
    const T* h = f.z[L].data();
    x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) {
      out[s0 + s] = detail::head_log_likelihood(kind, sig, h + s * C, y.row(s0 + s), C);
    });
  }
}

/// Forward a chunk and fill D (n x C) with the NLL residuals eta - t(y) and nll (n) with
/// -log p(y|x) per sample.
template <class X, class T>
void residuals(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xc, MatrixView<const T> yc,
               Forward<X, T>& f, Buf<X, T>& D, Buf<X, T>& nll) {
  const i64 n = Xc.rows, C = mlp.output_dim();
  forward(x, mlp, Xc, f, true, false);
  const T* h = f.z[mlp.n_layers()].data();
  D.resize(n * C);
  nll.resize(n);
  T* Dp = D.data();
  T* lp = nll.data();
  const HeadKind kind = head.kind;
  const T sig = T(head.sigma);
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) {
    detail::head_residual(kind, sig, h + s * C, yc.row(s), C, Dp + s * C);
    lp[s] = -detail::head_log_likelihood(kind, sig, h + s * C, yc.row(s), C);
  });
}

template <class X, class T>
void per_sample_grads_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm,
                           MatrixView<const T> y, MatrixView<T> out, i64 chunk) {
  check_labelled<X>(mlp, head, Xm, y, out);
  detail::check_shape(out, Xm.rows, mlp.n_params(), "out");
  const i64 N = Xm.rows, L = mlp.n_layers();
  chunk = pick_chunk(chunk, N, static_cast<i64>(sizeof(T)) * (3 * sum_widths(mlp) + 2 * max_width(mlp)));
  check_values(x, mlp, Xm, &head, y);
  Forward<X, T> f(x, L);
  Buf<X, T> D(x), buf(x), nll(x);
  for (i64 s0 = 0; s0 < N; s0 += chunk) {
    const i64 n = std::min(chunk, N - s0);
    residuals(x, mlp, head, Xm.rows_slice(s0, n), y.rows_slice(s0, n), f, D, nll);
    backward(x, mlp, f, D, buf, 1, [&](i64 l, const T* Dl) {
      const i64 no = mlp.widths()[l], ni = mlp.widths()[l - 1], k = ni + 1, off = mlp.param_offset(l);
      const T* A = f.act(l - 1);
      const i64 lda = f.act_ld(mlp, l - 1);
      x.for_each(n * no * k, [=] FISHERKIT_LAMBDA(i64 i) {
        const i64 s = i / (no * k), r = i % (no * k), u = r / k, j = r % k;
        const T d = Dl[s * no + u];
        if (j < ni)
          out(s0 + s, off + u * ni + j) = d * A[s * lda + j];
        else
          out(s0 + s, off + no * ni + u) = d;
      });
    });
  }
}

template <class X, class T>
double nll_gradient_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm,
                         MatrixView<const T> y, VectorView<T> out, i64 chunk) {
  check_labelled<X>(mlp, head, Xm, y, out);
  const i64 P = mlp.n_params(), N = Xm.rows, L = mlp.n_layers();
  FISHERKIT_CHECK(out.size == P, "argument 'out' must have ", P, " entries (the MLP's parameters), got ", out.size);
  chunk = pick_chunk(chunk, N, static_cast<i64>(sizeof(T)) * (3 * sum_widths(mlp) + 2 * max_width(mlp)));
  check_values(x, mlp, Xm, &head, y);
  Forward<X, T> f(x, L);
  Buf<X, T> D(x), buf(x), nll(x), tmp(x), ones(x);
  Buf<X, double> accb(x);
  double* acc = zeroed(x, accb, P);
  std::vector<T> host_nll;
  double loss = 0.0;
  for (i64 s0 = 0; s0 < N; s0 += chunk) {
    const i64 n = std::min(chunk, N - s0);
    residuals(x, mlp, head, Xm.rows_slice(s0, n), y.rows_slice(s0, n), f, D, nll);
    host_nll.resize(static_cast<size_t>(n));
    x.to_host(host_nll.data(), static_cast<const T*>(nll.data()), n);
    for (const T v : host_nll) loss += double(v);
    backward(x, mlp, f, D, buf, 1, [&](i64 l, const T* Dl) {
      const i64 no = mlp.widths()[l], ni = mlp.widths()[l - 1];
      augmented(x, f.act(l - 1), f.act_ld(mlp, l - 1), n, ni, 1, ones);
      // [dW | db] (no x (ni+1)) = D^T [A, 1]; the diagonal scatter puts it in flat order
      accumulate_diag(x, acc + mlp.param_offset(l), Dl, no, static_cast<const T*>(ones.data()), n, ni, tmp);
    });
  }
  const double scale = 1.0 / double(N);
  x.for_each(P, [=] FISHERKIT_LAMBDA(i64 i) { out[i] = T(acc[i] * scale); });
  return loss * scale;
}

// ------------------------------------------------------------------ Fisher estimators

/// Where each layer's values live in the flat result of a shape.
template <class T>
std::vector<i64> block_offsets(const Mlp<T>& mlp, Shape shape) {
  std::vector<i64> off(static_cast<size_t>(mlp.n_layers() + 1), 0);
  i64 o = 0;
  for (i64 l = 1; l <= mlp.n_layers(); ++l) {
    const i64 no = mlp.widths()[l], k = mlp.widths()[l - 1] + 1;
    off[l] = shape == Shape::diag ? mlp.param_offset(l) : shape == Shape::full ? 0 : o;
    o += shape == Shape::unit ? no * k * k : (no * k) * (no * k);
  }
  return off;
}

/// Hessian estimator on the diag and unit shapes: e_l, ehat_l and diag(T_l) per sample
/// (math/variance.md 5.2; accumulate.cpp's hessian_pass without the full matrices where
/// only diagonals are needed). tdiag[l]: n x n_l.
template <class X, class T>
struct HessianDiag {
  std::vector<Buf<X, T>> e, ehat, td, Tf;
  Buf<X, T> scratch, w2;
  HessianDiag(X& x, i64 L) : scratch(x), w2(x) {
    for (auto* v : {&e, &ehat, &td, &Tf}) {
      v->reserve(static_cast<size_t>(L + 1));
      for (i64 l = 0; l <= L; ++l) v->emplace_back(x);
    }
  }
};

template <class X, class T>
void hessian_diagonals(X& x, const Mlp<T>& mlp, const Forward<X, T>& f, const T* taubar, HessianDiag<X, T>& H) {
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
    x.gemm(false, false, n, w[l], w[l + 1], T(1), static_cast<const T*>(H.e[l + 1].data()), w[l + 1],
           W.data, W.row_stride, T(0), H.ehat[l].data(), w[l]);
    const T* eh = H.ehat[l].data();
    const T* d1 = f.d1[l].data();
    T* el = H.e[l].data();
    x.for_each(n * w[l], [=] FISHERKIT_LAMBDA(i64 i) { el[i] = eh[i] * d1[i]; });
  }
  for (i64 l = L - 1; l >= 1; --l) {
    const i64 nl = w[l], nu = w[l + 1];
    const auto& W = mlp.layer(l + 1).weight;
    const bool full = l > 1 && l < L - 1;  // T_l itself builds T_{l-1} in the general branch
    H.td[l].resize(n * nl);
    T* td = H.td[l].data();
    const T* d1 = f.d1[l].data();
    const T* d2 = f.d2[l].data();
    const T* eh = H.ehat[l].data();
    if (l + 1 == L) {
      x.for_each(n * nl, [=] FISHERKIT_LAMBDA(i64 i) { td[i] = T(0); });
    } else if (l + 1 == L - 1) {
      // T_{l+1} is diagonal: diag(W^T diag(t) W) = t (W o W), one GEMM over the chunk
      H.w2.resize(nu * nl);
      T* w2 = H.w2.data();
      const MatrixView<const T> Wv = W;
      x.for_each(nu * nl, [=] FISHERKIT_LAMBDA(i64 i) {
        const T v = Wv(i / nl, i % nl);
        w2[i] = v * v;
      });
      x.gemm(false, false, n, nl, nu, T(1), static_cast<const T*>(H.td[l + 1].data()), nu,
             static_cast<const T*>(w2), nl, T(0), td, nl);
      if (full) {
        // T_l = D W^T diag(t) W D, one batched GEMM over the samples
        H.scratch.resize(n * nu * nl);
        T* tw = H.scratch.data();
        const T* tn = H.td[l + 1].data();
        x.for_each(n * nu * nl, [=] FISHERKIT_LAMBDA(i64 i) {
          const i64 s = i / (nu * nl), r = i % (nu * nl);
          tw[i] = tn[s * nu + r / nl] * Wv(r / nl, r % nl);
        });
        H.Tf[l].resize(n * nl * nl);
        x.gemm_batched(true, false, nl, nl, nu, T(1), W.data, W.row_stride, 0, static_cast<const T*>(tw),
                       nl, nu * nl, T(0), H.Tf[l].data(), nl, nl * nl, n);
      }
    } else {
      // general: T_l = D W^T T_{l+1} W D, per sample (batched)
      H.scratch.resize(n * nu * nl);
      x.gemm(false, false, n * nu, nl, nu, T(1), static_cast<const T*>(H.Tf[l + 1].data()), nu, W.data,
             W.row_stride, T(0), H.scratch.data(), nl);
      H.Tf[l].resize(n * nl * nl);
      x.gemm_batched(true, false, nl, nl, nu, T(1), W.data, W.row_stride, 0,
                     static_cast<const T*>(H.scratch.data()), nl, nu * nl, T(0), H.Tf[l].data(), nl, nl * nl, n);
      const T* Tl = H.Tf[l].data();
      x.for_each(n * nl, [=] FISHERKIT_LAMBDA(i64 i) { td[i] = Tl[(i / nl) * nl * nl + (i % nl) * (nl + 1)]; });
    }
    // scale by phi' on both sides, then + diag(ehat o phi'')
    x.for_each(n * nl, [=] FISHERKIT_LAMBDA(i64 i) { td[i] = td[i] * d1[i] * d1[i] + eh[i] * d2[i]; });
    if (full) {
      T* Tl = H.Tf[l].data();
      x.for_each(n * nl * nl, [=] FISHERKIT_LAMBDA(i64 i) {
        const i64 s = i / (nl * nl), r = i % (nl * nl), u = r / nl, v = r % nl;
        Tl[i] *= d1[s * nl + u] * d1[s * nl + v];
        if (u == v) Tl[i] += eh[s * nl + u] * d2[s * nl + u];
      });
    }
  }
}

/// Top rows D (n*M x C) of the pseudo-outputs of a Fisher estimator, and taubar (n x C, the
/// sampled t - eta averaged over draws) for the Hessian estimator. Draws are head_sample's.
template <class X, class T>
void top_rows(X& x, const Head& head, const FisherOptions& opt, i64 idx0, MatrixView<const T> yc,
              const T* h, i64 n, i64 C, i64 M, Buf<X, T>& D, Buf<X, T>& scr, Buf<X, T>& taubar) {
  const i64 per = C * C + 2 * C;
  D.resize(n * M * C);
  scr.resize(n * per);
  taubar.resize(n * C);
  T* Dp = D.data();
  T* sp = scr.data();
  T* tb = taubar.data();
  const HeadKind kind = head.kind;
  const T sig = T(head.sigma);
  const Estimator est = opt.estimator;
  const i64 S = opt.samples;
  const std::uint64_t seed = opt.seed;
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) {
    const T* hs = h + s * C;
    T* Ds = Dp + s * M * C;
    T* B = sp + s * per;
    T* yb = B + C * C;
    T* r = yb + C;
    if (est == Estimator::exact || est == Estimator::hessian) {
      detail::head_sqrt_covariance(kind, sig, hs, C, B);
      for (i64 k = 0; k < C; ++k)
        for (i64 a = 0; a < C; ++a) Ds[k * C + a] = B[a * C + k];
      if (est == Estimator::hessian) {
        T* t = tb + s * C;
        for (i64 a = 0; a < C; ++a) t[a] = T(0);
        for (i64 j = 0; j < S; ++j) {
          detail::Philox4x32 rng(seed, static_cast<std::uint64_t>(idx0 + s), static_cast<std::uint32_t>(j), 0);
          detail::head_sample(kind, sig, hs, C, rng, yb);
          detail::head_residual(kind, sig, hs, yb, C, r);
          for (i64 a = 0; a < C; ++a) t[a] -= r[a] / T(S);
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

template <class X, class T>
void fisher_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, MatrixView<const T> y,
                 const FisherOptions& opt, VectorView<T> out) {
  check_layout<X>(mlp, Xm, "X");
  check_head(head, mlp.output_dim());
  FISHERKIT_CHECK(opt.samples >= 1, "argument 'samples' must be >= 1, got ", opt.samples);
  if (opt.estimator == Estimator::empirical) {
    FISHERKIT_CHECK(y.data != nullptr && y.rows > 0, "the empirical estimator needs labels: argument 'y' is missing");
    check_label_layout<X>(head, y, Xm.rows, mlp.output_dim(), "y");
  }
  const bool hess = opt.estimator == Estimator::hessian;
  FISHERKIT_CHECK(!hess || opt.shape == Shape::diag || opt.shape == Shape::unit,
                  "the Hessian estimator with shape '", shape_name(opt.shape), "' is not in the portable "
                  "(GPU) passes: its cross-unit output-Hessian terms are computed on the CPU only; use "
                  "shape 'unit' or 'diag', or host arrays");
  check_out<X>(out, "out");
  const i64 size = fisher_size(mlp, opt.shape);
  FISHERKIT_CHECK(out.size == size, "argument 'out' must have ", size, " entries for shape '",
                  shape_name(opt.shape), "', got ", out.size);
  const i64 N = Xm.rows, L = mlp.n_layers(), C = mlp.output_dim(), P = mlp.n_params();
  const auto& w = mlp.widths();
  const i64 M = opt.estimator == Estimator::score ? opt.samples
                : opt.estimator == Estimator::empirical ? 1 : C;
  i64 per_sample = 4 * sum_widths(mlp) + 2 * M * max_width(mlp) + C * C + 3 * C;
  if (opt.shape == Shape::full) per_sample += M * P;
  if (opt.shape == Shape::layer) {
    i64 mx = 0;
    for (i64 l = 1; l <= L; ++l) mx = std::max(mx, w[l] * (w[l - 1] + 1));
    per_sample += M * mx;
  }
  if (hess)
    for (i64 l = 1; l < L; ++l) per_sample += 3 * w[l] + (l > 1 && l < L - 1 ? w[l] * (w[l] + w[l + 1]) : 0);
  const i64 chunk = pick_chunk(opt.chunk, N, per_sample * static_cast<i64>(sizeof(T)));

  check_values(x, mlp, Xm, opt.estimator == Estimator::empirical ? &head : nullptr, y);
  Buf<X, double> accb(x);
  double* acc = zeroed(x, accb, size);
  const auto boff = block_offsets(mlp, opt.shape);
  Forward<X, T> f(x, L);
  HessianDiag<X, T> H(x, hess ? L : 0);
  Buf<X, T> D(x), buf(x), scr(x), taubar(x), q(x), B(x), rows(x), tmp(x), wb(x);
  const Shape shape = opt.shape;
  for (i64 s0 = 0; s0 < N; s0 += chunk) {
    const i64 n = std::min(chunk, N - s0);
    const MatrixView<const T> yc = opt.estimator == Estimator::empirical ? y.rows_slice(s0, n) : y;
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, hess);
    top_rows(x, head, opt, opt.index_offset + s0, yc, static_cast<const T*>(f.z[L].data()), n, C, M, D, scr, taubar);
    if (hess) hessian_diagonals(x, mlp, f, static_cast<const T*>(taubar.data()), H);
    if (shape == Shape::full) rows.resize(n * M * P);
    backward(x, mlp, f, D, buf, M, [&](i64 l, const T* Dl) {
      const i64 no = w[l], ni = w[l - 1], k = ni + 1;
      const T* A = f.act(l - 1);
      const i64 lda = f.act_ld(mlp, l - 1);
      if (shape == Shape::diag || shape == Shape::unit) {
        // q[s,u] = sum_m Dl[s M + m, u]^2 - diag(T_l)[s, u]
        q.resize(n * no);
        T* qp = q.data();
        const T* tdl = hess && l < L ? static_cast<const T*>(H.td[l].data()) : nullptr;
        x.for_each(n * no, [=] FISHERKIT_LAMBDA(i64 i) {
          const i64 s = i / no, u = i % no;
          T acc_q = T(0);
          for (i64 m = 0; m < M; ++m) {
            const T d = Dl[(s * M + m) * no + u];
            acc_q += d * d;
          }
          qp[i] = tdl ? acc_q - tdl[i] : acc_q;
        });
        augmented(x, A, lda, n, ni, shape == Shape::diag ? 2 : 1, B);
        if (shape == Shape::diag)
          accumulate_diag(x, acc + boff[l], static_cast<const T*>(qp), no, static_cast<const T*>(B.data()), n, ni, tmp);
        else
          accumulate_unit(x, acc + boff[l], static_cast<const T*>(qp), no, static_cast<const T*>(B.data()), n, k, wb, tmp);
        return;
      }
      // layer / full: pseudo-gradient rows D_l (x) abar
      const i64 Dw = no * k;
      const i64 ldr = shape == Shape::full ? P : Dw;
      const i64 col0 = shape == Shape::full ? mlp.param_offset(l) : 0;
      if (shape == Shape::layer) rows.resize(n * M * Dw);
      T* rp = rows.data();
      x.for_each(n * M * Dw, [=] FISHERKIT_LAMBDA(i64 i) {
        const i64 r = i / Dw, c = i % Dw;
        const T* d = Dl + r * no;
        rp[r * ldr + col0 + c] = c < no * ni ? d[c / ni] * A[(r / M) * lda + c % ni] : d[c - no * ni];
      });
      if (shape == Shape::layer)
        gemm_accumulate<X, T>(x, acc + boff[l], Dw, Dw, Dw, tmp, [&](auto* dst, i64 ld, T beta) {
          x.gemm(true, false, Dw, Dw, n * M, T(1), static_cast<const T*>(rp), Dw, static_cast<const T*>(rp), Dw,
                 beta, dst, ld);
        });
    });
    if (shape == Shape::full) {
      const T* rp = rows.data();
      gemm_accumulate<X, T>(x, acc, P, P, P, tmp, [&](auto* dst, i64 ld, T beta) {
        x.gemm(true, false, P, P, n * M, T(1), rp, P, rp, P, beta, dst, ld);
      });
    }
  }
  const double scale = 1.0 / double(N);
  if (shape == Shape::diag) {
    x.for_each(size, [=] FISHERKIT_LAMBDA(i64 i) { out[i] = T(acc[i] * scale); });
  } else if (shape == Shape::full) {
    emit_symmetric(x, acc, scale, out, 0, P);
  } else {
    for (i64 l = 1; l <= L; ++l) {
      const i64 no = w[l], k = w[l - 1] + 1;
      if (shape == Shape::layer) emit_symmetric(x, acc, scale, out, boff[l], no * k);
      else emit_symmetric(x, acc, scale, out, boff[l], k, no);
    }
  }
}

// ------------------------------------------------------------------ closed-form variances

template <class X, class T>
void variance_pass(X& x, const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, Moment which,
                   Shape shape, VectorView<T> out, i64 chunk) {
  check_layout<X>(mlp, Xm, "X");
  check_head(head, mlp.output_dim());
  FISHERKIT_CHECK(shape == Shape::diag || shape == Shape::unit, "variance_sum computes the 'diag' and "
                  "'unit' shapes in the core; got '", shape_name(shape), "'");
  check_out<X>(out, "out");
  const i64 size = fisher_size(mlp, shape), N = Xm.rows, L = mlp.n_layers(), C = mlp.output_dim();
  FISHERKIT_CHECK(out.size == size, "argument 'out' must have ", size, " entries for shape '",
                  shape_name(shape), "', got ", out.size);
  const auto& w = mlp.widths();
  const bool need_t = which == Moment::v2 || which == Moment::c12;
  const i64 per_sample = static_cast<i64>(sizeof(T)) *
      (4 * sum_widths(mlp) + (need_t ? 3 : 1) * C * sum_widths(mlp) + 2 * max_width(mlp) +
       (need_t ? 2 * max_width(mlp) * max_width(mlp) : 0) + 2 * C);
  chunk = pick_chunk(chunk, N, per_sample);
  check_values(x, mlp, Xm);
  Buf<X, double> accb(x), cache(x);
  double* acc = zeroed(x, accb, size);
  const auto boff = block_offsets(mlp, shape);
  Forward<X, T> f(x, L);
  std::vector<Buf<X, T>> G, V, Td;
  for (auto* v : {&G, &V, &Td}) {
    v->reserve(static_cast<size_t>(L + 1));
    for (i64 l = 0; l <= L; ++l) v->emplace_back(x);
  }
  Buf<X, T> gh(x), Ab(x), Anext(x), A2(x), tmpb(x), weights(x), B(x), wb(x), tmp(x), w2(x);
  const HeadKind kind = head.kind;
  const double sigma = head.sigma;
  for (i64 s0 = 0; s0 < N; s0 += chunk) {
    const i64 n = std::min(chunk, N - s0);
    forward(x, mlp, Xm.rows_slice(s0, n), f, true, need_t);
    // backward columns G_l for every output (rows s*C + c) and V_l = (G_{l+1} W_{l+1}) o phi''
    G[L].resize(n * C * C);
    {
      T* g = G[L].data();
      x.for_each(n * C * C, [=] FISHERKIT_LAMBDA(i64 i) { g[i] = (i / C) % C == i % C ? T(1) : T(0); });
    }
    for (i64 l = L - 1; l >= 1; --l) {
      const auto& W = mlp.layer(l + 1).weight;
      const i64 nl = w[l];
      gh.resize(n * C * nl);
      x.gemm(false, false, n * C, nl, w[l + 1], T(1), static_cast<const T*>(G[l + 1].data()), w[l + 1], W.data,
             W.row_stride, T(0), gh.data(), nl);
      G[l].resize(n * C * nl);
      if (need_t) V[l].resize(n * C * nl);
      const T* ghp = gh.data();
      const T* d1 = f.d1[l].data();
      const T* d2 = need_t ? static_cast<const T*>(f.d2[l].data()) : nullptr;
      T* gp = G[l].data();
      T* vp = need_t ? V[l].data() : nullptr;
      x.for_each(n * C * nl, [=] FISHERKIT_LAMBDA(i64 i) {
        const i64 s = i / (C * nl), u = i % nl;
        gp[i] = ghp[i] * d1[s * nl + u];
        if (vp) vp[i] = ghp[i] * d2[s * nl + u];
      });
    }
    if (need_t) {
      // Td_l = diag(T_l[c]) for every sample and output (variance.cpp's hessian_diagonals)
      for (i64 l = L - 1; l >= 1; --l) {
        const i64 nl = w[l];
        Td[l].resize(n * C * nl);
        T* td = Td[l].data();
        const T* vl = V[l].data();
        x.for_each(n * C * nl, [=] FISHERKIT_LAMBDA(i64 i) { td[i] = vl[i]; });
        if (l + 1 <= L - 1) {
          const MatrixView<const T> W = mlp.layer(l + 1).weight;
          const i64 nu = w[l + 1];
          w2.resize(nu * nl);
          T* w2p = w2.data();
          x.for_each(nu * nl, [=] FISHERKIT_LAMBDA(i64 i) {
            const T v = W(i / nl, i % nl);
            w2p[i] = v * v;
          });
          tmpb.resize(n * C * nl);
          x.gemm(false, false, n * C, nl, nu, T(1), static_cast<const T*>(V[l + 1].data()), nu,
                 static_cast<const T*>(w2p), nl, T(0), tmpb.data(), nl);
          const T* tp = tmpb.data();
          const T* d1 = f.d1[l].data();
          x.for_each(n * C * nl, [=] FISHERKIT_LAMBDA(i64 i) {
            const T g = d1[(i / (C * nl)) * nl + i % nl];
            td[i] += g * g * tp[i];
          });
        }
        if (l + 2 <= L - 1) {
          // m >= l + 2: A_{l->m} per sample, chained by batched GEMMs
          const MatrixView<const T> W1 = mlp.layer(l + 1).weight;
          const i64 n1 = w[l + 1];
          const T* d1 = f.d1[l].data();
          Ab.resize(n * n1 * nl);
          T* ap = Ab.data();
          x.for_each(n * n1 * nl, [=] FISHERKIT_LAMBDA(i64 i) {
            const i64 s = i / (n1 * nl), r = i % (n1 * nl);
            ap[i] = W1(r / nl, r % nl) * d1[s * nl + r % nl];
          });
          for (i64 m = l + 2; m <= L - 1; ++m) {
            const auto& Wm = mlp.layer(m).weight;
            const i64 nm = w[m], np = w[m - 1];
            const T* dp = f.d1[m - 1].data();
            tmpb.resize(n * np * nl);
            T* tp = tmpb.data();
            const T* apc = Ab.data();
            x.for_each(n * np * nl, [=] FISHERKIT_LAMBDA(i64 i) {
              const i64 s = i / (np * nl), kk = (i % (np * nl)) / nl;
              tp[i] = dp[s * np + kk] * apc[i];
            });
            Anext.resize(n * nm * nl);
            x.gemm_batched(false, false, nm, nl, np, T(1), Wm.data, Wm.row_stride, 0, static_cast<const T*>(tp), nl,
                           np * nl, T(0), Anext.data(), nl, nm * nl, n);
            Ab.swap(Anext);
            A2.resize(n * nm * nl);
            T* a2 = A2.data();
            const T* an = Ab.data();
            x.for_each(n * nm * nl, [=] FISHERKIT_LAMBDA(i64 i) { a2[i] = an[i] * an[i]; });
            x.gemm_batched(false, false, C, nl, nm, T(1), static_cast<const T*>(V[m].data()), nm, C * nm,
                           static_cast<const T*>(a2), nl, nm * nl, T(1), td, nl, C * nl, n);
          }
        }
      }
    }
    // per-sample head rows: (mean, complement) per coordinate
    cache.resize(n * 2 * C);
    double* cp = cache.data();
    const T* h = f.z[L].data();
    x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) {
      detail::make_head_row<T>(kind, sigma, detail::StridedVec<T>(h + s * C), C, cp + s * 2 * C);
    });
    for (i64 l = 1; l <= L; ++l) {
      const i64 nl = w[l], ni = w[l - 1], k = ni + 1;
      weights.resize(n * nl);
      T* wp = weights.data();
      const T* gl = G[l].data();
      const T* tdl = need_t && l < L ? static_cast<const T*>(Td[l].data()) : nullptr;
      x.for_each(n * nl, [=] FISHERKIT_LAMBDA(i64 i) {
        const i64 s = i / nl, u = i % nl;
        auto row = detail::make_head_row<T>(kind, sigma, detail::StridedVec<T>(h + s * C), C, nullptr);
        row.cache = cp + s * 2 * C;
        const detail::StridedVec<T> g(gl + s * C * nl + u, nl);
        const detail::StridedVec<T> td = tdl ? detail::StridedVec<T>(tdl + s * C * nl + u, nl) : detail::StridedVec<T>();
        const auto sc = detail::head_unit_scalars(row, g, td);
        double v = sc.r;
        if (which == Moment::v2) v = sc.w;
        if (which == Moment::c12) v = sc.c;
        if (which == Moment::fsq) v = sc.q * sc.q;
        wp[i] = T(v);
      });
      augmented(x, f.act(l - 1), f.act_ld(mlp, l - 1), n, ni, shape == Shape::diag ? 4 : 2, B);
      if (shape == Shape::diag)
        accumulate_diag(x, acc + boff[l], static_cast<const T*>(wp), nl, static_cast<const T*>(B.data()), n, ni, tmp);
      else
        accumulate_unit(x, acc + boff[l], static_cast<const T*>(wp), nl, static_cast<const T*>(B.data()), n, k, wb, tmp);
    }
  }
  if (shape == Shape::diag) {
    x.for_each(size, [=] FISHERKIT_LAMBDA(i64 i) { out[i] = T(acc[i]); });
    return;
  }
  for (i64 l = 1; l <= L; ++l) emit_symmetric(x, acc, 1.0, out, boff[l], w[l - 1] + 1, w[l]);
}

}  // namespace fisherkit::xpu
