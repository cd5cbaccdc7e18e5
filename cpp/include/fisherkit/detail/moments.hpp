// Moments of a head's sufficient statistic t at one row h of natural parameters, as
// contractions with vectors, and the per-unit variance scalars built from them.
// Host-and-device; docs/maths/heads.rst#heads-fourth-moments
//
// Notation (tau = t - eta(h), the centred statistic):
//   I(u,v)        = E[(u.tau)(v.tau)]                     covariance of t (= Hessian of F)
//   kappa3(u,v,w) = E[(u.tau)(v.tau)(w.tau)]              3rd cumulant = 3rd central moment
//   K(u,v,w,z)    = E[(u.tau)(v.tau)(w.tau)(z.tau)]       4th central moment
//   kappa4        = K - I(u,v)I(w,z) - I(u,w)I(v,z) - I(u,z)I(v,w)
// None of these tensors is ever formed: every function is O(C) time per call, allocates
// nothing, and reads its vectors through strided pointers.
//
// Precision: the vectors and h are read as T and promoted; the head's mean parameters
// (p, lambda, p(1-p)), the centring means and every sum are computed in double, and the
// results are returned in double (the caller rounds to T). This is what keeps the
// categorical variance forms accurate in float32 (docs/maths/heads.rst#heads-fourth-moments): the centred
// ("stable") forms are used throughout, never sum p u^4 - q^2 style cancellations.
#pragma once
#include <cstdint>

#include "fisherkit/detail/hd.hpp"
#include "fisherkit/detail/heads.hpp"
#include "fisherkit/detail/math.hpp"

namespace fisherkit::detail {

/// A read-only strided vector of T, read as double: element i is p[i * s].
template <class T>
struct StridedVec {
  const T* p = nullptr;
  std::int64_t s = 1;
  FISHERKIT_HD StridedVec() {}
  FISHERKIT_HD StridedVec(const T* ptr, std::int64_t stride = 1) : p(ptr), s(stride) {}
  FISHERKIT_HD double operator[](std::int64_t i) const { return double(p[i * s]); }
  FISHERKIT_HD bool empty() const { return p == nullptr; }
};

/// Per-coordinate moments of an independent head (Bernoulli or Poisson):
/// w = Var t_c (the weight omega), k3 = kappa3_c, k4 = kappa4_c, and
/// a4 = kappa4_c + 2 w^2 = Var((t_c - eta_c)^2) >= 0 computed without cancellation
/// (Bernoulli: v(1-2p)^2; Poisson: lambda + 2 lambda^2).
struct CoordMoments {
  double w, k3, k4, a4;
};

/// One row of a head, ready for contractions: its kind, C, 1/sigma^2 (Gaussian), the row h
/// and, for the categorical head, logsumexp(h). `cache` (optional, 2C doubles filled by
/// make_head_row) holds the mean parameter and its complement per coordinate so that the
/// exponentials are taken once per row instead of once per pass.
template <class T>
struct HeadRow {
  using Vec = StridedVec<T>;
  HeadKind kind = HeadKind::gaussian;
  std::int64_t C = 0;
  double inv_s2 = 1.0;
  Vec h;
  double lse = 0.0;
  const double* cache = nullptr;

