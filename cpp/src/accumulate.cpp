// Fisher estimators x shapes, accumulated over chunks (see accumulate.hpp).
#include "fisherkit/accumulate.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "engine.hpp"
#include "gram.hpp"
#include "validate.hpp"

namespace fisherkit {

Estimator parse_estimator(const std::string& name) {
  if (name == "exact") return Estimator::exact;
  if (name == "score") return Estimator::score;
  if (name == "hessian") return Estimator::hessian;
  if (name == "empirical") return Estimator::empirical;
  detail::fail("unknown estimator '", name, "'; expected one of exact, score, hessian, empirical");
}
Shape parse_shape(const std::string& name) {
  if (name == "full") return Shape::full;
  if (name == "layer") return Shape::layer;
  if (name == "unit") return Shape::unit;
  if (name == "diag") return Shape::diag;
  detail::fail("unknown shape '", name, "'; expected one of full, layer, unit, diag");
}
const char* estimator_name(Estimator e) {
  switch (e) {
    case Estimator::exact: return "exact";
    case Estimator::score: return "score";
    case Estimator::hessian: return "hessian";
    case Estimator::empirical: return "empirical";
  }
  return "?";
}
const char* shape_name(Shape s) {
  switch (s) {
    case Shape::full: return "full";
    case Shape::layer: return "layer";
    case Shape::unit: return "unit";
    case Shape::diag: return "diag";
  }
  return "?";
}

namespace {

using detail::blas_accumulate;

/// Where each layer's values live in the flat output of a shape.
struct Geometry {
  std::vector<std::int64_t> n_out, n_in, param_off, block_off;
  std::int64_t total = 0, P = 0, L = 0;
};

template <class T>
Geometry geometry(const Mlp<T>& mlp, Shape shape) {
  Geometry g;
  g.L = mlp.n_layers();
  g.P = mlp.n_params();
  std::int64_t off = 0;
  for (std::int64_t l = 1; l <= g.L; ++l) {
    const std::int64_t no = mlp.widths()[l], ni = mlp.widths()[l - 1], k = ni + 1;
    g.n_out.push_back(no);
    g.n_in.push_back(ni);
    g.param_off.push_back(mlp.param_offset(l));
    g.block_off.push_back(off);
    if (shape == Shape::unit) off += no * k * k;
    if (shape == Shape::layer) off += (no * k) * (no * k);
  }
  g.total = shape == Shape::diag ? g.P : shape == Shape::full ? g.P * g.P : off;
  return g;
}

/// Index of parameter (u, j) of a layer within that layer's flat block (j == n_in: bias).
inline std::int64_t local_index(std::int64_t u, std::int64_t j, std::int64_t no, std::int64_t ni) {
  return j < ni ? u * ni + j : no * ni + u;
}

template <class T>
struct FisherRun {
  const Mlp<T>& mlp;
  const Head& head;
  const FisherOptions& opt;
  Geometry g;
  double* acc;
  std::int64_t C, L;
  // per-chunk buffers
  detail::ForwardCache<T> f;
  std::vector<T> D, buf, tmp, q, aug, rows, taubar, scratch;
  std::vector<std::vector<T>> e, ehat, tdiag;        // per layer (n x n_l)
  std::vector<std::vector<T>> Tst;                    // per layer stacked T_l (n x n_l x n_l)

  FisherRun(const Mlp<T>& m, const Head& h, const FisherOptions& o, double* a)
      : mlp(m), head(h), opt(o), g(geometry(m, o.shape)), acc(a), C(m.output_dim()), L(m.n_layers()) {}

  std::int64_t rows_per_sample() const {
    switch (opt.estimator) {
      case Estimator::exact:
      case Estimator::hessian: return C;
      case Estimator::score: return opt.samples;
      case Estimator::empirical: return 1;
    }
    return 1;
  }

