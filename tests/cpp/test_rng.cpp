// Philox4x32-10 counter-based generator (fisherkit/detail/rng.hpp): known answers from the
// Random123 reference vectors, determinism, independence of counters, and the moments of
// the uniform, normal and Poisson draws (5-standard-error criterion, fixed seeds).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "fisherkit/detail/rng.hpp"

using fisherkit::detail::Philox4x32;

namespace {

/// First `n` 32-bit words of the stream of (seed, index, draw, stream).
std::vector<std::uint32_t> words(std::uint64_t seed, std::uint64_t index, std::uint32_t draw,
                                 std::uint32_t stream, int n) {
  Philox4x32 g(seed, index, draw, stream);
  std::vector<std::uint32_t> w(static_cast<size_t>(n));
  for (auto& x : w) x = g.next_u32();
  return w;
}

/// One Philox4x32-10 block for an explicit counter and key.
void block(const std::uint32_t ctr[4], const std::uint32_t key[2], std::uint32_t out[4]) {
  Philox4x32 g(0, 0, 0, 0);
  for (int i = 0; i < 4; ++i) g.ctr[i] = ctr[i];
  g.key[0] = key[0];
  g.key[1] = key[1];
  g.used = 4;
  for (int i = 0; i < 4; ++i) out[i] = g.next_u32();
}

struct Moments {
  double mean = 0, var = 0;
};

template <class F>
Moments moments(F draw, int n) {
  double s = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = draw();
    s += x;
    s2 += x * x;
  }
  Moments m;
  m.mean = s / n;
  m.var = (s2 - n * m.mean * m.mean) / (n - 1);
  return m;
}

/// Standard error of the unbiased sample variance of n draws with variance v and fourth
/// central moment mu4: Var(s^2) = (mu4 - v^2)/n + 2 v^2/(n(n-1)).
double var_se(double v, double mu4, int n) {
  return std::sqrt((mu4 - v * v) / n + 2 * v * v / (double(n) * (n - 1)));
}

}  // namespace

