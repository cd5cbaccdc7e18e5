// The per-chunk MLP engine shared by every pass: a forward pass that keeps
// pre-activations and phi', phi'' and a backward pass that pushes M rows per sample
// (output-Jacobian rows, residuals, square-root-covariance columns) down the network and
// hands each layer's rows to a visitor. Private to the core library.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "blas.hpp"
#include "fisherkit/detail/activations.hpp"
#include "fisherkit/mlp.hpp"
#include "parallel.hpp"
#include "simd.hpp"

namespace fisherkit::detail {

/// Chunk size whose workspace is about `budget` bytes given `per_sample` bytes a sample.
inline std::int64_t pick_chunk(std::int64_t requested, std::int64_t n, std::int64_t per_sample,
                               std::int64_t budget = std::int64_t(32) << 20) {
  if (requested > 0) return std::max<std::int64_t>(1, std::min(requested, std::max<std::int64_t>(n, 1)));
  const std::int64_t c = budget / std::max<std::int64_t>(per_sample, 1);
  return std::max<std::int64_t>(16, std::min<std::int64_t>({c, 4096, std::max<std::int64_t>(n, 1)}));
}

template <class T>
std::int64_t sum_widths(const Mlp<T>& mlp) {
  std::int64_t s = 0;
  for (auto w : mlp.widths()) s += w;
  return s;
}
template <class T>
std::int64_t max_width(const Mlp<T>& mlp) {
  return *std::max_element(mlp.widths().begin(), mlp.widths().end());
}

/// Per-chunk forward state. Buffers are kept between chunks (allocated once).
template <class T>
struct ForwardCache {
  std::int64_t n = 0;                 // samples in this chunk
  MatrixView<const T> x;              // a_0
  std::vector<std::vector<T>> z;      // z[l], l = 1..L: n x n_l
  std::vector<std::vector<T>> a;      // a[l], l = 1..L-1: n x n_l
  std::vector<std::vector<T>> d1, d2; // phi'(z_l), phi''(z_l), l = 1..L-1

  /// a_l as (pointer, leading dimension), l = 0..L-1.
  const T* act(std::int64_t l) const { return l == 0 ? x.data : a[l].data(); }
  std::int64_t act_ld(const Mlp<T>& m, std::int64_t l) const {
    // a single row may come with any row stride (NumPy gives x[None] stride 0); BLAS needs
    // a leading dimension >= the row length
    if (l == 0) return x.rows <= 1 ? x.cols : x.row_stride;
    return m.widths()[l];
  }
};

/// Forward pass over one chunk Xc (n x n_0). need_d2: also keep phi''.
template <class T>
void forward_chunk(const Mlp<T>& mlp, MatrixView<const T> Xc, ForwardCache<T>& f, bool need_d1,
                   bool need_d2) {
  const std::int64_t L = mlp.n_layers(), n = Xc.rows;
  const auto& w = mlp.widths();
  f.n = n;
  f.x = Xc;
  f.z.resize(L + 1);
  f.a.resize(L);
  f.d1.resize(L);
  f.d2.resize(L);
  for (std::int64_t l = 1; l <= L; ++l) {
    const std::int64_t no = w[l], ni = w[l - 1];
    auto& z = f.z[l];
    z.resize(static_cast<size_t>(n * no));
    const auto& layer = mlp.layer(l);
    // z = a_{l-1} W^T + b
    blas::gemm(false, true, n, no, ni, T(1), f.act(l - 1), f.act_ld(mlp, l - 1), layer.weight.data,
               layer.weight.row_stride, T(0), z.data(), no);
    const bool hidden = l < L;
    if (hidden) {
      f.a[l].resize(static_cast<size_t>(n * no));
      if (need_d1) f.d1[l].resize(static_cast<size_t>(n * no));
      if (need_d2) f.d2[l].resize(static_cast<size_t>(n * no));
    }
    const Activation act = hidden ? mlp.activation(l) : Activation::identity;
    T* zp = z.data();
    T* ap = hidden ? f.a[l].data() : nullptr;
    T* d1p = hidden && need_d1 ? f.d1[l].data() : nullptr;
    T* d2p = hidden && need_d2 ? f.d2[l].data() : nullptr;
    const T* bp = layer.bias.data;
    const std::int64_t bs = layer.bias.stride;
    parallel_for(n, no * 8, [&](std::int64_t s) {
      T* zr = zp + s * no;
      for (std::int64_t u = 0; u < no; ++u) zr[u] += bp[u * bs];
      if (ap)
        activation_bulk(act, zr, ap + s * no, d1p ? d1p + s * no : nullptr,
                        d2p ? d2p + s * no : nullptr, no);
    });
  }
  // Overflow in the forward pass (huge inputs or weights) is an error here, not a NaN later.
  const T* h = f.z[L].data();
  const std::int64_t C = w[L];
  for (std::int64_t i = 0; i < n * C; ++i)
    FISHERKIT_CHECK(fk_isfinite(h[i]), "the network output is not finite (overflow in the forward "
                    "pass: inputs or weights too large for ", sizeof(T) == 4 ? "float32" : "float64", ")");
}

/// Backward pass of M rows per sample. On entry D holds n*M rows of C = n_L values
/// (row s*M + m belongs to sample s); `buf` is scratch. For l = L..1 calls
/// visit(l, D_l, ldD) with D_l the (n*M x n_l) derivatives with respect to z_l, then
/// propagates D_{l-1} = (D_l W_l) * phi'(z_{l-1}). D and buf are consumed.
template <class T, class Visit>
void backward_chunk(const Mlp<T>& mlp, const ForwardCache<T>& f, std::vector<T>& D,
                    std::vector<T>& buf, std::int64_t M, Visit&& visit,
                    std::int64_t stop_layer = 1) {
  const std::int64_t L = mlp.n_layers(), n = f.n, rows = n * M;
  const auto& w = mlp.widths();
  for (std::int64_t l = L; l >= stop_layer; --l) {
    visit(l, static_cast<const T*>(D.data()), w[l]);
    if (l == stop_layer) break;
    const std::int64_t no = w[l], ni = w[l - 1];
    buf.resize(static_cast<size_t>(rows * ni));
    const auto& layer = mlp.layer(l);
    blas::gemm(false, false, rows, ni, no, T(1), D.data(), no, layer.weight.data,
               layer.weight.row_stride, T(0), buf.data(), ni);
    const T* d1 = f.d1[l - 1].data();
    T* bp = buf.data();
    parallel_for(rows, ni, [&](std::int64_t r) {
      const T* g = d1 + (r / M) * ni;
      T* row = bp + r * ni;
      for (std::int64_t j = 0; j < ni; ++j) row[j] *= g[j];
    });
    D.swap(buf);
  }
}

}  // namespace fisherkit::detail