  /// Top rows D (n*M x C) of the pseudo-outputs, and taubar for the Hessian estimator.
  void top_rows(std::int64_t s0, std::int64_t n, MatrixView<const T> yc) {
    const std::int64_t M = rows_per_sample();
    const T* h = f.z[L].data();
    D.assign(static_cast<size_t>(n * M * C), T(0));
    if (opt.estimator == Estimator::hessian) taubar.assign(static_cast<size_t>(n * C), T(0));
    const T sig = T(head.sigma);
    const std::int64_t S = opt.samples;
    detail::parallel_for(n, M * C * 8, [&](std::int64_t s) {
      const T* hs = h + s * C;
      T* Ds = D.data() + s * M * C;
      std::vector<T> ybuf(static_cast<size_t>(C)), r(static_cast<size_t>(C)),
          B(static_cast<size_t>(C * C));
      switch (opt.estimator) {
        case Estimator::exact:
        case Estimator::hessian: {
          detail::head_sqrt_covariance(head.kind, sig, hs, C, B.data());
          for (std::int64_t k = 0; k < C; ++k)
            for (std::int64_t a = 0; a < C; ++a) Ds[k * C + a] = B[a * C + k];
          if (opt.estimator == Estimator::hessian) {
            T* tb = taubar.data() + s * C;
            for (std::int64_t j = 0; j < S; ++j) {
              detail::Philox4x32 rng(opt.seed, static_cast<std::uint64_t>(opt.index_offset + s0 + s),
                                     static_cast<std::uint32_t>(j), 0);
              detail::head_sample(head.kind, sig, hs, C, rng, ybuf.data());
              detail::head_residual(head.kind, sig, hs, ybuf.data(), C, r.data());
              for (std::int64_t a = 0; a < C; ++a) tb[a] -= r[a] / T(S);  // t - eta = -residual
            }
          }
          break;
        }
        case Estimator::score: {
          const T scale = T(1) / std::sqrt(T(S));
          for (std::int64_t j = 0; j < S; ++j) {
            detail::Philox4x32 rng(opt.seed, static_cast<std::uint64_t>(opt.index_offset + s0 + s),
                                   static_cast<std::uint32_t>(j), 0);
            detail::head_sample(head.kind, sig, hs, C, rng, ybuf.data());
            detail::head_residual(head.kind, sig, hs, ybuf.data(), C, Ds + j * C);
            for (std::int64_t a = 0; a < C; ++a) Ds[j * C + a] *= scale;
          }
          break;
        }
        case Estimator::empirical:
          detail::head_residual(head.kind, sig, hs, yc.row(s), C, Ds);
          break;
      }
    });
  }

  /// Augmented inputs abar (n x (n_in + 1)) of layer l.
  const T* augmented(std::int64_t l, std::int64_t n) {
    const std::int64_t ni = g.n_in[l - 1], k = ni + 1;
    const T* A = f.act(l - 1);
    const std::int64_t lda = f.act_ld(mlp, l - 1);
    aug.resize(static_cast<size_t>(n * k));
    for (std::int64_t s = 0; s < n; ++s) {
      std::copy(A + s * lda, A + s * lda + ni, aug.data() + s * k);
      aug[s * k + ni] = T(1);
    }
    return aug.data();
  }