  /// Mean parameter of coordinate c: p_c (categorical, Bernoulli), lambda_c (Poisson), h_c
  /// (Gaussian).
  FISHERKIT_HD double mean(std::int64_t c) const {
    if (cache) return cache[2 * c];
    switch (kind) {
      case HeadKind::categorical: return exp(h[c] - lse);
      case HeadKind::bernoulli: return sigmoid(h[c]);
      case HeadKind::poisson: return exp(h[c]);
      case HeadKind::gaussian: break;
    }
    return h[c];
  }
  /// 1 - p_c computed without cancellation (Bernoulli: sigmoid(-h_c)).
  FISHERKIT_HD double complement(std::int64_t c) const {
    if (cache) return cache[2 * c + 1];
    if (kind == HeadKind::bernoulli) return sigmoid(-h[c]);
    return 1.0 - mean(c);
  }
  /// Moments of coordinate c of an independent head (Bernoulli, Poisson).
  FISHERKIT_HD CoordMoments coord(std::int64_t c) const {
    const double m = mean(c);
    if (kind == HeadKind::poisson) return CoordMoments{m, m, m, m + 2.0 * m * m};
    const double mc = complement(c), v = m * mc, d = mc - m;  // d = 1 - 2p
    return CoordMoments{v, v * d, v * (1.0 - 6.0 * v), v * d * d};
  }
  FISHERKIT_HD bool independent() const {
    return kind == HeadKind::bernoulli || kind == HeadKind::poisson;
  }
};

/// Build the HeadRow of one row h (C values, stride hs) of a head (kind, sigma). When
/// `cache` is not null it must hold 2C doubles and is filled with (mean, complement) per
/// coordinate. Cost O(C) exponentials.
template <class T>
FISHERKIT_HD HeadRow<T> make_head_row(HeadKind kind, double sigma, StridedVec<T> h, std::int64_t C,
                                      double* cache = nullptr) {
  HeadRow<T> r;
  r.kind = kind;
  r.C = C;
  r.inv_s2 = 1.0 / (sigma * sigma);
  r.h = h;
  if (kind == HeadKind::categorical) {
    double m = h[0];
    for (std::int64_t c = 1; c < C; ++c) m = h[c] > m ? h[c] : m;
    double s = 0.0;
    for (std::int64_t c = 0; c < C; ++c) s += exp(h[c] - m);
    r.lse = m + log(s);
  }
  if (cache) {
    for (std::int64_t c = 0; c < C; ++c) {
      cache[2 * c] = r.mean(c);
      cache[2 * c + 1] = r.complement(c);
    }
    r.cache = cache;
  }
  return r;
}

/// The row over a cache that make_head_row filled for the same h: no exponentials (a pass
/// that reads one row per (input, unit) builds it this way once per input's cache).
template <class T>
FISHERKIT_HD HeadRow<T> cached_head_row(HeadKind kind, double sigma, StridedVec<T> h, std::int64_t C,
                                        const double* cache) {
  HeadRow<T> r;
  r.kind = kind;
  r.C = C;
  r.inv_s2 = 1.0 / (sigma * sigma);
  r.h = h;
  r.cache = cache;
  return r;
}

// ------------------------------------------------------------------ contractions

/// I(h)(u, v) = u^T I(h) v (docs/maths/heads.rst#heads-fourth-moments). Categorical: the centred
/// form sum_c p_c u~_c v~_c. O(C).
template <class T>
FISHERKIT_HD double head_quad(const HeadRow<T>& r, typename HeadRow<T>::Vec u,
                              typename HeadRow<T>::Vec v) {
  double acc = 0.0;
  switch (r.kind) {
    case HeadKind::gaussian:
      for (std::int64_t c = 0; c < r.C; ++c) acc += u[c] * v[c];
      return acc * r.inv_s2;
    case HeadKind::categorical: {
      double mu = 0.0, mv = 0.0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        const double p = r.mean(c);
        mu += p * u[c];
        mv += p * v[c];
      }
      for (std::int64_t c = 0; c < r.C; ++c) acc += r.mean(c) * (u[c] - mu) * (v[c] - mv);
      return acc;
    }
    case HeadKind::bernoulli:
    case HeadKind::poisson:
      for (std::int64_t c = 0; c < r.C; ++c) acc += r.coord(c).w * u[c] * v[c];
      return acc;
  }
  return acc;
}

