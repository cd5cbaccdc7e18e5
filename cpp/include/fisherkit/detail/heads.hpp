// Per-sample maths of the exponential-family output heads, on one row h of C natural
// parameters (the network output). Host-and-device; docs/maths/heads.rst#heads-table.
//
// p(y | h) = pi(y) exp(t(y)^T h - F(h)):
//   gaussian    t = y / sigma^2, h = mean,  F = |h|^2 / (2 sigma^2)
//   categorical t = one-hot(y),  h = logits, F = logsumexp(h)        (y is a class index)
//   bernoulli   t = y in {0,1}^C, h = logits, F = sum softplus(h)
//   poisson     t = y in N^C,     h = log rate, F = sum exp(h)
#pragma once
#include <cstdint>

#include "fisherkit/detail/hd.hpp"
#include "fisherkit/detail/math.hpp"
#include "fisherkit/detail/rng.hpp"

namespace fisherkit {

enum class HeadKind : int { gaussian = 0, categorical = 1, bernoulli = 2, poisson = 3 };

namespace detail {

/// Columns of a label row: 1 (class index) for categorical, C otherwise.
FISHERKIT_HD std::int64_t head_label_cols(HeadKind k, std::int64_t C) {
  return k == HeadKind::categorical ? 1 : C;
}

template <class T>
FISHERKIT_HD T logsumexp(const T* h, std::int64_t C) {
  T m = h[0];
  for (std::int64_t c = 1; c < C; ++c) m = h[c] > m ? h[c] : m;
  T s = T(0);
  for (std::int64_t c = 0; c < C; ++c) s += fk_exp(h[c] - m);
  return m + fk_log(s);
}

/// True when y is a valid label row for the head (class index in [0, C), 0/1, count >= 0
/// integer, finite real).
template <class T>
FISHERKIT_HD bool head_label_valid(HeadKind k, const T* y, std::int64_t C) {
  switch (k) {
    case HeadKind::categorical: {
      const T v = y[0];
      return fk_isfinite(v) && v >= T(0) && v < T(C) && v == T(static_cast<std::int64_t>(v));
    }
    case HeadKind::bernoulli:
      for (std::int64_t c = 0; c < C; ++c)
        if (!(y[c] == T(0) || y[c] == T(1))) return false;
      return true;
    case HeadKind::poisson:
      for (std::int64_t c = 0; c < C; ++c)
        if (!(fk_isfinite(y[c]) && y[c] >= T(0) && y[c] == fk_floor(y[c])))
          return false;
      return true;
    case HeadKind::gaussian:
      for (std::int64_t c = 0; c < C; ++c)
        if (!fk_isfinite(y[c])) return false;
      return true;
  }
  return false;
}

/// log p(y | h), including the base measure (so it is a normalised log-density/-mass).
template <class T>
FISHERKIT_HD T head_log_likelihood(HeadKind k, T sigma, const T* h, const T* y, std::int64_t C) {
  switch (k) {
    case HeadKind::gaussian: {
      const T s2 = sigma * sigma;
      T acc = T(0);
      for (std::int64_t c = 0; c < C; ++c) acc += (y[c] - h[c]) * (y[c] - h[c]);
      return -acc / (T(2) * s2) - T(0.5) * T(C) * fk_log(T(6.283185307179586) * s2);
    }
    case HeadKind::categorical:
      return h[static_cast<std::int64_t>(y[0])] - logsumexp(h, C);
    case HeadKind::bernoulli: {
      T acc = T(0);
      for (std::int64_t c = 0; c < C; ++c) acc += y[c] * h[c] - softplus(h[c]);
      return acc;
    }
    case HeadKind::poisson: {
      T acc = T(0);
      for (std::int64_t c = 0; c < C; ++c)
        acc += y[c] * h[c] - fk_exp(h[c]) - T(fk_lgamma(double(y[c]) + 1.0));
      return acc;
    }
  }
  return T(0);
}

/// r = d(-log p)/dh = eta(h) - t(y): the residual that backpropagation starts from.
template <class T>
FISHERKIT_HD void head_residual(HeadKind k, T sigma, const T* h, const T* y, std::int64_t C,
                                T* r) {
  switch (k) {
    case HeadKind::gaussian: {
      const T inv = T(1) / (sigma * sigma);
      for (std::int64_t c = 0; c < C; ++c) r[c] = (h[c] - y[c]) * inv;
      return;
    }
    case HeadKind::categorical: {
      const T lse = logsumexp(h, C);
      const std::int64_t yc = static_cast<std::int64_t>(y[0]);
      for (std::int64_t c = 0; c < C; ++c) r[c] = fk_exp(h[c] - lse) - (c == yc ? T(1) : T(0));
      return;
    }
    case HeadKind::bernoulli:
      for (std::int64_t c = 0; c < C; ++c) r[c] = sigmoid(h[c]) - y[c];
      return;
    case HeadKind::poisson:
      for (std::int64_t c = 0; c < C; ++c) r[c] = fk_exp(h[c]) - y[c];
      return;
  }
}

/// E[y | h]: the predicted mean (mu, class probabilities, success probabilities, rates).
template <class T>
FISHERKIT_HD void head_mean(HeadKind k, const T* h, std::int64_t C, T* m) {
  switch (k) {
    case HeadKind::gaussian:
      for (std::int64_t c = 0; c < C; ++c) m[c] = h[c];
      return;
    case HeadKind::categorical: {
      const T lse = logsumexp(h, C);
      for (std::int64_t c = 0; c < C; ++c) m[c] = fk_exp(h[c] - lse);
      return;
    }
    case HeadKind::bernoulli:
      for (std::int64_t c = 0; c < C; ++c) m[c] = sigmoid(h[c]);
      return;
    case HeadKind::poisson:
      for (std::int64_t c = 0; c < C; ++c) m[c] = fk_exp(h[c]);
      return;
  }
}

/// Whether the head's covariance has the rank-1 term of head_covariance_parts (categorical).
FISHERKIT_HD bool head_covariance_centred(HeadKind k) { return k == HeadKind::categorical; }

/// The two parts of I(h) = Cov(t) = diag(d) - [centred] d d^T: d (C values, at d[c * ds])
/// and the return value, whether the rank-1 term is there. Categorical: d = p (centred);
/// the others are diagonal: d = 1 / sigma^2 (Gaussian), p (1 - p) as sigmoid(h) sigmoid(-h)
/// (Bernoulli: no cancellation near p = 1), lambda (Poisson). Every form of I below is
/// built from these parts.
template <class T>
FISHERKIT_HD bool head_covariance_parts(HeadKind k, T sigma, const T* h, std::int64_t C, T* d, std::int64_t ds = 1) {
  switch (k) {
    case HeadKind::gaussian:
      for (std::int64_t c = 0; c < C; ++c) d[c * ds] = T(1) / (sigma * sigma);
      break;
    case HeadKind::categorical: {
      const T lse = logsumexp(h, C);
      for (std::int64_t c = 0; c < C; ++c) d[c * ds] = fk_exp(h[c] - lse);
      break;
    }
    case HeadKind::bernoulli:
      for (std::int64_t c = 0; c < C; ++c) d[c * ds] = sigmoid(h[c]) * sigmoid(-h[c]);
      break;
    case HeadKind::poisson:
      for (std::int64_t c = 0; c < C; ++c) d[c * ds] = fk_exp(h[c]);
      break;
  }
  return head_covariance_centred(k);
}

/// 1 - d_c for the parts d of a centred covariance (they sum to 1; C values at stride ds)
/// without cancellation: for the one part above 1/2 (a confident class, where 1 - d_c keeps
/// little more than the rounding of d_c) the sum of the others.
template <class T>
FISHERKIT_HD T head_covariance_complement(const T* d, std::int64_t C, std::int64_t c, std::int64_t ds = 1) {
  if (d[c * ds] <= T(0.5)) return T(1) - d[c * ds];
  T rest = T(0);
  for (std::int64_t k = 0; k < C; ++k)
    if (k != c) rest += d[k * ds];
  return rest;
}

/// I(h)_cc from the parts d (C contiguous values): d_c (1 - d_c) when centred, with the
/// complement of head_covariance_complement, else d_c.
template <class T>
FISHERKIT_HD T head_covariance_diagonal(bool centred, const T* d, std::int64_t C, std::int64_t c) {
  return centred ? d[c] * head_covariance_complement(d, C, c) : d[c];
}

/// I(h) = Cov(t) = Hessian of F, written as a C x C row-major matrix. A centred covariance's
/// rows sum to zero, so its diagonal is minus the sum of the row's other entries,
/// d_a sum_{b != a} d_b: no cancellation for a confident class.
template <class T>
FISHERKIT_HD void head_covariance(HeadKind k, T sigma, const T* h, std::int64_t C, T* I) {
  const bool centred = head_covariance_parts(k, sigma, h, C, I, C + 1);  // d on the diagonal
  for (std::int64_t a = 0; a < C; ++a)
    for (std::int64_t b = 0; b < C; ++b)
      if (b != a) I[a * C + b] = centred ? -(I[a * C + a] * I[b * C + b]) : T(0);
  if (centred)
    for (std::int64_t a = 0; a < C; ++a) {
      T s = T(0);
      for (std::int64_t b = 0; b < C; ++b)
        if (b != a) s += I[a * C + b];
      I[a * C + a] = -s;
    }
}

/// A square-root factor B of I(h) = B B^T, C x C row-major (B[a * C + k] is row a,
/// column k). Categorical: column k is sqrt(p_k) (e_k - p), which sums to zero, so its
/// diagonal entry is minus the sum of its other entries (no cancellation for a confident
/// class); the others are diagonal: 1 / sigma (Gaussian, not sqrt(1 / sigma^2), which
/// overflows first), sqrt(d). The exact Fisher J^T I J is the sum over k of
/// (J^T B_k)(J^T B_k)^T.
template <class T>
FISHERKIT_HD void head_sqrt_covariance(HeadKind k, T sigma, const T* h, std::int64_t C, T* B) {
  if (k == HeadKind::gaussian) {
    for (std::int64_t i = 0; i < C * C; ++i) B[i] = T(0);
    for (std::int64_t c = 0; c < C; ++c) B[c * C + c] = T(1) / sigma;
    return;
  }
  const bool centred = head_covariance_parts(k, sigma, h, C, B, C + 1);  // d on the diagonal
  for (std::int64_t a = 0; a < C; ++a)
    for (std::int64_t kk = 0; kk < C; ++kk)
      if (kk != a) B[a * C + kk] = centred ? -(fk_sqrt(B[kk * C + kk]) * B[a * C + a]) : T(0);
  for (std::int64_t a = 0; a < C; ++a) {
    T s = T(0);
    if (centred)
      for (std::int64_t r = 0; r < C; ++r)
        if (r != a) s += B[r * C + a];
    B[a * C + a] = centred ? -s : fk_sqrt(B[a * C + a]);
  }
}

/// Draw one label row y ~ p(. | h) from the counter-based generator.
template <class T>
FISHERKIT_HD void head_sample(HeadKind k, T sigma, const T* h, std::int64_t C, Philox4x32& rng,
                              T* y) {
  switch (k) {
    case HeadKind::gaussian:
      for (std::int64_t c = 0; c < C; ++c) y[c] = h[c] + sigma * T(rng.normal());
      return;
    case HeadKind::categorical: {
      const double lse = double(logsumexp(h, C));
      const double u = rng.uniform();
      double cdf = 0.0;
      std::int64_t pick = C - 1;
      for (std::int64_t c = 0; c < C; ++c) {
        cdf += exp(double(h[c]) - lse);
        if (u < cdf) {
          pick = c;
          break;
        }
      }
      y[0] = T(pick);
      return;
    }
    case HeadKind::bernoulli:
      for (std::int64_t c = 0; c < C; ++c) y[c] = rng.uniform() < double(sigmoid(h[c])) ? T(1) : T(0);
      return;
    case HeadKind::poisson:
      for (std::int64_t c = 0; c < C; ++c) y[c] = T(rng.poisson(exp(double(h[c]))));
      return;
  }
}

}  // namespace detail
}  // namespace fisherkit