TEST_CASE("rng: Philox4x32-10 matches the Random123 known-answer vectors") {
  struct Kat {
    std::uint32_t ctr[4];
    std::uint32_t key[2];
    std::uint32_t expect[4];
  };
  const Kat kats[] = {
      {{0u, 0u, 0u, 0u}, {0u, 0u}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
       {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
       {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Kat& k : kats) {
    std::uint32_t out[4];
    block(k.ctr, k.key, out);
    for (int i = 0; i < 4; ++i) CHECK(out[i] == k.expect[i]);
  }
}

TEST_CASE("rng: the constructor lays out seed and counters as documented") {
  const std::uint64_t seed = 0x0123456789abcdefULL, index = 0xfedcba9876543210ULL;
  Philox4x32 g(seed, index, 7u, 3u);
  CHECK(g.key[0] == 0x89abcdefu);
  CHECK(g.key[1] == 0x01234567u);
  CHECK(g.ctr[0] == 0x76543210u);
  CHECK(g.ctr[1] == 0xfedcba98u);
  CHECK(g.ctr[2] == 7u);
  CHECK(g.ctr[3] == (3u << 16));
  // The first block is the Philox function of exactly that counter and key.
  std::uint32_t ref[4];
  const std::uint32_t ctr[4] = {g.ctr[0], g.ctr[1], g.ctr[2], g.ctr[3]};
  const std::uint32_t key[2] = {g.key[0], g.key[1]};
  block(ctr, key, ref);
  for (int i = 0; i < 4; ++i) CHECK(g.next_u32() == ref[i]);
}

TEST_CASE("rng: the same seed index and draw give the same stream") {
  for (std::uint64_t seed : {0ULL, 42ULL, 0xffffffffffffffffULL}) {
    for (std::uint64_t index : {0ULL, 1ULL, 123456789012ULL}) {
      CAPTURE(seed);
      CAPTURE(index);
      // 67 words cross several block refills (4 words per block).
      CHECK(words(seed, index, 5, 0, 67) == words(seed, index, 5, 0, 67));
      Philox4x32 a(seed, index, 5, 0), b(seed, index, 5, 0);
      for (int i = 0; i < 50; ++i) {
        CHECK(a.uniform() == b.uniform());
        CHECK(a.normal() == b.normal());
        CHECK(a.poisson(3.5) == b.poisson(3.5));
      }
    }
  }
}

TEST_CASE("rng: different seeds indices draws and streams give different streams") {
  std::set<std::vector<std::uint32_t>> seen;
  int made = 0;
  for (std::uint64_t seed : {1ULL, 2ULL, (1ULL << 32) + 1ULL})
    for (std::uint64_t index : {0ULL, 1ULL, 2ULL, 1ULL << 32, (1ULL << 32) + 1ULL})
      for (std::uint32_t draw : {0u, 1u, 1000u})
        for (std::uint32_t stream : {0u, 1u}) {
          seen.insert(words(seed, index, draw, stream, 8));
          ++made;
        }
  CHECK(static_cast<int>(seen.size()) == made);

  // Within one stream, successive blocks differ (the block counter advances).
  const auto w = words(9, 4, 0, 0, 400);
  std::set<std::uint32_t> distinct(w.begin(), w.end());
  CHECK(distinct.size() == w.size());
}

TEST_CASE("rng: uniform lies in the open interval (0, 1) with the right moments") {
  const int n = 200000;
  Philox4x32 g(2024, 17, 0, 0);
  double lo = 1, hi = 0;
  const Moments m = moments(
      [&] {
        const double u = g.uniform();
        lo = std::min(lo, u);
        hi = std::max(hi, u);
        return u;
      },
      n);
  CHECK(lo > 0.0);
  CHECK(hi < 1.0);
  // mean: Var(U) = 1/12; sample variance: mu4 = 1/80.
  CHECK(std::abs(m.mean - 0.5) < 5.0 * std::sqrt(1.0 / 12.0 / n));
  CHECK(std::abs(m.var - 1.0 / 12.0) < 5.0 * var_se(1.0 / 12.0, 1.0 / 80.0, n));

  // Each of 10 equal bins holds about a tenth (binomial standard error).
  std::vector<int> bins(10, 0);
  Philox4x32 h(7, 0, 3, 0);
  for (int i = 0; i < n; ++i) ++bins[static_cast<size_t>(h.uniform() * 10)];
  for (int b : bins) CHECK(std::abs(b - n / 10.0) < 5.0 * std::sqrt(n * 0.1 * 0.9));
}

TEST_CASE("rng: the smallest and largest uniform values stay inside (0, 1)") {
  // The mapping ((x >> 11) + 0.5) * 2^-53 of the extreme 64-bit words.
  Philox4x32 g(0, 0, 0, 0);
  g.out[0] = 0u; g.out[1] = 0u; g.out[2] = 0xffffffffu; g.out[3] = 0xffffffffu;
  g.used = 0;
  const double a = g.uniform(), b = g.uniform();
  CHECK(a > 0.0);
  CHECK(a < 1e-15);
  CHECK(b < 1.0);
  CHECK(b > 1.0 - 1e-15);
}

TEST_CASE("rng: normal draws have mean 0 and variance 1") {
  const int n = 200000;
  Philox4x32 g(11, 5, 2, 0);
  const Moments m = moments([&] { return g.normal(); }, n);
  CHECK(std::abs(m.mean) < 5.0 * std::sqrt(1.0 / n));
  CHECK(std::abs(m.var - 1.0) < 5.0 * var_se(1.0, 3.0, n));
}

TEST_CASE("rng: poisson draws have mean and variance lambda on both algorithms") {
  // lambda < 30 uses inversion, lambda >= 30 the PTRS rejection sampler.
  const int n = 100000;
  for (double lam : {0.05, 0.7, 4.0, 29.5, 30.0, 75.0, 400.0}) {
    CAPTURE(lam);
    Philox4x32 g(31337, static_cast<std::uint64_t>(lam * 100), 0, 0);
    bool integral = true;
    const Moments m = moments(
        [&] {
          const double k = g.poisson(lam);
          integral = integral && k >= 0 && k == std::floor(k);
          return k;
        },
        n);
    CHECK(integral);
    CHECK(std::abs(m.mean - lam) < 5.0 * std::sqrt(lam / n));
    CHECK(std::abs(m.var - lam) < 5.0 * var_se(lam, lam + 3 * lam * lam, n));  // Poisson mu4
  }
  Philox4x32 g(1, 1, 1, 0);
  CHECK(g.poisson(0.0) == 0.0);
  CHECK(g.poisson(-1.0) == 0.0);
}

TEST_CASE("rng: poisson frequencies match the probability mass function") {
  const int n = 200000;
  for (double lam : {2.5, 45.0}) {
    CAPTURE(lam);
    Philox4x32 g(99, 1, 0, 0);
    std::vector<int> count(400, 0);
    for (int i = 0; i < n; ++i) {
      const double k = g.poisson(lam);
      if (k < 400) ++count[static_cast<size_t>(k)];
    }
    for (int k = 0; k < 400; ++k) {
      const double p = std::exp(k * std::log(lam) - lam - std::lgamma(k + 1.0));
      if (p * n < 50) continue;  // only well-populated cells
      CAPTURE(k);
      CHECK(std::abs(count[static_cast<size_t>(k)] - n * p) < 5.0 * std::sqrt(n * p * (1 - p)));
    }
  }
}