  /// Hessian estimator: e_l, ehat_l and the contracted output Hessians T_l per sample
  /// (l = 1..L-1; T_L = 0). Keeps every T_l unless the shape needs only their diagonals
  /// (diag, unit) and keep_all is false.
  void hessian_pass(std::int64_t n, bool keep_all) {
    const auto& w = mlp.widths();
    e.assign(L + 1, {});
    ehat.assign(L + 1, {});
    tdiag.assign(L + 1, {});
    Tst.assign(L + 1, {});
    e[L].assign(taubar.begin(), taubar.end());
    for (std::int64_t l = L - 1; l >= 1; --l) {
      const auto& W = mlp.layer(l + 1).weight;
      ehat[l].resize(static_cast<size_t>(n * w[l]));
      blas::gemm(false, false, n, w[l], w[l + 1], T(1), e[l + 1].data(), w[l + 1], W.data,
                 W.row_stride, T(0), ehat[l].data(), w[l]);
      e[l].resize(ehat[l].size());
      const T* d1 = f.d1[l].data();
      for (size_t i = 0; i < e[l].size(); ++i) e[l][i] = ehat[l][i] * d1[i];
    }
    // The full per-sample T_l is needed by the block shapes, and to build T_{l-1} by the
    // general branch (1 < l < L-1); T_{L-1} is diagonal and T_{L-2} comes from its diagonal.
    const bool blocks = opt.shape == Shape::layer || opt.shape == Shape::full;
    auto need_full = [&](std::int64_t l) { return blocks || keep_all || (l > 1 && l < L - 1); };
    for (std::int64_t l = L - 1; l >= 1; --l) {
      const std::int64_t nl = w[l], nu = w[l + 1];
      const auto& W = mlp.layer(l + 1).weight;
      const T* d1 = f.d1[l].data();
      const T* d2 = f.d2[l].data();
      auto& td = tdiag[l];
      td.assign(static_cast<size_t>(n * nl), T(0));
      auto& Tl = Tst[l];
      if (need_full(l)) Tl.assign(static_cast<size_t>(n * nl * nl), T(0));
      if (l + 1 == L - 1) {
        // T_{l+1} is diagonal (entries tdiag[l+1]): diag(W^T diag(t) W) = t (W*W), one GEMM
        // over the chunk; the full matrix, when needed, is one GEMM per sample.
        scratch.resize(static_cast<size_t>(nu * nl));
        for (std::int64_t k = 0; k < nu; ++k)
          for (std::int64_t u = 0; u < nl; ++u) scratch[k * nl + u] = W(k, u) * W(k, u);
        blas::gemm(false, false, n, nl, nu, T(1), tdiag[l + 1].data(), nu, scratch.data(), nl, T(0),
                   td.data(), nl);
        for (std::int64_t i = 0; i < n * nl; ++i) td[i] *= d1[i] * d1[i];
        if (need_full(l)) {
          std::vector<T> tw(static_cast<size_t>(nu * nl));
          for (std::int64_t s = 0; s < n; ++s) {
            const T* t = tdiag[l + 1].data() + s * nu;
            for (std::int64_t k = 0; k < nu; ++k)
              for (std::int64_t u = 0; u < nl; ++u) tw[k * nl + u] = t[k] * W(k, u);
            blas::gemm(true, false, nl, nl, nu, T(1), W.data, W.row_stride, tw.data(), nl, T(0),
                       Tl.data() + s * nl * nl, nl);
          }
        }
      } else if (l + 1 < L) {
        // general: T_l = D W^T T_{l+1} W D, two GEMMs per sample (the first batched)
        scratch.resize(static_cast<size_t>(n * nu * nl));
        blas::gemm(false, false, n * nu, nl, nu, T(1), Tst[l + 1].data(), nu, W.data, W.row_stride,
                   T(0), scratch.data(), nl);
        std::vector<T> full(need_full(l) ? 0 : static_cast<size_t>(nl * nl));
        for (std::int64_t s = 0; s < n; ++s) {
          T* dst = need_full(l) ? Tl.data() + s * nl * nl : full.data();
          blas::gemm(true, false, nl, nl, nu, T(1), W.data, W.row_stride, scratch.data() + s * nu * nl,
                     nl, T(0), dst, nl);
          for (std::int64_t u = 0; u < nl; ++u) td[s * nl + u] = dst[u * nl + u];
        }
        for (std::int64_t i = 0; i < n * nl; ++i) td[i] *= d1[i] * d1[i];
      }
      // scale the full matrices by phi' on both sides
      if (need_full(l) && l + 1 < L) {
        detail::parallel_for(n, nl * nl, [&](std::int64_t s) {
          T* Ts = Tl.data() + s * nl * nl;
          const T* g1 = d1 + s * nl;
          for (std::int64_t u = 0; u < nl; ++u)
            for (std::int64_t v = 0; v < nl; ++v) Ts[u * nl + v] *= g1[u] * g1[v];
        });
      }
      // + diag(ehat_l * phi''(z_l))
      for (std::int64_t s = 0; s < n; ++s)
        for (std::int64_t u = 0; u < nl; ++u) {
          const T add = ehat[l][s * nl + u] * d2[s * nl + u];
          td[s * nl + u] += add;
          if (need_full(l)) Tl[s * nl * nl + u * nl + u] += add;
        }
      // diag and unit shapes: T_{l+1} is not needed once T_l exists
      if (!blocks && !keep_all && l + 1 < L) Tst[l + 1].clear();
    }
  }

