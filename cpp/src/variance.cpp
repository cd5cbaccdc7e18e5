// Closed-form variances of the Fisher estimators, diag and unit shapes (variance.hpp).
#include "fisherkit/variance.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "engine.hpp"
#include "fisherkit/detail/moments.hpp"
#include "gram.hpp"
#include "validate.hpp"

namespace fisherkit {

Moment parse_moment(const std::string& name) {
  if (name == "v1") return Moment::v1;
  if (name == "v2") return Moment::v2;
  if (name == "c12") return Moment::c12;
  if (name == "fsq") return Moment::fsq;
  detail::fail("unknown moment '", name, "'; expected one of v1, v2, c12, fsq");
}

namespace {

template <class T>
struct VarianceRun {
  const Mlp<T>& mlp;
  const Head& head;
  Moment which;
  std::int64_t L, C;
  bool need_t;
  detail::ForwardCache<T> f;
  std::vector<std::vector<T>> D, V, Td;  // per layer: n*C x n_l (rows s*C + c)
  std::vector<T> w2, A, A2, Anext, tmp, weights, powered, pos, neg;
  std::vector<double> cache;

  VarianceRun(const Mlp<T>& m, const Head& h, Moment wh)
      : mlp(m), head(h), which(wh), L(m.n_layers()), C(m.output_dim()),
        need_t(wh == Moment::v2 || wh == Moment::c12) {}

  /// Backward columns G_l (D[l]) for every output, and V_l = (G_{l+1} W_{l+1}) o phi''.
  void backward(std::int64_t n) {
    const auto& w = mlp.widths();
    D.assign(L + 1, {});
    V.assign(L + 1, {});
    D[L].assign(static_cast<size_t>(n * C * C), T(0));
    for (std::int64_t r = 0; r < n * C; ++r) D[L][r * C + r % C] = T(1);
    for (std::int64_t l = L - 1; l >= 1; --l) {
      const auto& W = mlp.layer(l + 1).weight;
      std::vector<T> gh(static_cast<size_t>(n * C * w[l]));
      blas::gemm(false, false, n * C, w[l], w[l + 1], T(1), D[l + 1].data(), w[l + 1], W.data,
                 W.row_stride, T(0), gh.data(), w[l]);
      D[l].resize(gh.size());
      const T* d1 = f.d1[l].data();
      const T* d2 = need_t ? f.d2[l].data() : nullptr;
      if (need_t) V[l].resize(gh.size());
      for (std::int64_t r = 0; r < n * C; ++r) {
        const T* g1 = d1 + (r / C) * w[l];
        for (std::int64_t u = 0; u < w[l]; ++u) {
          D[l][r * w[l] + u] = gh[r * w[l] + u] * g1[u];
          if (need_t) V[l][r * w[l] + u] = gh[r * w[l] + u] * d2[(r / C) * w[l] + u];
        }
      }
    }
  }

