// Streaming (non-temporal) stores for the host executor: results written once and not read
// again soon (per-sample gradients into the caller's array) bypass the cache, which saves the
// read-for-ownership of every destination line.
#pragma once
#include <cstdint>

#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace fisherkit::cpu {

/// dst[j] = d * a[j], j < n; with `stream`, the aligned middle part by non-temporal stores
/// (call store_fence() once after the last streamed row).
template <class T>
inline void scaled_row(T* dst, T d, const T* a, std::int64_t n, bool stream) {
  std::int64_t j = 0;
#if defined(__AVX512F__)
  constexpr std::int64_t W = 64 / static_cast<std::int64_t>(sizeof(T));
  if (stream && n >= 4 * W) {
    while (j < n && (reinterpret_cast<std::uintptr_t>(dst + j) & 63) != 0) {
      dst[j] = d * a[j];
      ++j;
    }
    if constexpr (sizeof(T) == 8) {
      const __m512d v = _mm512_set1_pd(static_cast<double>(d));
      for (; j + W <= n; j += W)
        _mm512_stream_pd(reinterpret_cast<double*>(dst + j),
                         _mm512_mul_pd(v, _mm512_loadu_pd(reinterpret_cast<const double*>(a + j))));
    } else {
      const __m512 v = _mm512_set1_ps(static_cast<float>(d));
      for (; j + W <= n; j += W)
        _mm512_stream_ps(reinterpret_cast<float*>(dst + j),
                         _mm512_mul_ps(v, _mm512_loadu_ps(reinterpret_cast<const float*>(a + j))));
    }
  }
#elif defined(__AVX__)
  constexpr std::int64_t W = 32 / static_cast<std::int64_t>(sizeof(T));
  if (stream && n >= 4 * W) {
    while (j < n && (reinterpret_cast<std::uintptr_t>(dst + j) & 31) != 0) {
      dst[j] = d * a[j];
      ++j;
    }
    if constexpr (sizeof(T) == 8) {
      const __m256d v = _mm256_set1_pd(static_cast<double>(d));
      for (; j + W <= n; j += W)
        _mm256_stream_pd(reinterpret_cast<double*>(dst + j),
                         _mm256_mul_pd(v, _mm256_loadu_pd(reinterpret_cast<const double*>(a + j))));
    } else {
      const __m256 v = _mm256_set1_ps(static_cast<float>(d));
      for (; j + W <= n; j += W)
        _mm256_stream_ps(reinterpret_cast<float*>(dst + j),
                         _mm256_mul_ps(v, _mm256_loadu_ps(reinterpret_cast<const float*>(a + j))));
    }
  }
#else
  (void)stream;
#endif
  for (; j < n; ++j) dst[j] = d * a[j];
}

/// Order the streamed stores before later loads and stores (and the return to the caller).
inline void store_fence() {
#if defined(__SSE2__) || defined(__AVX__) || defined(__AVX512F__)
  _mm_sfence();
#endif
}

}  // namespace fisherkit::cpu