  /// block += sign * sum_{s in [s0, s1)} T_l[s] (x) abar abar^T (the within-layer output
  /// Hessian term), into a block of leading dimension ld whose rows/cols are the layer's
  /// local indices.
  void add_within_layer(std::int64_t l, std::int64_t n, std::int64_t s0, std::int64_t s1,
                        double* block, std::int64_t ld, double sign) {
    const std::int64_t no = g.n_out[l - 1], ni = g.n_in[l - 1], k = ni + 1;
    if (l == L) return;  // T_L = 0: the last layer is affine in its parameters
    const T* A = augmented(l, n);
    const T* Tl = Tst[l].data();
    detail::parallel_for(no * k, (s1 - s0) * no * k, [&](std::int64_t rowid) {
      const std::int64_t u = rowid / k, j = rowid % k;
      double* brow = block + local_index(u, j, no, ni) * ld;
      for (std::int64_t s = s0; s < s1; ++s) {
        const T* a = A + s * k;
        const T* Ts = Tl + s * no * no + u * no;
        const double aj = sign * double(a[j]);
        if (aj == 0.0) continue;
        for (std::int64_t v = 0; v < no; ++v) {
          const double t = double(Ts[v]) * aj;
          if (t == 0.0) continue;
          for (std::int64_t kk = 0; kk < k; ++kk) brow[local_index(v, kk, no, ni)] += t * double(a[kk]);
        }
      }
    });
  }

  /// The cross-layer output-Hessian terms (l < m) of math/variance.md 5.2 for samples
  /// [s0, s1), times sign, into the upper triangle of the P x P matrix `mat`. O(P^2) a sample.
  void add_cross_layer(std::int64_t s0, std::int64_t s1, double* mat, double sign) {
    const auto& w = mlp.widths();
    const std::int64_t P = g.P;
    for (std::int64_t s = s0; s < s1; ++s) {
      for (std::int64_t l = 1; l < L; ++l) {
        const std::int64_t nl = w[l];
        // A_{l->m}: d z_m / d z_l, n_m x n_l, starting from the identity at m = l.
        std::vector<double> Aprev(static_cast<size_t>(nl * nl), 0.0);
        for (std::int64_t u = 0; u < nl; ++u) Aprev[u * nl + u] = 1.0;
        for (std::int64_t m = l + 1; m <= L; ++m) {
          const std::int64_t nm = w[m], np = w[m - 1];
          const auto& W = mlp.layer(m).weight;
          const T* d1 = f.d1[m - 1].data() + s * np;
          std::vector<double> Am(static_cast<size_t>(nm * nl), 0.0);
          for (std::int64_t r = 0; r < nm; ++r)
            for (std::int64_t k = 0; k < np; ++k) {
              const double wk = double(W(r, k)) * double(d1[k]);
              if (wk == 0.0) continue;
              for (std::int64_t u = 0; u < nl; ++u) Am[r * nl + u] += wk * Aprev[k * nl + u];
            }
          std::vector<double> K1(static_cast<size_t>(nm * nl), 0.0);
          if (m < L) {
            const T* Tm = Tst[m].data() + s * nm * nm;
            for (std::int64_t r = 0; r < nm; ++r)
              for (std::int64_t v = 0; v < nm; ++v) {
                const double t = double(Tm[r * nm + v]);
                if (t == 0.0) continue;
                for (std::int64_t u = 0; u < nl; ++u) K1[r * nl + u] += t * Am[v * nl + u];
              }
          }
          const T* em = e[m].data() + s * nm;
          const std::int64_t ni_l = w[l - 1], ni_m = np;
          const T* al = f.act(l - 1) + s * f.act_ld(mlp, l - 1);
          const T* am = f.act(m - 1) + s * f.act_ld(mlp, m - 1);
          const std::int64_t off_l = g.param_off[l - 1], off_m = g.param_off[m - 1];
          for (std::int64_t u = 0; u < nl; ++u)
            for (std::int64_t j = 0; j <= ni_l; ++j) {
              const double aj = j < ni_l ? double(al[j]) : 1.0;
              if (aj == 0.0) continue;
              double* row = mat + (off_l + local_index(u, j, nl, ni_l)) * P + off_m;
              for (std::int64_t r = 0; r < nm; ++r) {
                const double k1 = K1[r * nl + u], er = double(em[r]);
                for (std::int64_t k = 0; k <= ni_m; ++k) {
                  double v = k1 * (k < ni_m ? double(am[k]) : 1.0);
                  if (k < ni_m) v += er * double(d1[k]) * Aprev[k * nl + u];
                  row[local_index(r, k, nm, ni_m)] += sign * aj * v;
                }
              }
            }
          Aprev.swap(Am);
        }
      }
    }
  }