  /// Td[l] (n*C x n_l) = diag(T_l[c]) for every sample and output, l = 1..L-1.
  void hessian_diagonals(std::int64_t n) {
    const auto& w = mlp.widths();
    Td.assign(L + 1, {});
    for (std::int64_t l = L - 1; l >= 1; --l) {
      const std::int64_t nl = w[l];
      Td[l] = V[l];  // the m = l term
      if (l + 1 <= L - 1) {
        // m = l + 1: A_{l->l+1} = W_{l+1} diag(phi'_l): (A o A)^T v = phi'^2 o (v (W o W))
        const auto& W = mlp.layer(l + 1).weight;
        const std::int64_t nu = w[l + 1];
        w2.resize(static_cast<size_t>(nu * nl));
        for (std::int64_t k = 0; k < nu; ++k)
          for (std::int64_t u = 0; u < nl; ++u) w2[k * nl + u] = W(k, u) * W(k, u);
        tmp.resize(static_cast<size_t>(n * C * nl));
        blas::gemm(false, false, n * C, nl, nu, T(1), V[l + 1].data(), nu, w2.data(), nl, T(0),
                   tmp.data(), nl);
        const T* d1 = f.d1[l].data();
        for (std::int64_t r = 0; r < n * C; ++r)
          for (std::int64_t u = 0; u < nl; ++u) {
            const T g = d1[(r / C) * nl + u];
            Td[l][r * nl + u] += g * g * tmp[r * nl + u];
          }
      }
      if (l + 2 <= L - 1) {
        // m >= l + 2: chain A_{l->m} per sample
        for (std::int64_t s = 0; s < n; ++s) {
          const auto& W1 = mlp.layer(l + 1).weight;
          const std::int64_t n1 = w[l + 1];
          const T* d1 = f.d1[l].data() + s * nl;
          A.resize(static_cast<size_t>(n1 * nl));
          for (std::int64_t k = 0; k < n1; ++k)
            for (std::int64_t u = 0; u < nl; ++u) A[k * nl + u] = W1(k, u) * d1[u];
          for (std::int64_t m = l + 2; m <= L - 1; ++m) {
            const auto& Wm = mlp.layer(m).weight;
            const std::int64_t nm = w[m], np = w[m - 1];
            const T* dp = f.d1[m - 1].data() + s * np;
            // A <- W_m diag(phi'_{m-1}) A
            Anext.assign(static_cast<size_t>(nm * nl), T(0));
            tmp.resize(static_cast<size_t>(np * nl));
            for (std::int64_t k = 0; k < np; ++k)
              for (std::int64_t u = 0; u < nl; ++u) tmp[k * nl + u] = dp[k] * A[k * nl + u];
            blas::gemm(false, false, nm, nl, np, T(1), Wm.data, Wm.row_stride, tmp.data(), nl, T(0),
                       Anext.data(), nl);
            A.swap(Anext);
            A2.resize(A.size());
            for (size_t i = 0; i < A.size(); ++i) A2[i] = A[i] * A[i];
            // Td[l][s*C + c, :] += V_m[s*C + c, :] (A o A)
            blas::gemm(false, false, C, nl, nm, T(1), V[m].data() + s * C * nm, nm, A2.data(), nl,
                       T(1), Td[l].data() + s * C * nl, nl);
          }
        }
      }
    }
  }

  /// weights (n x n_l) of layer l for the chosen moment.
  void unit_weights(std::int64_t l, std::int64_t n) {
    const std::int64_t nl = mlp.widths()[l];
    weights.resize(static_cast<size_t>(n * nl));
    const T* h = f.z[L].data();
    const bool with_t = need_t && l < L;
    detail::parallel_for(n, nl * C * 8, [&](std::int64_t s) {
      std::vector<double> cache_s(static_cast<size_t>(2 * C));
      const auto row = detail::make_head_row<T>(head.kind, head.sigma, detail::StridedVec<T>(h + s * C),
                                                C, cache_s.data());
      // the sample's C x n_l blocks, transposed so that each unit's column is contiguous
      // (strided column reads made the per-unit contractions several times slower)
      std::vector<T> gt(static_cast<size_t>(nl * C)), tt(with_t ? static_cast<size_t>(nl * C) : 0);
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t u = 0; u < nl; ++u) {
          gt[u * C + c] = D[l][(s * C + c) * nl + u];
          if (with_t) tt[u * C + c] = Td[l][(s * C + c) * nl + u];
        }
      for (std::int64_t u = 0; u < nl; ++u) {
        detail::StridedVec<T> g(gt.data() + u * C, 1);
        detail::StridedVec<T> td = with_t ? detail::StridedVec<T>(tt.data() + u * C, 1) : detail::StridedVec<T>();
        const auto sc = detail::head_unit_scalars(row, g, td);
        double v = 0.0;
        switch (which) {
          case Moment::v1: v = sc.r; break;
          case Moment::v2: v = sc.w; break;
          case Moment::c12: v = sc.c; break;
          case Moment::fsq: v = sc.q * sc.q; break;
        }
        weights[s * nl + u] = T(v);
      }
    });
  }
};

}  // namespace

