// Streaming (non-temporal) stores for the host executor: results written once and not read
// again soon (per-sample gradients into the caller's array) bypass the cache, which saves the
// read-for-ownership of every destination line.
#pragma once
#include <cstdint>

#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace fisherkit::cpu {

/// The widest vector of T this build targets: W lanes, loads, the streaming store and a
/// multiply-add. W = 1 (no vectors) without AVX.
template <class T>
struct Lanes {
  static constexpr std::int64_t W = 1;
};

#if defined(__AVX512F__)
template <>
struct Lanes<double> {
  using V = __m512d;
  static constexpr std::int64_t W = 8;
  static V set1(double v) { return _mm512_set1_pd(v); }
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static void stream(double* p, V v) { _mm512_stream_pd(p, v); }
  static double sum(V v) { return _mm512_reduce_add_pd(v); }
};
template <>
struct Lanes<float> {
  using V = __m512;
  static constexpr std::int64_t W = 16;
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void stream(float* p, V v) { _mm512_stream_ps(p, v); }
  static float sum(V v) { return _mm512_reduce_add_ps(v); }
};
#elif defined(__AVX__)
template <>
struct Lanes<double> {
  using V = __m256d;
  static constexpr std::int64_t W = 4;
  static V set1(double v) { return _mm256_set1_pd(v); }
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm256_add_pd(_mm256_mul_pd(a, b), c); }
  static void stream(double* p, V v) { _mm256_stream_pd(p, v); }
  static double sum(V v) {
    alignas(32) double t[4];
    _mm256_store_pd(t, v);
    return (t[0] + t[1]) + (t[2] + t[3]);
  }
};
template <>
struct Lanes<float> {
  using V = __m256;
  static constexpr std::int64_t W = 8;
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_add_ps(_mm256_mul_ps(a, b), c); }
  static void stream(float* p, V v) { _mm256_stream_ps(p, v); }
  static float sum(V v) {
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
  }
};
#endif

/// Where the streamed part of a row of n values at dst starts: the first index whose
/// address is vector-aligned, or n when the row is too short to stream (or this build has
/// no vectors).
template <class T>
inline std::int64_t stream_start(const T* dst, std::int64_t n) {
  constexpr std::int64_t W = Lanes<T>::W;
  if (W == 1 || n < 4 * W) return n;
  const auto bytes = static_cast<std::int64_t>(sizeof(T)) * W;
  const auto mis = static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(dst) % bytes);
  return mis == 0 ? 0 : (bytes - mis) / static_cast<std::int64_t>(sizeof(T));
}

/// dst[j] = d * a[j], j < n; with `stream`, the aligned middle part by non-temporal stores
/// (call store_fence() once after the last streamed row).
template <class T>
inline void scaled_row(T* dst, T d, const T* a, std::int64_t n, bool stream) {
  using L = Lanes<T>;
  std::int64_t j = 0;
  if constexpr (L::W > 1) {
    const std::int64_t j0 = stream ? stream_start(dst, n) : n;
    for (; j < j0; ++j) dst[j] = d * a[j];
    const auto v = L::set1(d);
    for (; j + L::W <= n; j += L::W) L::stream(dst + j, L::mul(v, L::load(a + j)));
  } else {
    (void)stream;
  }
  for (; j < n; ++j) dst[j] = d * a[j];
}

/// scaled_row(dst, d, a, n, true), and the dot product of b and w (n values each) in the
/// same loop: the multiply-adds of a GEMM run beneath the streaming stores, whose bandwidth
/// bounds the loop. The sum (W lanes from index 0 summed across, then the remainder in
/// order) does not depend on where dst lies.
template <class T>
inline T scaled_row_dot(T* dst, T d, const T* a, std::int64_t n, const T* b, const T* w) {
  using L = Lanes<T>;
  if constexpr (L::W > 1) {
    const std::int64_t j0 = stream_start(dst, n);
    std::int64_t s = 0, j = 0;  // the stores' index and the dot's
    for (; s < j0; ++s) dst[s] = d * a[s];
    const auto v = L::set1(d);
    auto acc = L::zero();  // one chain: a second made the loop slower (more in flight beside the stores)
    for (; s + L::W <= n; s += L::W, j += L::W) {
      L::stream(dst + s, L::mul(v, L::load(a + s)));
      acc = L::fma(L::load(b + j), L::load(w + j), acc);
    }
    for (; s < n; ++s) dst[s] = d * a[s];
    for (; j + L::W <= n; j += L::W) acc = L::fma(L::load(b + j), L::load(w + j), acc);
    T sum = L::sum(acc);
    for (; j < n; ++j) sum += b[j] * w[j];
    return sum;
  } else {
    T sum = T(0);
    for (std::int64_t s = 0; s < n; ++s) {
      dst[s] = d * a[s];
      sum += b[s] * w[s];
    }
    return sum;
  }
}

/// Order the streamed stores before later loads and stores (and the return to the caller).
inline void store_fence() {
#if defined(__SSE2__) || defined(__AVX__) || defined(__AVX512F__)
  _mm_sfence();
#endif
}

}  // namespace fisherkit::cpu