/// kappa3(u, v, w) = E[(u.tau)(v.tau)(w.tau)] (docs/maths/heads.rst#heads-fourth-moments): 0 for the Gaussian,
/// sum_c p_c u~ v~ w~ (categorical), sum_c kappa3_c u_c v_c w_c (independent). O(C).
template <class T>
FISHERKIT_HD double head_kappa3(const HeadRow<T>& r, typename HeadRow<T>::Vec u,
                                typename HeadRow<T>::Vec v, typename HeadRow<T>::Vec w) {
  double acc = 0.0;
  switch (r.kind) {
    case HeadKind::gaussian:
      return 0.0;
    case HeadKind::categorical: {
      double mu = 0.0, mv = 0.0, mw = 0.0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        const double p = r.mean(c);
        mu += p * u[c];
        mv += p * v[c];
        mw += p * w[c];
      }
      for (std::int64_t c = 0; c < r.C; ++c)
        acc += r.mean(c) * (u[c] - mu) * (v[c] - mv) * (w[c] - mw);
      return acc;
    }
    case HeadKind::bernoulli:
    case HeadKind::poisson:
      for (std::int64_t c = 0; c < r.C; ++c) acc += r.coord(c).k3 * u[c] * v[c] * w[c];
      return acc;
  }
  return acc;
}

namespace moments_impl {
/// The six pairwise I contractions of (u, v, w, z) and the diagonal 4th-order sum
/// (categorical: sum p u~v~w~z~ = K; independent: sum kappa4_c u v w z; Gaussian: 0).
struct Four {
  double diag, uv, uw, uz, vw, vz, wz;
  FISHERKIT_HD double pairings() const { return uv * wz + uw * vz + uz * vw; }
};
template <class T>
FISHERKIT_HD Four four(const HeadRow<T>& r, StridedVec<T> u, StridedVec<T> v, StridedVec<T> w,
                       StridedVec<T> z) {
  Four f{0, 0, 0, 0, 0, 0, 0};
  double mu = 0.0, mv = 0.0, mw = 0.0, mz = 0.0;
  if (r.kind == HeadKind::categorical) {
    for (std::int64_t c = 0; c < r.C; ++c) {
      const double p = r.mean(c);
      mu += p * u[c];
      mv += p * v[c];
      mw += p * w[c];
      mz += p * z[c];
    }
  }
  for (std::int64_t c = 0; c < r.C; ++c) {
    const double a = u[c] - mu, b = v[c] - mv, d = w[c] - mw, e = z[c] - mz;
    double wt, k4;
    if (r.kind == HeadKind::gaussian) {
      wt = r.inv_s2;
      k4 = 0.0;
    } else if (r.kind == HeadKind::categorical) {
      wt = r.mean(c);
      k4 = wt;  // the categorical K is sum_c p_c u~ v~ w~ z~
    } else {
      const CoordMoments m = r.coord(c);
      wt = m.w;
      k4 = m.k4;
    }
    f.diag += k4 * a * b * d * e;
    f.uv += wt * a * b;
    f.uw += wt * a * d;
    f.uz += wt * a * e;
    f.vw += wt * b * d;
    f.vz += wt * b * e;
    f.wz += wt * d * e;
  }
  return f;
}
}  // namespace moments_impl

/// K(u, v, w, z) = E[(u.tau)(v.tau)(w.tau)(z.tau)], the 4th central moment contraction
/// (docs/maths/heads.rst#heads-fourth-moments). Gaussian: sigma^-4 times the three pairings; categorical:
/// sum_c p_c u~ v~ w~ z~; independent: sum_c kappa4_c u v w z + the three pairings of I.
/// O(C).
template <class T>
FISHERKIT_HD double head_fourth(const HeadRow<T>& r, typename HeadRow<T>::Vec u,
                                typename HeadRow<T>::Vec v, typename HeadRow<T>::Vec w,
                                typename HeadRow<T>::Vec z) {
  const moments_impl::Four f = moments_impl::four(r, u, v, w, z);
  if (r.kind == HeadKind::categorical) return f.diag;
  return f.diag + f.pairings();
}