template <class T>
void variance_sum(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, Moment which,
                  Shape shape, VectorView<T> out, std::int64_t chunk) {
  detail::check_inputs(mlp, X, "X");
  check_head(head, mlp.output_dim());
  FISHERKIT_CHECK(shape == Shape::diag || shape == Shape::unit, "variance_sum computes the '",
                  "diag' and 'unit' shapes in the core; got '", shape_name(shape), "'");
  detail::check_host(out, "out");
  const std::int64_t size = fisher_size(mlp, shape), N = X.rows, L = mlp.n_layers(),
                     C = mlp.output_dim();
  FISHERKIT_CHECK(out.size == size, "argument 'out' must have ", size, " entries for shape '",
                  shape_name(shape), "', got ", out.size);
  std::vector<double> acc(static_cast<size_t>(size), 0.0);
  const auto& w = mlp.widths();
  std::vector<std::int64_t> block_off(L + 1, 0);
  for (std::int64_t l = 1, off = 0; l <= L; ++l) {
    block_off[l] = off;
    off += w[l] * (w[l - 1] + 1) * (w[l - 1] + 1);
  }
  const std::int64_t per_sample = static_cast<std::int64_t>(sizeof(T)) *
      (4 * detail::sum_widths(mlp) + 4 * C * detail::sum_widths(mlp) + 2 * detail::max_width(mlp));
  chunk = detail::pick_chunk(chunk, N, per_sample,
                             shape == Shape::unit ? (std::int64_t(128) << 20) : (std::int64_t(32) << 20));
  VarianceRun<T> run(mlp, head, which);
  for (std::int64_t s0 = 0; s0 < N; s0 += chunk) {
    const std::int64_t n = std::min(chunk, N - s0);
    detail::forward_chunk(mlp, X.rows_slice(s0, n), run.f, true, run.need_t);
    run.backward(n);
    if (run.need_t) run.hessian_diagonals(n);
    for (std::int64_t l = 1; l <= L; ++l) {
      const std::int64_t nl = w[l], ni = w[l - 1], k = ni + 1;
      run.unit_weights(l, n);
      // squared augmented inputs (unit) or their squares (diag)
      const T* A = run.f.act(l - 1);
      const std::int64_t lda = run.f.act_ld(mlp, l - 1);
      run.powered.resize(static_cast<size_t>(n * k));
      for (std::int64_t s = 0; s < n; ++s) {
        for (std::int64_t j = 0; j < ni; ++j) {
          const T a2 = A[s * lda + j] * A[s * lda + j];
          run.powered[s * k + j] = shape == Shape::diag ? a2 * a2 : a2;
        }
        run.powered[s * k + ni] = T(1);
      }
      if (shape == Shape::diag)
        detail::accumulate_diag(acc.data() + mlp.param_offset(l), run.weights.data(), nl,
                                run.powered.data(), n, ni, run.tmp);
      else
        detail::accumulate_unit(acc.data() + block_off[l], run.weights.data(), nl, run.powered.data(),
                                n, k, run.pos, run.neg, run.tmp);
    }
  }
  if (shape == Shape::diag) {
    for (std::int64_t i = 0; i < size; ++i) out[i] = T(acc[i]);
    return;
  }
  for (std::int64_t l = 1; l <= L; ++l) {
    const std::int64_t k = w[l - 1] + 1;
    for (std::int64_t u = 0; u < w[l]; ++u)
      detail::emit_symmetric_block<T>(acc.data(), 1.0, out, block_off[l] + u * k * k, k);
  }
}

#define FISHERKIT_INSTANTIATE_VARIANCE(T)                                                   \
  template void variance_sum<T>(const Mlp<T>&, const Head&, MatrixView<const T>, Moment,    \
                                Shape, VectorView<T>, std::int64_t);
FISHERKIT_INSTANTIATE_VARIANCE(float)
FISHERKIT_INSTANTIATE_VARIANCE(double)

}  // namespace fisherkit