  void chunk(std::int64_t s0, MatrixView<const T> Xc, MatrixView<const T> yc) {
    const std::int64_t n = Xc.rows, M = rows_per_sample();
    const bool hess = opt.estimator == Estimator::hessian;
    detail::forward_chunk(mlp, Xc, f, true, hess);
    top_rows(s0, n, yc);
    if (hess) hessian_pass(n, false);
    const Shape shape = opt.shape;
    if (shape == Shape::full) rows.assign(static_cast<size_t>(n * M * g.P), T(0));
    detail::backward_chunk(mlp, f, D, buf, M, [&](std::int64_t l, const T* Dl, std::int64_t no) {
      const std::int64_t ni = g.n_in[l - 1], k = ni + 1;
      if (shape == Shape::diag || shape == Shape::unit) {
        // q[s,u] = sum_m Dl[s*M+m, u]^2 (minus the Hessian term's diagonal)
        q.assign(static_cast<size_t>(n * no), T(0));
        for (std::int64_t s = 0; s < n; ++s)
          for (std::int64_t m = 0; m < M; ++m) {
            const T* d = Dl + (s * M + m) * no;
            for (std::int64_t u = 0; u < no; ++u) q[s * no + u] += d[u] * d[u];
          }
        if (hess && l < L)
          for (std::int64_t i = 0; i < n * no; ++i) q[i] -= tdiag[l][i];
        const T* Aa = augmented(l, n);
        if (shape == Shape::diag) {
          scratch.resize(static_cast<size_t>(n * k));
          for (std::int64_t i = 0; i < n * k; ++i) scratch[i] = Aa[i] * Aa[i];
          detail::accumulate_diag(acc + g.param_off[l - 1], q.data(), no, scratch.data(), n, ni, tmp);
        } else {
          detail::accumulate_unit(acc + g.block_off[l - 1], q.data(), no, Aa, n, k, scratch, rows, tmp);
        }
        return;
      }
      // layer / full: pseudo-gradient rows
      const std::int64_t Dw = no * k;
      const std::int64_t ldr = shape == Shape::full ? g.P : Dw;
      const std::int64_t col0 = shape == Shape::full ? g.param_off[l - 1] : 0;
      if (shape == Shape::layer) rows.assign(static_cast<size_t>(n * M * Dw), T(0));
      const T* A = f.act(l - 1);
      const std::int64_t lda = f.act_ld(mlp, l - 1);
      detail::parallel_for(n * M, Dw, [&](std::int64_t r) {
        const T* a = A + (r / M) * lda;
        const T* d = Dl + r * no;
        T* o = rows.data() + r * ldr + col0;
        for (std::int64_t u = 0; u < no; ++u)
          for (std::int64_t j = 0; j < ni; ++j) o[u * ni + j] = d[u] * a[j];
        for (std::int64_t u = 0; u < no; ++u) o[no * ni + u] = d[u];
      });
      if (shape == Shape::layer) {
        double* blk = acc + g.block_off[l - 1];
        blas_accumulate<T>(blk, Dw, Dw, Dw, tmp, [&](auto* dst, std::int64_t ldd, T beta) {
          blas::syrk_rows(Dw, n * M, T(1), rows.data(), Dw, beta, dst, ldd);
        }, true);
        if (hess) add_within_layer(l, n, 0, n, blk, Dw, -1.0);
      }
    });
    if (shape == Shape::full) {
      blas_accumulate<T>(acc, g.P, g.P, g.P, tmp, [&](auto* dst, std::int64_t ldd, T beta) {
        blas::syrk_rows(g.P, n * M, T(1), rows.data(), g.P, beta, dst, ldd);
      }, true);
      if (hess) {
        for (std::int64_t l = 1; l < L; ++l)
          add_within_layer(l, n, 0, n, acc + g.param_off[l - 1] * g.P + g.param_off[l - 1], g.P, -1.0);
        add_cross_layer(0, n, acc, -1.0);
      }
    }
  }