/// kappa4(u, v, w, z) = K(u,v,w,z) minus the three pairings of I (docs/maths/heads.rst#heads-fourth-moments). Zero for
/// the Gaussian; sum_c kappa4_c u v w z for independent heads (kappa4_c = v(1-6v) Bernoulli,
/// lambda Poisson); for the categorical head the difference of the two (it may cancel). O(C).
template <class T>
FISHERKIT_HD double head_kappa4(const HeadRow<T>& r, typename HeadRow<T>::Vec u,
                                typename HeadRow<T>::Vec v, typename HeadRow<T>::Vec w,
                                typename HeadRow<T>::Vec z) {
  if (r.kind == HeadKind::gaussian) return 0.0;
  const moments_impl::Four f = moments_impl::four(r, u, v, w, z);
  if (r.kind == HeadKind::categorical) return f.diag - f.pairings();
  return f.diag;
}

// ------------------------------------------------------------------ per-unit scalars

/// The per-unit scalars of docs/maths/variance.rst#variance-per-unit-scalars (one unit, one input, one draw).
struct UnitScalars {
  double q;  ///< g^T I g: F_ii = abar_j^2 q
  double r;  ///< K(g,g,g,g) - q^2 = Var((g.tau)^2): V1_i = abar_j^4 r
  double w;  ///< tau_d^T I tau_d = Var(tau_d.tau): V2_i = abar_j^4 w
  double c;  ///< -kappa3(g, g, tau_d) = Cov((g.tau)^2, -tau_d.tau): C12_i = abar_j^4 c
};

/// q, r, w, c of one unit from its backward column g = G_l[:, u] and output-Hessian
/// diagonal tau_d = T_l[:, u, u] (C values each), exactly per the table of docs/maths/variance.rst#variance-output-hessian:
///   Gaussian     q = |g|^2/s2, r = 2 q^2, w = |tau_d|^2/s2, c = 0
///   categorical  q = sum p g~^2, r = sum p (g~^2 - q)^2 (stable form; never the raw
///                sum p g~^4 - q^2), w = sum p tau~^2, c = -sum p g~^2 tau~
///   Bernoulli/Poisson  q = sum omega g^2, w = sum omega tau_d^2, c = -sum kappa3_c g^2 tau_d,
///                r = sum kappa4_c g^4 + 2 q^2 evaluated as
///                sum a4_c g^4 + 4 sum_{c<c'} s_c s_c' with s = omega g^2 (all terms >= 0).
/// When tau_d is empty, w and c are returned as 0. O(C), at most three passes.
template <class T>
FISHERKIT_HD UnitScalars head_unit_scalars(const HeadRow<T>& r, typename HeadRow<T>::Vec g,
                                           typename HeadRow<T>::Vec td) {
  UnitScalars out{0.0, 0.0, 0.0, 0.0};
  const bool has_t = !td.empty();
  switch (r.kind) {
    case HeadKind::gaussian: {
      double gg = 0.0, tt = 0.0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        gg += g[c] * g[c];
        if (has_t) tt += td[c] * td[c];
      }
      out.q = gg * r.inv_s2;
      out.r = 2.0 * out.q * out.q;
      out.w = tt * r.inv_s2;
      return out;
    }
    case HeadKind::categorical: {
      double mg = 0.0, mt = 0.0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        const double p = r.mean(c);
        mg += p * g[c];
        if (has_t) mt += p * td[c];
      }
      for (std::int64_t c = 0; c < r.C; ++c) {
        const double p = r.mean(c), a = g[c] - mg, a2 = a * a;
        out.q += p * a2;
        if (has_t) {
          const double b = td[c] - mt;
          out.w += p * b * b;
          out.c -= p * a2 * b;
        }
      }
      for (std::int64_t c = 0; c < r.C; ++c) {
        const double a = g[c] - mg, e = a * a - out.q;
        out.r += r.mean(c) * e * e;
      }
      return out;
    }
    case HeadKind::bernoulli:
    case HeadKind::poisson: {
      double diag = 0.0, cross = 0.0, prefix = 0.0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        const CoordMoments m = r.coord(c);
        const double g2 = g[c] * g[c], s = m.w * g2;
        out.q += s;
        diag += m.a4 * g2 * g2;
        cross += s * prefix;
        prefix += s;
        if (has_t) {
          out.w += m.w * td[c] * td[c];
          out.c -= m.k3 * g2 * td[c];
        }
      }
      out.r = diag + 4.0 * cross;
      return out;
    }
  }
  return out;
}

