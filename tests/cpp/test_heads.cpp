// Exponential-family heads (fisherkit/heads.hpp, fisherkit/detail/heads.hpp) and the
// activations (fisherkit/detail/activations.hpp), float and double, against independent
// oracles: enumeration of the label space (truncated sums for Poisson, quadrature for the
// Gaussian), central finite differences, and Monte Carlo with 5 standard errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "fisherkit/detail/moments.hpp"
#include "fisherkit/fisherkit.hpp"
#include "test_util.hpp"

namespace fk = fisherkit;
using fk::HeadKind;

namespace {

const HeadKind kAllHeads[] = {HeadKind::gaussian, HeadKind::categorical, HeadKind::bernoulli,
                              HeadKind::poisson};

/// Natural parameters used across the tests (moderate values; Poisson rates up to e^1.2).
const double kH[] = {0.3, -1.1, 0.8, 1.2, -0.4, 0.05, -0.7};

/// Relative size of one rounding error of T, for tolerances.
template <class T>
double ulp() {
  return std::is_same_v<T, float> ? 1.2e-7 : 2.3e-16;
}
/// Step of a central difference of a T-valued function: about cbrt(epsilon).
template <class T>
T fd_step() {
  return std::is_same_v<T, float> ? T(1e-2) : T(1e-5);
}
/// Tolerance of a central difference with step fd_step<T>().
template <class T>
double fd_tol() {
  return std::is_same_v<T, float> ? 2e-3 : 1e-7;
}

/// Label rows to enumerate: every class, every 0/1 vector, or every count vector with
/// entries <= kmax (Poisson, a truncated sum).
std::vector<std::vector<double>> label_space(HeadKind k, std::int64_t C, int kmax = 0) {
  std::vector<std::vector<double>> ys;
  if (k == HeadKind::categorical) {
    for (std::int64_t c = 0; c < C; ++c) ys.push_back({double(c)});
  } else if (k == HeadKind::bernoulli) {
    for (std::int64_t m = 0; m < (std::int64_t(1) << C); ++m) {
      std::vector<double> y(C);
      for (std::int64_t c = 0; c < C; ++c) y[c] = double((m >> c) & 1);
      ys.push_back(y);
    }
  } else if (k == HeadKind::poisson) {
    std::vector<double> y(C, 0.0);
    while (true) {
      ys.push_back(y);
      std::int64_t c = 0;
      while (c < C && y[c] == kmax) y[c++] = 0;
      if (c == C) break;
      y[c] += 1;
    }
  }
  return ys;
}

/// Sufficient statistic t(y).
std::vector<double> suff_stat(HeadKind k, double sigma, const std::vector<double>& y,
                              std::int64_t C) {
  std::vector<double> t(C, 0.0);
  if (k == HeadKind::categorical) {
    t[y[0]] = 1.0;
  } else {
    for (std::int64_t c = 0; c < C; ++c)
      t[c] = k == HeadKind::gaussian ? y[c] / (sigma * sigma)
                                                          : y[c];
  }
  return t;
}

template <class T>
std::vector<T> h_row(std::int64_t C, double shift = 0.0) {
  std::vector<T> h(C);
  for (std::int64_t c = 0; c < C; ++c) h[c] = T(kH[c % 7] + shift);
  return h;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

/// Probability weights and label rows of the head at h: the enumerated space for the
/// discrete heads, a tensor-product trapezoid grid (+-9 sigma) for the Gaussian.
template <class T>
void weighted_space(HeadKind k, double sigma, const std::vector<T>& h, std::int64_t C,
                    std::vector<std::vector<double>>& ys, std::vector<double>& w) {
  ys.clear();
  w.clear();
  if (k == HeadKind::gaussian) {
    const int m = C == 1 ? 2001 : 161;
    const double step = 18.0 * sigma / (m - 1);
    std::vector<int> idx(C, 0);
    while (true) {
      std::vector<double> y(C);
      double weight = 1.0;
      for (std::int64_t c = 0; c < C; ++c) {
        y[c] = double(h[c]) - 9.0 * sigma + step * idx[c];
        const bool end = idx[c] == 0 || idx[c] == m - 1;
        weight *= end ? 0.5 * step : step;
      }
      const auto yt = cast<T>(y);
      w.push_back(weight * std::exp(double(fk::detail::head_log_likelihood(k, T(sigma), h.data(), yt.data(), C))));
      ys.push_back(y);
      std::int64_t c = 0;
      while (c < C && idx[c] == m - 1) idx[c++] = 0;
      if (c == C) break;
      ++idx[c];
    }
    return;
  }
  const int kmax = C == 1 ? 60 : (C == 2 ? 40 : 24);
  ys = label_space(k, C, kmax);
  for (const auto& y : ys) {
    const auto yt = cast<T>(y);
    w.push_back(std::exp(double(fk::detail::head_log_likelihood(k, T(sigma), h.data(), yt.data(), C))));
  }
}

using fisherkit_test::contains;
using fisherkit_test::error_of;

}  // namespace

// ------------------------------------------------------------------ log-likelihood

TEST_CASE_TEMPLATE("heads: log-likelihood is normalised", T, float, double) {
  const double sigma = 0.7;
  for (HeadKind k : kAllHeads) {
    for (std::int64_t C : {1, 2, 3, 5}) {
      if (k == HeadKind::categorical && C == 1) continue;
      if (k == HeadKind::gaussian && C > 2) continue;  // quadrature grid grows as m^C
      if (k == HeadKind::poisson && C > 3) continue;
      const std::string head_s = fk::head_name(k);
      CAPTURE(head_s);
      CAPTURE(C);
      const auto h = h_row<T>(C);
      std::vector<std::vector<double>> ys;
      std::vector<double> w;
      weighted_space<T>(k, sigma, h, C, ys, w);
      double total = 0;
      for (double x : w) total += x;
      CHECK(total == doctest::Approx(1.0).epsilon(200 * ulp<T>() + 1e-12));
    }
  }
}

TEST_CASE_TEMPLATE("heads: categorical log-likelihood is stable for large logits", T, float, double) {
  const std::int64_t C = 4;
  const std::vector<T> h = {T(80), T(-60), T(79), T(0)};
  double total = 0;
  for (std::int64_t c = 0; c < C; ++c) {
    const T y = T(c);
    const T lp = fk::detail::head_log_likelihood(HeadKind::categorical, T(1), h.data(), &y, C);
    CHECK(std::isfinite(lp));
    CHECK(lp <= T(0));
    total += std::exp(double(lp));
  }
  CHECK(total == doctest::Approx(1.0).epsilon(50 * ulp<T>()));
  // Reference in double: log p(0) = -log(1 + e^-1 + e^-80 + e^-140).
  const T y0 = T(0);
  const double lp0 = double(fk::detail::head_log_likelihood(HeadKind::categorical, T(1), h.data(), &y0, C));
  CHECK(lp0 == doctest::Approx(-std::log1p(std::exp(-1.0))).epsilon(100 * ulp<T>()));
}

TEST_CASE_TEMPLATE("heads: vectorised log-likelihood equals the per-row maths", T, float, double) {
  const std::int64_t N = 7, C = 3;
  std::vector<T> H(N * C);
  for (std::int64_t i = 0; i < N * C; ++i) H[i] = T(kH[i % 7] * (1 + 0.1 * double(i)));
  const std::vector<T> ycat = {0, 2, 1, 1, 0, 2, 2};
  std::vector<T> ycount(N * C);
  for (std::int64_t i = 0; i < N * C; ++i) ycount[i] = T(i % 4);
  for (HeadKind k : kAllHeads) {
    const std::string head_s = fk::head_name(k);
    CAPTURE(head_s);
    fk::Head head{k, 0.9};
    std::vector<T> y = k == HeadKind::categorical ? ycat : ycount;
    if (k == HeadKind::bernoulli)
      for (auto& v : y) v = T(v > T(1.5) ? 1 : 0);
    const std::int64_t yc = fk::detail::head_label_cols(k, C);
    std::vector<T> out(N);
    fk::head_log_likelihood<T>(head, fk::matrix_view<const T>(H.data(), N, C),
                               fk::matrix_view<const T>(y.data(), N, yc),
                               fk::vector_view(out.data(), N));
    for (std::int64_t n = 0; n < N; ++n) {
      const T ref = fk::detail::head_log_likelihood(k, T(0.9), H.data() + n * C, y.data() + n * yc, C);
      // The library may contract to FMA differently from this file: a few ulps.
      CHECK(double(out[n]) == doctest::Approx(double(ref)).epsilon(8 * ulp<T>()));
    }
  }
}

// ------------------------------------------------------------------ residual

TEST_CASE_TEMPLATE("heads: residual is the derivative of -log p in h", T, float, double) {
  const T sigma = T(0.8), eps = fd_step<T>();
  for (HeadKind k : kAllHeads) {
    for (std::int64_t C : {1, 3, 5}) {
      if (k == HeadKind::categorical && C == 1) continue;
      const std::string head_s = fk::head_name(k);
      CAPTURE(head_s);
      CAPTURE(C);
      const auto h = h_row<T>(C);
      std::vector<T> y(fk::detail::head_label_cols(k, C));
      for (size_t c = 0; c < y.size(); ++c) {
        if (k == HeadKind::categorical) y[c] = T(C - 1);
        if (k == HeadKind::bernoulli) y[c] = T(c % 2);
        if (k == HeadKind::poisson) y[c] = T((3 * c + 1) % 5);
        if (k == HeadKind::gaussian) y[c] = T(0.25 * double(c) - 0.6);
      }
      std::vector<T> r(C);
      fk::detail::head_residual(k, sigma, h.data(), y.data(), C, r.data());
      for (std::int64_t c = 0; c < C; ++c) {
        auto hp = h, hm = h;
        hp[c] += eps;
        hm[c] -= eps;
        const double fp = -double(fk::detail::head_log_likelihood(k, sigma, hp.data(), y.data(), C));
        const double fm = -double(fk::detail::head_log_likelihood(k, sigma, hm.data(), y.data(), C));
        const double fd = (fp - fm) / (double(hp[c]) - double(hm[c]));
        CAPTURE(c);
        CHECK(double(r[c]) == doctest::Approx(fd).epsilon(fd_tol<T>()).scale(1.0));
      }
    }
  }
}

// ------------------------------------------------------------------ mean and covariance

TEST_CASE_TEMPLATE("heads: mean and covariance equal the enumerated moments of t", T, float, double) {
  const double sigma = 0.7;
  for (HeadKind k : kAllHeads) {
    for (std::int64_t C : {1, 2, 3}) {
      if (k == HeadKind::categorical && C == 1) continue;
      const std::string head_s = fk::head_name(k);
      CAPTURE(head_s);
      CAPTURE(C);
      const auto h = h_row<T>(C, 0.1);
      std::vector<std::vector<double>> ys;
      std::vector<double> w;
      weighted_space<T>(k, sigma, h, C, ys, w);
      std::vector<double> Et(C, 0.0), Ey(C, 0.0),
          Ett(C * C, 0.0);
      for (size_t i = 0; i < ys.size(); ++i) {
        const auto t = suff_stat(k, sigma, ys[i], C);
        for (std::int64_t a = 0; a < C; ++a) {
          Et[a] += w[i] * t[a];
          // E[y]: for the categorical head the mean is the class probabilities = E[t].
          Ey[a] += w[i] * (k == HeadKind::categorical ? t[a] : ys[i][a]);
          for (std::int64_t b = 0; b < C; ++b)
            Ett[a * C + b] += w[i] * t[a] * t[b];
        }
      }
      const fk::Head head{k, sigma};
      std::vector<T> mean(C), cov(C * C);
      fk::head_mean<T>(head, fk::matrix_view<const T>(h.data(), 1, C), fk::matrix_view(mean.data(), 1, C));
      fk::head_covariance<T>(head, fk::matrix_view<const T>(h.data(), 1, C),
                             fk::matrix_view(cov.data(), 1, C * C));
      const double tol = 100 * ulp<T>() + 1e-10;
      for (std::int64_t a = 0; a < C; ++a) {
        CHECK(double(mean[a]) == doctest::Approx(Ey[a]).epsilon(tol).scale(1.0));
        for (std::int64_t b = 0; b < C; ++b) {
          const double ref = Ett[a * C + b] - Et[a] * Et[b];
          CAPTURE(a);
          CAPTURE(b);
          CHECK(double(cov[a * C + b]) == doctest::Approx(ref).epsilon(tol).scale(1.0 / (sigma * sigma)));
        }
      }
    }
  }
}

TEST_CASE_TEMPLATE("heads: covariance is the Jacobian of the residual (Hessian of F)", T, float, double) {
  const T sigma = T(1.3), eps = fd_step<T>();
  for (HeadKind k : kAllHeads) {
    const std::int64_t C = 4;
    const std::string head_s = fk::head_name(k);
    CAPTURE(head_s);
    const auto h = h_row<T>(C, -0.2);
    std::vector<T> y(fk::detail::head_label_cols(k, C), T(1));
    std::vector<T> I(C * C), rp(C), rm(C);
    fk::detail::head_covariance(k, sigma, h.data(), C, I.data());
    for (std::int64_t b = 0; b < C; ++b) {
      auto hp = h, hm = h;
      hp[b] += eps;
      hm[b] -= eps;
      fk::detail::head_residual(k, sigma, hp.data(), y.data(), C, rp.data());
      fk::detail::head_residual(k, sigma, hm.data(), y.data(), C, rm.data());
      const double step = double(hp[b]) - double(hm[b]);
      for (std::int64_t a = 0; a < C; ++a) {
        const double fd = (double(rp[a]) - double(rm[a])) / step;
        CAPTURE(a);
        CAPTURE(b);
        CHECK(double(I[a * C + b]) == doctest::Approx(fd).epsilon(fd_tol<T>()).scale(1.0));
      }
    }
  }
}

TEST_CASE_TEMPLATE("heads: sqrt_covariance satisfies B B^T = covariance", T, float, double) {
  for (HeadKind k : kAllHeads) {
    for (std::int64_t C : {1, 2, 3, 7}) {
      if (k == HeadKind::categorical && C == 1) continue;
      const std::string head_s = fk::head_name(k);
      CAPTURE(head_s);
      CAPTURE(C);
      const std::int64_t N = 3;
      std::vector<T> H(N * C);
      for (std::int64_t i = 0; i < N * C; ++i) H[i] = T(kH[i % 7] * (1 + 0.5 * double(i / C)));
      const fk::Head head{k, 0.45};
      std::vector<T> B(N * C * C), I(N * C * C);
      fk::head_covariance<T>(head, fk::matrix_view<const T>(H.data(), N, C),
                             fk::matrix_view(B.data(), N, C * C), /*sqrt=*/true);
      fk::head_covariance<T>(head, fk::matrix_view<const T>(H.data(), N, C),
                             fk::matrix_view(I.data(), N, C * C));
      for (std::int64_t n = 0; n < N; ++n) {
        const T* Bn = B.data() + n * C * C;
        const T* In = I.data() + n * C * C;
        double scale = 0;
        for (std::int64_t i = 0; i < C * C; ++i) scale = std::max(scale, std::abs(double(In[i])));
        for (std::int64_t a = 0; a < C; ++a)
          for (std::int64_t b = 0; b < C; ++b) {
            double bbt = 0;
            for (std::int64_t j = 0; j < C; ++j) bbt += double(Bn[a * C + j]) * double(Bn[b * C + j]);
            CHECK(bbt == doctest::Approx(double(In[a * C + b])).epsilon(50 * ulp<T>()).scale(scale));
          }
      }
    }
  }
}

// ------------------------------------------------------------------ sampling

namespace {

/// Model moments of coordinate c of a label row: mean, variance and the fourth central
/// moment (for the standard error of a sample variance).
struct Coord {
  double mean, var, mu4;
};

Coord model_coord(HeadKind k, double sigma, const std::vector<double>& h, std::int64_t c) {
  const double x = h[c];
  switch (k) {
    case HeadKind::gaussian:
      return {x, sigma * sigma, 3 * std::pow(sigma, 4)};
    case HeadKind::bernoulli: {
      const double p = 1 / (1 + std::exp(-x));
      return {p, p * (1 - p), p * (1 - p) * (1 - 3 * p + 3 * p * p)};
    }
    case HeadKind::poisson: {
      const double l = std::exp(x);
      return {l, l, l + 3 * l * l};
    }
    case HeadKind::categorical: {
      // The class index y in {0..C-1}, by enumeration.
      double z = 0;
      for (double v : h) z += std::exp(v);
      double m = 0;
      for (size_t j = 0; j < h.size(); ++j) m += double(j) * std::exp(h[j]) / z;
      double v2 = 0, v4 = 0;
      for (size_t j = 0; j < h.size(); ++j) {
        const double d = double(j) - m, p = std::exp(h[j]) / z;
        v2 += p * d * d;
        v4 += p * d * d * d * d;
      }
      return {m, v2, v4};
    }
  }
  return {0, 0, 0};
}

}  // namespace

TEST_CASE_TEMPLATE("heads: samples have the model's means and variances", T, float, double) {
  const std::int64_t S = 40000;
  const double sigma = 0.6;
  for (HeadKind k : kAllHeads) {
    const std::string head_s = fk::head_name(k);
    CAPTURE(head_s);
    const std::int64_t N = 3, C = 3;
    // The third row of the Poisson head has rate 50: the PTRS branch of the sampler.
    std::vector<double> Hd = {0.2, -1.0, 1.1, -0.5, 0.7, 0.0, 1.5, -2.0, std::log(50.0)};
    if (k != HeadKind::poisson) Hd[8] = 0.4;
    const auto H = cast<T>(Hd);
    const std::int64_t yc = fk::detail::head_label_cols(k, C);
    std::vector<T> Y(N * S * yc);
    fk::head_sample<T>(fk::Head{k, sigma}, fk::matrix_view<const T>(H.data(), N, C), 20240607u, S,
                       fk::matrix_view(Y.data(), N * S, yc));
    for (std::int64_t n = 0; n < N; ++n) {
      // The model at the T-rounded parameters.
      std::vector<double> hn(H.begin() + n * C, H.begin() + (n + 1) * C);
      for (std::int64_t c = 0; c < yc; ++c) {
        const Coord m = model_coord(k, sigma, hn, c);
        double s1 = 0, s2 = 0;
        for (std::int64_t s = 0; s < S; ++s) {
          const double v = double(Y[(n * S + s) * yc + c]);
          s1 += v;
          s2 += v * v;
        }
        const double mean = s1 / S, var = (s2 - S * mean * mean) / (S - 1);
        CAPTURE(n);
        CAPTURE(c);
        CHECK(std::abs(mean - m.mean) < 5 * std::sqrt(m.var / S));
        // Var(s^2) = (mu4 - var^2)/S + 2 var^2/(S(S-1)) exactly (the second term keeps
        // the bound positive for Bernoulli(1/2), whose (y - mean)^2 is constant).
        const double var_se = std::sqrt((m.mu4 - m.var * m.var) / S + 2 * m.var * m.var / (double(S) * (S - 1)));
        CHECK(std::abs(var - m.var) < 5 * var_se);
      }
      if (k == HeadKind::categorical) {
        // Class frequencies against the probabilities.
        double z = 0;
        for (double v : hn) z += std::exp(v);
        for (std::int64_t c = 0; c < C; ++c) {
          const double p = std::exp(hn[c]) / z;
          double f = 0;
          for (std::int64_t s = 0; s < S; ++s) f += Y[n * S + s] == T(c) ? 1 : 0;
          CHECK(std::abs(f / S - p) < 5 * std::sqrt(p * (1 - p) / S));
        }
      }
    }
    // Every draw is a valid label.
    for (std::int64_t r = 0; r < N * S; ++r)
      REQUIRE(fk::detail::head_label_valid(k, Y.data() + r * yc, C));
  }
}

TEST_CASE_TEMPLATE("heads: sampling is counter-based and reproducible", T, float, double) {
  const std::int64_t N = 5, C = 3, S = 4;
  std::vector<T> H(N * C);
  for (std::int64_t i = 0; i < N * C; ++i) H[i] = T(kH[i % 7]);
  for (HeadKind k : kAllHeads) {
    const std::string head_s = fk::head_name(k);
    CAPTURE(head_s);
    const fk::Head head{k, 1.0};
    const std::int64_t yc = fk::detail::head_label_cols(k, C);
    std::vector<T> a(N * S * yc), b = a, c = a;
    fk::head_sample<T>(head, fk::matrix_view<const T>(H.data(), N, C), 7, S, fk::matrix_view(a.data(), N * S, yc));
    fk::head_sample<T>(head, fk::matrix_view<const T>(H.data(), N, C), 7, S, fk::matrix_view(b.data(), N * S, yc));
    CHECK(a == b);
    // Rows 2..4 drawn on their own with index_offset = 2 reproduce the full draw.
    std::vector<T> tail(3 * S * yc);
    fk::head_sample<T>(head, fk::matrix_view<const T>(H.data() + 2 * C, 3, C), 7, S,
                       fk::matrix_view(tail.data(), 3 * S, yc), 2);
    CHECK(std::equal(tail.begin(), tail.end(), a.begin() + 2 * S * yc));
    // Another seed changes the draw (Gaussian: continuous; others: with high probability
    // over 20 rows).
    fk::head_sample<T>(head, fk::matrix_view<const T>(H.data(), N, C), 8, S, fk::matrix_view(c.data(), N * S, yc));
    CHECK(a != c);
  }
}

// ------------------------------------------------------------------ validation

TEST_CASE_TEMPLATE("heads: labels outside the support are rejected naming the argument", T, float, double) {
  const std::int64_t C = 3;
  const double nan = std::nan(""), inf = HUGE_VAL;
  struct Bad {
    HeadKind k;
    std::vector<double> row;
  };
  const std::vector<Bad> bads = {
      {HeadKind::categorical, {-1}},       {HeadKind::categorical, {3}},
      {HeadKind::categorical, {1.5}},      {HeadKind::categorical, {nan}},
      {HeadKind::bernoulli, {0, 0.5, 1}},  {HeadKind::bernoulli, {0, 1, 2}},
      {HeadKind::bernoulli, {nan, 0, 1}},  {HeadKind::poisson, {0, -1, 2}},
      {HeadKind::poisson, {0, 1.5, 2}},    {HeadKind::poisson, {inf, 1, 2}},
      {HeadKind::gaussian, {0.1, nan, 2}}, {HeadKind::gaussian, {0.1, -inf, 2}},
  };
  for (const Bad& bad : bads) {
    const std::string head_s = fk::head_name(bad.k);
    CAPTURE(head_s);
    const std::int64_t yc = fk::detail::head_label_cols(bad.k, C);
    // Two good rows, then the bad one: the message names the argument and row 2.
    std::vector<T> y(2 * yc, T(1));
    for (double v : bad.row) y.push_back(T(v));
    CHECK_FALSE(fk::detail::head_label_valid(bad.k, y.data() + 2 * yc, C));
    CHECK(fk::detail::head_label_valid(bad.k, y.data(), C));
    const std::string msg = error_of([&] {
      fk::check_labels<T>(fk::Head{bad.k, 1.0}, fk::matrix_view<const T>(y.data(), 3, yc), 3, C, "labels");
    });
    CAPTURE(msg);
    CHECK(contains(msg, "'labels'"));
    CHECK(contains(msg, "row 2"));
  }
  // Good labels pass; a wrong shape is named.
  std::vector<T> good = {0, 2, 1};
  CHECK_NOTHROW(fk::check_labels<T>(fk::Head{HeadKind::categorical, 1.0}, fk::matrix_view<const T>(good.data(), 3, 1), 3, C));
  const std::string msg = error_of([&] {
    fk::check_labels<T>(fk::Head{HeadKind::bernoulli, 1.0}, fk::matrix_view<const T>(good.data(), 3, 1), 3, C, "y");
  });
  CHECK(contains(msg, "'y'"));
  CHECK(contains(msg, "shape"));
}

TEST_CASE("heads: bad head arguments are rejected with clear messages") {
  CHECK(contains(error_of([] { fk::check_head(fk::Head{HeadKind::gaussian, 0.0}, 2); }), "'sigma'"));
  CHECK(contains(error_of([] { fk::check_head(fk::Head{HeadKind::gaussian, -1.0}, 2); }), "'sigma'"));
  CHECK(contains(error_of([] { fk::check_head(fk::Head{HeadKind::gaussian, std::nan("")}, 2); }), "'sigma'"));
  CHECK(contains(error_of([] { fk::check_head(fk::Head{HeadKind::categorical, 1.0}, 1); }), "at least 2"));
  CHECK_NOTHROW(fk::check_head(fk::Head{HeadKind::bernoulli, 1.0}, 1));
  CHECK(contains(error_of([] { fk::parse_head("multinomial"); }), "multinomial"));
  for (HeadKind k : kAllHeads) CHECK(fk::parse_head(fk::head_name(k)) == k);

  // Non-finite natural parameters are refused by the vectorised entry points.
  std::vector<double> H = {0.0, std::nan(""), 1.0, 2.0}, out(4);
  const std::string msg = error_of([&] {
    fk::head_mean<double>(fk::Head{HeadKind::poisson, 1.0}, fk::matrix_view<const double>(H.data(), 2, 2),
                          fk::matrix_view(out.data(), 2, 2));
  });
  CHECK(contains(msg, "'H'"));
  std::vector<double> Hok = {0.0, 1.0, 1.0, 2.0}, small(2);
  CHECK(contains(error_of([&] {
          fk::head_mean<double>(fk::Head{HeadKind::poisson, 1.0}, fk::matrix_view<const double>(Hok.data(), 2, 2),
                                fk::matrix_view(small.data(), 1, 2));
        }),
        "'out'"));
}

// ------------------------------------------------------------------ activations

namespace {
const fk::Activation kAllActivations[] = {fk::Activation::identity, fk::Activation::relu,
                                          fk::Activation::tanh,     fk::Activation::sigmoid,
                                          fk::Activation::softplus, fk::Activation::erf,
                                          fk::Activation::gelu,     fk::Activation::silu};

/// Reference values in double from the standard library.
double phi_ref(fk::Activation a, double z) {
  switch (a) {
    case fk::Activation::identity: return z;
    case fk::Activation::relu: return z > 0 ? z : 0;
    case fk::Activation::tanh: return std::tanh(z);
    case fk::Activation::sigmoid: return 1 / (1 + std::exp(-z));
    case fk::Activation::softplus: return std::log1p(std::exp(z));
    case fk::Activation::erf: return std::erf(z);
    case fk::Activation::gelu: return 0.5 * z * (1 + std::erf(z / std::sqrt(2.0)));
    case fk::Activation::silu: return z / (1 + std::exp(-z));
  }
  return 0;
}
}  // namespace

TEST_CASE_TEMPLATE("activations: values and derivatives match central differences", T, float, double) {
  const T eps = fd_step<T>();
  // Points away from relu's kink at 0 (within eps of it the difference is meaningless).
  const double zs[] = {-3.7, -1.3, -0.45, -0.1, 0.13, 0.6, 1.9, 4.2};
  for (fk::Activation a : kAllActivations) {
    const std::string act_s = fk::activation_name(a);
    CAPTURE(act_s);
    for (double zd : zs) {
      CAPTURE(zd);
      const T z = T(zd);
      T f, d1, d2, fp, d1p, d2p, fm, d1m, d2m;
      fk::detail::activation_eval(a, z, &f, &d1, &d2);
      fk::detail::activation_eval(a, T(z + eps), &fp, &d1p, &d2p);
      fk::detail::activation_eval(a, T(z - eps), &fm, &d1m, &d2m);
      const double step = double(T(z + eps)) - double(T(z - eps));
      CHECK(double(f) == doctest::Approx(phi_ref(a, double(z))).epsilon(8 * ulp<T>()).scale(1.0));
      CHECK(double(fk::detail::activation_value(a, z)) == double(f));
      CHECK(double(d1) == doctest::Approx((double(fp) - double(fm)) / step).epsilon(fd_tol<T>()).scale(1.0));
      CHECK(double(d2) == doctest::Approx((double(d1p) - double(d1m)) / step).epsilon(fd_tol<T>()).scale(1.0));
    }
  }
}

TEST_CASE_TEMPLATE("activations: stable and finite at large arguments", T, float, double) {
  for (fk::Activation a : kAllActivations) {
    const std::string act_s = fk::activation_name(a);
    CAPTURE(act_s);
    for (double zd : {-200.0, -40.0, 40.0, 200.0}) {
      T f, d1, d2;
      fk::detail::activation_eval(a, T(zd), &f, &d1, &d2);
      CHECK(std::isfinite(double(f)));
      CHECK(std::isfinite(double(d1)));
      CHECK(std::isfinite(double(d2)));
      CHECK(double(f) == doctest::Approx(phi_ref(a, zd)).epsilon(8 * ulp<T>()).scale(1.0));
    }
  }
}

TEST_CASE("activations: names round-trip and unknown names are rejected") {
  for (fk::Activation a : kAllActivations) CHECK(fk::parse_activation(fk::activation_name(a)) == a);
  CHECK(fk::parse_activation("linear") == fk::Activation::identity);
  const std::string msg = error_of([] { fk::parse_activation("mish"); });
  CHECK(contains(msg, "'mish'"));
  CHECK(contains(msg, "silu"));  // the message lists what is accepted
}

TEST_CASE("moments: the coordinate sums of head_pair_gram_weights give U1 of head_unit_pair_scalars") {
  // U1(a, b) = sum_c kappa_c a_c^2 b_c^2 + qq I(a, a) I(b, b) + sign (sum_c omega_c a_c b_c)^2,
  // a, b centred for the categorical head: the Gram form of the KFAC factor's variance
  for (HeadKind k : {HeadKind::gaussian, HeadKind::categorical, HeadKind::bernoulli, HeadKind::poisson}) {
    CAPTURE(static_cast<int>(k));
    const std::int64_t C = 4;
    const double sigma = 0.7;
    const auto h = h_row<double>(C, 0.3);
    std::vector<double> cache(static_cast<size_t>(2 * C));
    const auto row = fk::detail::make_head_row<double>(k, sigma, fk::detail::StridedVec<double>(h.data()), C,
                                                       cache.data());
    const auto cached = fk::detail::cached_head_row<double>(k, sigma, h.data(), C, cache.data());
    const std::vector<double> a{0.4, -1.1, 0.3, 0.8}, b{-0.2, 0.5, 1.3, -0.7};
    const double want = fk::detail::head_unit_pair_scalars(row, fk::detail::StridedVec<double>(a.data()),
                                                           fk::detail::StridedVec<double>(b.data()),
                                                           fk::detail::StridedVec<double>())
                            .u1;
    std::vector<double> ac = a, bc = b;
    std::vector<double> kap(C), om(C);
    for (std::int64_t c = 0; c < C; ++c) {
      const auto w = fk::detail::head_pair_gram_weights(cached, c);
      kap[static_cast<size_t>(c)] = w.kappa;
      om[static_cast<size_t>(c)] = w.omega;
    }
    if (fk::detail::head_pair_centred(k)) {
      double ma = 0.0, mb = 0.0;
      for (std::int64_t c = 0; c < C; ++c) {
        ma += om[static_cast<size_t>(c)] * a[static_cast<size_t>(c)];
        mb += om[static_cast<size_t>(c)] * b[static_cast<size_t>(c)];
      }
      for (auto& v : ac) v -= ma;
      for (auto& v : bc) v -= mb;
    }
    double s1 = 0.0, qa = 0.0, qb = 0.0, f = 0.0;
    for (size_t c = 0; c < static_cast<size_t>(C); ++c) {
      s1 += kap[c] * ac[c] * ac[c] * bc[c] * bc[c];
      qa += om[c] * ac[c] * ac[c];
      qb += om[c] * bc[c] * bc[c];
      f += om[c] * ac[c] * bc[c];
    }
    const double got = s1 + fk::detail::head_pair_qq(k) * qa * qb + fk::detail::head_pair_sign(k) * f * f;
    CHECK(got == doctest::Approx(want).epsilon(1e-13));
  }
}
