// Scalar maths overloaded for float and double, callable on host and device.
#pragma once
#include <cmath>

#include "fisherkit/detail/hd.hpp"

namespace fisherkit::detail {

FISHERKIT_HD float fk_exp(float x) { return expf(x); }
FISHERKIT_HD double fk_exp(double x) { return exp(x); }
FISHERKIT_HD float fk_log(float x) { return logf(x); }
FISHERKIT_HD double fk_log(double x) { return log(x); }
FISHERKIT_HD float fk_log1p(float x) { return log1pf(x); }
FISHERKIT_HD double fk_log1p(double x) { return log1p(x); }
FISHERKIT_HD float fk_tanh(float x) { return tanhf(x); }
FISHERKIT_HD double fk_tanh(double x) { return tanh(x); }
FISHERKIT_HD float fk_erf(float x) { return erff(x); }
FISHERKIT_HD double fk_erf(double x) { return erf(x); }
FISHERKIT_HD float fk_sqrt(float x) { return sqrtf(x); }
FISHERKIT_HD double fk_sqrt(double x) { return sqrt(x); }
FISHERKIT_HD float fk_abs(float x) { return fabsf(x); }
FISHERKIT_HD double fk_abs(double x) { return fabs(x); }
FISHERKIT_HD double fk_lgamma(double x) { return lgamma(x); }
FISHERKIT_HD float fk_floor(float x) { return floorf(x); }
FISHERKIT_HD double fk_floor(double x) { return floor(x); }
#if defined(__CUDA_ARCH__)
FISHERKIT_HD bool fk_isfinite(float x) { return isfinite(x); }
FISHERKIT_HD bool fk_isfinite(double x) { return isfinite(x); }
#else
FISHERKIT_HD bool fk_isfinite(float x) { return std::isfinite(x); }
FISHERKIT_HD bool fk_isfinite(double x) { return std::isfinite(x); }
#endif

/// Logistic sigmoid, stable for large |z|.
template <class T>
FISHERKIT_HD T sigmoid(T z) {
  if (z >= T(0)) return T(1) / (T(1) + fk_exp(-z));
  const T e = fk_exp(z);
  return e / (T(1) + e);
}

/// softplus(z) = log(1 + e^z), stable for large |z|.
template <class T>
FISHERKIT_HD T softplus(T z) {
  return z > T(0) ? z + fk_log1p(fk_exp(-z)) : fk_log1p(fk_exp(z));
}

}  // namespace fisherkit::detail