/// Entries of the layer-block variances of docs/maths/variance.rst#variance-layer-blocks for a pair of units (u, u'):
///   U1 = Var((g_u.tau)(g_u'.tau)) = kappa4(g_u,g_u',g_u,g_u') + q_u q_u' + (g_u^T I g_u')^2,
///   U2 = tau^T I tau with tau = T_l[:, u, u'].
struct UnitPairScalars {
  double u1, u2;
};

/// U1[u,u'] from the backward columns a = g_u, b = g_u' and U2[u,u'] from
/// t = T_l[:, u, u'] (empty t: U2 = 0). Forms without cancellation:
///   Gaussian     U1 = (|a|^2 |b|^2 + (a.b)^2)/s2^2,  U2 = |t|^2/s2
///   categorical  U1 = sum p (a~ b~ - F_ab)^2 with F_ab = sum p a~ b~,  U2 = sum p t~^2
///   independent  U1 = sum a4_c a^2 b^2 + sum_{c<c'} omega omega' (a_c b_c' + a_c' b_c)^2
///                (evaluated with prefix sums in O(C)),  U2 = sum omega t^2.
/// U1(g, g) equals r of head_unit_scalars. O(C).
template <class T>
FISHERKIT_HD UnitPairScalars head_unit_pair_scalars(const HeadRow<T>& r,
                                                    typename HeadRow<T>::Vec a,
                                                    typename HeadRow<T>::Vec b,
                                                    typename HeadRow<T>::Vec t) {
  UnitPairScalars out{0.0, 0.0};
  const bool has_t = !t.empty();
  switch (r.kind) {
    case HeadKind::gaussian: {
      double aa = 0.0, bb = 0.0, ab = 0.0, tt = 0.0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        aa += a[c] * a[c];
        bb += b[c] * b[c];
        ab += a[c] * b[c];
        if (has_t) tt += t[c] * t[c];
      }
      out.u1 = (aa * bb + ab * ab) * r.inv_s2 * r.inv_s2;
      out.u2 = tt * r.inv_s2;
      return out;
    }
    case HeadKind::categorical: {
      double ma = 0.0, mb = 0.0, mt = 0.0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        const double p = r.mean(c);
        ma += p * a[c];
        mb += p * b[c];
        if (has_t) mt += p * t[c];
      }
      double f = 0.0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        const double p = r.mean(c);
        f += p * (a[c] - ma) * (b[c] - mb);
        if (has_t) out.u2 += p * (t[c] - mt) * (t[c] - mt);
      }
      for (std::int64_t c = 0; c < r.C; ++c) {
        const double e = (a[c] - ma) * (b[c] - mb) - f;
        out.u1 += r.mean(c) * e * e;
      }
      return out;
    }
    case HeadKind::bernoulli:
    case HeadKind::poisson: {
      double diag = 0.0, cross = 0.0, A = 0.0, B = 0.0, X = 0.0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        const CoordMoments m = r.coord(c);
        const double ac = a[c], bc = b[c];
        diag += m.a4 * ac * ac * bc * bc;
        cross += m.w * (bc * bc * A + ac * ac * B + 2.0 * ac * bc * X);
        A += m.w * ac * ac;
        B += m.w * bc * bc;
        X += m.w * ac * bc;
        if (has_t) out.u2 += m.w * t[c] * t[c];
      }
      out.u1 = diag + cross;
      return out;
    }
  }
  return out;
}

