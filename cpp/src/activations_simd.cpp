// Bulk activation loops over a chunk, vectorised. This translation unit alone is compiled
// with -ffast-math -fopenmp-simd (see CMakeLists.txt) so that GCC calls glibc's vector
// maths (tanh, exp, erf, log1p): 7-35x faster than the scalar calls. Inputs are clamped
// where an exponential could overflow, so no Inf/NaN ever enters (fast-math assumes none).
// The element-wise reference remains detail::activation_eval (host and device); the two
// agree to a few ulp (tests/cpp/test_mlp.cpp).
#include <cmath>
#include <cstdint>

#include "fisherkit/detail/activations.hpp"
#include "simd.hpp"

namespace fisherkit::detail {

namespace {
template <class T>
constexpr T exp_clamp() {
  return sizeof(T) == 4 ? T(40) : T(300);
}
}  // namespace

template <class T>
void activation_bulk(Activation a, const T* z, T* f, T* d1, T* d2, std::int64_t n) {
  switch (a) {
    case Activation::identity:
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) {
        f[i] = z[i];
        if (d1) d1[i] = T(1);
        if (d2) d2[i] = T(0);
      }
      return;
    case Activation::relu:
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) {
        const T p = z[i] > T(0) ? T(1) : T(0);
        f[i] = z[i] * p;
        if (d1) d1[i] = p;
        if (d2) d2[i] = T(0);
      }
      return;
    case Activation::tanh:
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) {
        const T t = std::tanh(z[i]);
        const T s = T(1) - t * t;
        f[i] = t;
        if (d1) d1[i] = s;
        if (d2) d2[i] = T(-2) * t * s;
      }
      return;
    case Activation::sigmoid:
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) {
        T x = z[i];
        x = x > exp_clamp<T>() ? exp_clamp<T>() : (x < -exp_clamp<T>() ? -exp_clamp<T>() : x);
        const T s = T(1) / (T(1) + std::exp(-x));
        const T v = s * (T(1) - s);
        f[i] = s;
        if (d1) d1[i] = v;
        if (d2) d2[i] = v * (T(1) - T(2) * s);
      }
      return;
    case Activation::softplus:
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) {
        const T x = z[i];
        const T xc = x > exp_clamp<T>() ? exp_clamp<T>() : (x < -exp_clamp<T>() ? -exp_clamp<T>() : x);
        const T e = std::exp(-(xc > T(0) ? xc : -xc));  // e^{-|x|} in (0, 1]
        const T sp = (x > T(0) ? x : T(0)) + std::log1p(e);
        const T s = x > T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
        f[i] = sp;
        if (d1) d1[i] = s;
        if (d2) d2[i] = s * (T(1) - s);
      }
      return;
    case Activation::erf:
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) {
        const T x = z[i];
        const T xc = x > T(30) ? T(30) : (x < T(-30) ? T(-30) : x);
        const T g = T(1.1283791670955126) * std::exp(-xc * xc);
        f[i] = std::erf(x);
        if (d1) d1[i] = g;
        if (d2) d2[i] = T(-2) * x * g;
      }
      return;
    case Activation::gelu:
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) {
        const T x = z[i];
        const T xc = x > T(40) ? T(40) : (x < T(-40) ? T(-40) : x);
        T v, g, h;
        gelu_from(x, T(0.5) * (T(1) + std::erf(x * T(0.7071067811865476))),
                  T(0.3989422804014327) * std::exp(T(-0.5) * xc * xc), &v, &g, &h);
        f[i] = v;
        if (d1) d1[i] = g;
        if (d2) d2[i] = h;
      }
      return;
    case Activation::silu:
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) {
        const T x = z[i];
        const T xc = x > exp_clamp<T>() ? exp_clamp<T>() : (x < -exp_clamp<T>() ? -exp_clamp<T>() : x);
        T v, g, h;
        silu_from(x, T(1) / (T(1) + std::exp(-xc)), &v, &g, &h);
        f[i] = v;
        if (d1) d1[i] = g;
        if (d2) d2[i] = h;
      }
      return;
  }
}

template void activation_bulk<float>(Activation, const float*, float*, float*, float*, std::int64_t);
template void activation_bulk<double>(Activation, const double*, double*, double*, double*, std::int64_t);

}  // namespace fisherkit::detail