  /// out = scale * acc, every square block mirrored from its upper triangle.
  template <class Out>
  void emit(double scale, Out& out) {
    if (opt.shape == Shape::diag) {
      for (std::int64_t i = 0; i < g.total; ++i) out[i] = T(acc[i] * scale);
      return;
    }
    if (opt.shape == Shape::full) detail::emit_symmetric_block<T>(acc, scale, out, 0, g.P);
    for (std::int64_t l = 1; l <= L; ++l) {
      const std::int64_t no = g.n_out[l - 1], k = g.n_in[l - 1] + 1;
      if (opt.shape == Shape::layer) detail::emit_symmetric_block<T>(acc, scale, out, g.block_off[l - 1], no * k);
      if (opt.shape == Shape::unit)
        for (std::int64_t u = 0; u < no; ++u)
          detail::emit_symmetric_block<T>(acc, scale, out, g.block_off[l - 1] + u * k * k, k);
    }
  }
};

template <class T>
std::int64_t per_sample_bytes(const Mlp<T>& mlp, const FisherOptions& opt) {
  const std::int64_t C = mlp.output_dim();
  const std::int64_t M = opt.estimator == Estimator::score ? opt.samples
                         : opt.estimator == Estimator::empirical ? 1 : C;
  std::int64_t b = 4 * detail::sum_widths(mlp) + 2 * M * detail::max_width(mlp) + M * C;
  if (opt.shape == Shape::full) b += M * mlp.n_params();
  if (opt.shape == Shape::layer) {
    std::int64_t mx = 0;
    for (std::int64_t l = 1; l <= mlp.n_layers(); ++l)
      mx = std::max(mx, mlp.widths()[l] * (mlp.widths()[l - 1] + 1));
    b += M * mx;
  }
  if (opt.estimator == Estimator::hessian) {
    const std::int64_t L = mlp.n_layers();
    const bool blocks = opt.shape == Shape::layer || opt.shape == Shape::full;
    for (std::int64_t l = 1; l < L; ++l) {
      const std::int64_t nl = mlp.widths()[l];
      b += 3 * nl;  // e, ehat, diag(T_l)
      if (blocks || (l > 1 && l < L - 1)) b += nl * nl + nl * mlp.widths()[l + 1];
    }
  }
  return b * static_cast<std::int64_t>(sizeof(T));
}

/// Workspace budget of a chunk. Unit blocks re-read every (n_in+1)^2 block once per chunk,
/// so they get larger chunks (their SYRKs are then compute-bound).
inline std::int64_t chunk_budget(const FisherOptions& opt) {
  return opt.shape == Shape::unit ? (std::int64_t(128) << 20) : (std::int64_t(32) << 20);
}

}  // namespace

template <class T>
std::int64_t fisher_size(const Mlp<T>& mlp, Shape shape) {
  return geometry(mlp, shape).total;
}

template <class T>
std::int64_t fisher_workspace_bytes(const Mlp<T>& mlp, const FisherOptions& opt, std::int64_t N) {
  const std::int64_t chunk = detail::pick_chunk(opt.chunk, N, per_sample_bytes(mlp, opt), chunk_budget(opt));
  std::int64_t acc = std::is_same_v<T, double> ? 0 : fisher_size(mlp, opt.shape) * 8;
  return acc + chunk * per_sample_bytes(mlp, opt);
}

template <class T>
void fisher(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
            const FisherOptions& opt, VectorView<T> out) {
  detail::check_inputs(mlp, X, "X");
  check_head(head, mlp.output_dim());
  FISHERKIT_CHECK(opt.samples >= 1, "argument 'samples' must be >= 1, got ", opt.samples);
  if (opt.estimator == Estimator::empirical) {
    FISHERKIT_CHECK(y.data != nullptr && y.rows > 0, "the empirical estimator needs labels: "
                    "argument 'y' is missing");
    check_labels(head, y, X.rows, mlp.output_dim(), "y");
  }
  detail::check_host(out, "out");
  const std::int64_t size = fisher_size(mlp, opt.shape);
  FISHERKIT_CHECK(out.size == size, "argument 'out' must have ", size, " entries for shape '",
                  shape_name(opt.shape), "', got ", out.size);
  const std::int64_t N = X.rows;
  std::vector<double> owned;
  double* acc;
  if constexpr (std::is_same_v<T, double>) {
    if (out.stride == 1) {
      acc = out.data;
      std::fill(acc, acc + size, 0.0);
    } else {
      owned.assign(static_cast<size_t>(size), 0.0);
      acc = owned.data();
    }
  } else {
    owned.assign(static_cast<size_t>(size), 0.0);
    acc = owned.data();
  }
  FisherRun<T> run(mlp, head, opt, acc);
  const std::int64_t chunk = detail::pick_chunk(opt.chunk, N, per_sample_bytes(mlp, opt),
                                                chunk_budget(opt));
  for (std::int64_t s0 = 0; s0 < N; s0 += chunk) {
    const std::int64_t n = std::min(chunk, N - s0);
    MatrixView<const T> yc = opt.estimator == Estimator::empirical ? y.rows_slice(s0, n) : y;
    run.chunk(s0, X.rows_slice(s0, n), yc);
  }
  run.emit(1.0 / double(N), out);
}

template <class T>
void output_hessians(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk) {
  detail::check_inputs(mlp, X, "X");
  const std::int64_t N = X.rows, C = mlp.output_dim(), P = mlp.n_params();
  detail::check_host(out, "out");
  detail::check_shape(out, N, C * P * P, "out");
  detail::check_rows_unit_stride(out, "out");
  FisherOptions opt;
  opt.estimator = Estimator::hessian;
  opt.shape = Shape::full;
  opt.chunk = chunk;
  Head head;  // unused by the Hessian pass; the contraction weights are set directly
  std::vector<double> buf(static_cast<size_t>(P * P));
  FisherRun<T> run(mlp, head, opt, buf.data());
  const std::int64_t ch = detail::pick_chunk(chunk, N, per_sample_bytes(mlp, opt));
  for (std::int64_t s0 = 0; s0 < N; s0 += ch) {
    const std::int64_t n = std::min(ch, N - s0);
    detail::forward_chunk(mlp, X.rows_slice(s0, n), run.f, true, true);
    for (std::int64_t c = 0; c < C; ++c) {
      // H_c is the Hessian of psi = e_c^T h: the Hessian pass with taubar = e_c
      run.taubar.assign(static_cast<size_t>(n * C), T(0));
      for (std::int64_t s = 0; s < n; ++s) run.taubar[s * C + c] = T(1);
      run.hessian_pass(n, true);
      for (std::int64_t s = 0; s < n; ++s) {
        std::fill(buf.begin(), buf.end(), 0.0);
        for (std::int64_t l = 1; l < mlp.n_layers(); ++l)
          run.add_within_layer(l, n, s, s + 1, buf.data() + run.g.param_off[l - 1] * P + run.g.param_off[l - 1], P, 1.0);
        run.add_cross_layer(s, s + 1, buf.data(), 1.0);
        detail::symmetrise_block(buf.data(), P);
        T* o = out.row(s0 + s) + c * P * P;
        for (std::int64_t i = 0; i < P * P; ++i) o[i] = T(buf[i]);
      }
    }
  }
}

#define FISHERKIT_INSTANTIATE_FISHER(T)                                                        \
  template std::int64_t fisher_size<T>(const Mlp<T>&, Shape);                                  \
  template std::int64_t fisher_workspace_bytes<T>(const Mlp<T>&, const FisherOptions&,         \
                                                  std::int64_t);                               \
  template void fisher<T>(const Mlp<T>&, const Head&, MatrixView<const T>, MatrixView<const T>, \
                          const FisherOptions&, VectorView<T>);                                \
  template void output_hessians<T>(const Mlp<T>&, MatrixView<const T>, MatrixView<T>, std::int64_t);
FISHERKIT_INSTANTIATE_FISHER(float)
FISHERKIT_INSTANTIATE_FISHER(double)

}  // namespace fisherkit