/// U1 of head_unit_pair_scalars as sums over the coordinates, for Gram forms over many
/// inputs and unit pairs (the variance of a sampled KFAC factor,
/// docs/maths/kfac.rst#kfac-variance):
///   U1(a, b) = sum_c kappa_c a_c^2 b_c^2 + qq I(a, a) I(b, b) + sign (sum_c omega_c a_c b_c)^2
/// with, per head,
///   Gaussian     kappa = 0, omega = 1/s2, qq = 1, sign = +1
///   categorical  a, b centred (a - p.a), kappa = omega = p_c, qq = 0, sign = -1
///                (U1 = sum p a~^2 b~^2 - F_ab^2, the expansion of sum p (a~ b~ - F_ab)^2)
///   Bernoulli/Poisson  kappa = kappa4_c, omega = Var t_c, qq = 1, sign = +1.
struct PairGramWeights {
  double kappa, omega;
};

template <class T>
FISHERKIT_HD PairGramWeights head_pair_gram_weights(const HeadRow<T>& r, std::int64_t c) {
  switch (r.kind) {
    case HeadKind::gaussian: return PairGramWeights{0.0, r.inv_s2};
    case HeadKind::categorical: {
      const double p = r.mean(c);
      return PairGramWeights{p, p};
    }
    case HeadKind::bernoulli:
    case HeadKind::poisson: {
      const CoordMoments m = r.coord(c);
      return PairGramWeights{m.k4, m.w};
    }
  }
  return PairGramWeights{0.0, 0.0};
}
FISHERKIT_HD bool head_pair_centred(HeadKind k) { return head_covariance_centred(k); }
FISHERKIT_HD double head_pair_qq(HeadKind k) { return k == HeadKind::categorical ? 0.0 : 1.0; }
FISHERKIT_HD double head_pair_sign(HeadKind k) { return k == HeadKind::categorical ? -1.0 : 1.0; }

/// The HeadRow of row h whose (mean, complement) cache make_head_row filled earlier: no
/// exponential is taken again. O(1).
template <class T>
FISHERKIT_HD HeadRow<T> cached_head_row(HeadKind kind, double sigma, const T* h, std::int64_t C,
                                        const double* cache) {
  HeadRow<T> r;
  r.kind = kind;
  r.C = C;
  r.inv_s2 = 1.0 / (sigma * sigma);
  r.h = StridedVec<T>(h);
  r.cache = cache;
  return r;
}

// ------------------------------------------------------------------ spectral constants

/// Head constants used by the bounds of docs/maths/variance.rst#variance-bounds (constants: docs/maths/heads.rst#heads-spectral-constants), at one row.
/// lambda_min / k_min are exact values or lower bounds, lambda_max / k_max exact values or
/// upper bounds, so the bounds built from them stay valid:
///   Gaussian     1/s2, 1/s2, 3/s2^2, 3/s2^2 (exact)
///   categorical  0 (exact), min(max p, 1/2) (bound), 0 (exact), min(1/3, 2 lambda_max) (bound)
///   Bernoulli    min v, max v (exact); k_min = max(min v^2, 1 / sum_c 1/(v_c(1-3v_c)))
///                (bound; exact v(1-3v) for C = 1); k_max = max(max kappa4_c, 0) + 3 max v^2
///                (bound; exact v(1-3v) for C = 1)
///   Poisson      min lambda, max lambda (exact); k_min = 3 min lambda^2 + 1/sum_c 1/lambda_c
///                (bound; exact for C = 1); k_max = max lambda + 3 max lambda^2 (exact)
struct SpectralConstants {
  double lambda_min, lambda_max, k_min, k_max;
};

