// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11). A draw is a pure
// function of (seed, input index, draw index, block), so results do not depend on the
// thread count, the chunk size or the backend.
#pragma once
#include <cstdint>

#include "fisherkit/detail/hd.hpp"
#include "fisherkit/detail/math.hpp"

namespace fisherkit::detail {

struct Philox4x32 {
  std::uint32_t key[2];
  std::uint32_t ctr[4];
  std::uint32_t out[4];
  int used;  // how many of out[] were consumed

  FISHERKIT_HD Philox4x32(std::uint64_t seed, std::uint64_t index, std::uint32_t draw,
                          std::uint32_t stream)
      : key{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)},
        ctr{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32), draw,
            stream << 16},
        out{0, 0, 0, 0},
        used(4) {}

  FISHERKIT_HD static void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t* hi,
                                   std::uint32_t* lo) {
    const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
    *hi = static_cast<std::uint32_t>(p >> 32);
    *lo = static_cast<std::uint32_t>(p);
  }

  FISHERKIT_HD void refill() {
    std::uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    std::uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; ++r) {
      std::uint32_t hi0, lo0, hi1, lo1;
      mulhilo(0xD2511F53u, c0, &hi0, &lo0);
      mulhilo(0xCD9E8D57u, c2, &hi1, &lo1);
      const std::uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
      c0 = n0; c1 = n1; c2 = n2; c3 = n3;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
    ++ctr[3];  // next block of this (seed, index, draw, stream)
    used = 0;
  }

  FISHERKIT_HD std::uint32_t next_u32() {
    if (used == 4) refill();
    return out[used++];
  }

  /// Uniform double in the open interval (0, 1).
  FISHERKIT_HD double uniform() {
    const std::uint64_t hi = next_u32(), lo = next_u32();
    // 52 random bits: x + 0.5 is exact, so the result is at most 1 - 2^-53 (never 1.0).
    const std::uint64_t x = ((hi << 32) | lo) >> 12;
    return (static_cast<double>(x) + 0.5) * 2.220446049250313e-16;  // 2^-52
  }

  /// Standard normal by Box-Muller (one value per call; the pair's twin is discarded to
  /// keep the stream position a simple function of the call count).
  FISHERKIT_HD double normal() {
    const double u1 = uniform(), u2 = uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
  }

  /// Poisson(lam): inversion for lam < 30, PTRS (Hormann 1993) above.
  FISHERKIT_HD double poisson(double lam) {
    if (lam <= 0.0) return 0.0;
    if (lam < 30.0) {
      double p = exp(-lam), cdf = p, u = uniform(), k = 0.0;
      while (u > cdf && k < 1000.0) {
        k += 1.0;
        p *= lam / k;
        cdf += p;
      }
      return k;
    }
    const double slam = sqrt(lam), loglam = log(lam);
    const double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    const double invalpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2.0);
    for (int it = 0; it < 1000; ++it) {
      const double U = uniform() - 0.5, V = uniform();
      const double us = 0.5 - fabs(U);
      const double k = floor((2.0 * a / us + b) * U + lam + 0.43);
      if (us >= 0.07 && V <= vr) return k;
      if (k < 0.0 || (us < 0.013 && V > us)) continue;
      if (log(V) + log(invalpha) - log(a / (us * us) + b) <= -lam + k * loglam - lgamma(k + 1.0))
        return k;
    }
    return floor(lam);
  }
};

}  // namespace fisherkit::detail