template <class T>
FISHERKIT_HD SpectralConstants head_spectral_constants(const HeadRow<T>& r) {
  switch (r.kind) {
    case HeadKind::gaussian: {
      const double s = r.inv_s2;
      return SpectralConstants{s, s, 3.0 * s * s, 3.0 * s * s};
    }
    case HeadKind::categorical: {
      double pmax = 0.0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        const double p = r.mean(c);
        pmax = p > pmax ? p : pmax;
      }
      const double lmax = pmax < 0.5 ? pmax : 0.5;
      const double kmax = 2.0 * lmax < 1.0 / 3.0 ? 2.0 * lmax : 1.0 / 3.0;
      return SpectralConstants{0.0, lmax, 0.0, kmax};
    }
    case HeadKind::bernoulli:
    case HeadKind::poisson: {
      double wmin = 0.0, wmax = 0.0, k4max = 0.0, inv_sum = 0.0;
      bool zero = false;
      for (std::int64_t c = 0; c < r.C; ++c) {
        const CoordMoments m = r.coord(c);
        if (c == 0 || m.w < wmin) wmin = m.w;
        if (c == 0 || m.w > wmax) wmax = m.w;
        if (c == 0 || m.k4 > k4max) k4max = m.k4;
        // lower bound of sum_c d_c x_c^2 on the simplex: 1 / sum 1/d_c (d = v(1-3v) or lambda)
        const double d = r.kind == HeadKind::poisson ? m.w : m.w * (1.0 - 3.0 * m.w);
        if (d > 0.0)
          inv_sum += 1.0 / d;
        else
          zero = true;
      }
      const double harm = (zero || inv_sum <= 0.0) ? 0.0 : 1.0 / inv_sum;
      if (r.kind == HeadKind::poisson)
        return SpectralConstants{wmin, wmax, 3.0 * wmin * wmin + harm, wmax + 3.0 * wmax * wmax};
      const double kmin = wmin * wmin > harm ? wmin * wmin : harm;
      const double kmax = r.C == 1 ? harm : (k4max > 0.0 ? k4max : 0.0) + 3.0 * wmax * wmax;
      return SpectralConstants{wmin, wmax, kmin, kmax};
    }
  }
  return SpectralConstants{0.0, 0.0, 0.0, 0.0};
}

/// Per-input bounds of docs/maths/variance.rst#variance-bounds for one unit (one draw), to be weighted by abar_j^4:
///   score    ||g~||^4 k_min - q^2 <= Var((g.tau)^2) <= ||g~||^4 k_max - q^2  (each raised to >= 0)
///   hessian  ||t~||^2 lambda_min <= Var(t.tau)      <= ||t~||^2 lambda_max
/// with g~, t~ the backward column and output-Hessian diagonal, centred (x - p.x) for the
/// categorical head (tighter), and the head's spectral constants at this row. q = g^T I g.
/// tau_d may be empty: then the Hessian bounds are 0.
struct UnitBounds {
  double v1_lower, v1_upper, v2_lower, v2_upper;
};

template <class T>
FISHERKIT_HD UnitBounds head_unit_bounds(const HeadRow<T>& r, const SpectralConstants& k,
                                         typename HeadRow<T>::Vec g, typename HeadRow<T>::Vec tau_d) {
  const bool cat = r.kind == HeadKind::categorical;
  double pg = 0.0, pt = 0.0;
  if (cat)
    for (std::int64_t c = 0; c < r.C; ++c) {
      pg += r.mean(c) * g[c];
      if (!tau_d.empty()) pt += r.mean(c) * tau_d[c];
    }
  double ng2 = 0.0, nt2 = 0.0;
  for (std::int64_t c = 0; c < r.C; ++c) {
    const double a = g[c] - pg;
    ng2 += a * a;
    if (!tau_d.empty()) {
      const double b = tau_d[c] - pt;
      nt2 += b * b;
    }
  }
  const double q = head_quad(r, g, g);
  const double lo = ng2 * ng2 * k.k_min - q * q, hi = ng2 * ng2 * k.k_max - q * q;
  return UnitBounds{lo > 0.0 ? lo : 0.0, hi > 0.0 ? hi : 0.0, nt2 * k.lambda_min, nt2 * k.lambda_max};
}

}  // namespace fisherkit::detail
